# g1u75 at batch 16 (the later --set wins): twice the steps of half the examples in the same 7.5 minutes
cd /work/main && source .venv/bin/activate
T=/tmp/m22/long/run
J=consistency:1:0,consistency:1:1,consistency:1:2,consistency:2:0,consistency:2:1,consistency:2:2
bash benchmarks/results/mnist/fast_samplers_amx7k_runs/distill.sh g1u75b16 7.5 --set 'train.ect_grid=[1.0]' --set train.ect_weight=uniform --set train.precision=bf16 --set train.batch_size=16
tail -2 /tmp/s23/g1u75b16/metrics.csv
bash benchmarks/results/mnist/fast_samplers_amx7k_runs/scan.sh g1u75b16 1.0
python benchmarks/fast_samplers.py --stage sample --run $T --cm-run /tmp/s23/g1u75b16 --recipe edm_loguniform_fp32_7k_amx_g1u75b16 --channels-last --sigma-mid 1.0 --jobs $J --out /tmp/s23/out_g1u75b16 2>&1 | tail -2
python benchmarks/fast_samplers.py --stage score --recipe edm_loguniform_fp32_7k_amx_g1u75b16 --out /tmp/s23/out_g1u75b16 2>&1 | tail -8
echo CHAIN2 DONE
