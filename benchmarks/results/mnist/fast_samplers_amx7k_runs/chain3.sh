# g1u75 with two teacher Heun steps per pair (the later --set wins): 4 teacher evaluations per example instead of 6
cd /work/main && source .venv/bin/activate
T=/tmp/m22/long/run
J=consistency:1:0,consistency:1:1,consistency:1:2,consistency:2:0,consistency:2:1,consistency:2:2
bash benchmarks/results/mnist/fast_samplers_amx7k_runs/distill.sh g1u75k2 7.5 --set 'train.ect_grid=[1.0]' --set train.ect_weight=uniform --set train.precision=bf16 --set train.ect_teacher_steps=2
tail -2 /tmp/s23/g1u75k2/metrics.csv
bash benchmarks/results/mnist/fast_samplers_amx7k_runs/scan.sh g1u75k2 1.0
python benchmarks/fast_samplers.py --stage sample --run $T --cm-run /tmp/s23/g1u75k2 --recipe edm_loguniform_fp32_7k_amx_g1u75k2 --channels-last --sigma-mid 1.0 --jobs $J --out /tmp/s23/out_g1u75k2 2>&1 | tail -2
python benchmarks/fast_samplers.py --stage score --recipe edm_loguniform_fp32_7k_amx_g1u75k2 --out /tmp/s23/out_g1u75k2 2>&1 | tail -8
echo CHAIN3 DONE
