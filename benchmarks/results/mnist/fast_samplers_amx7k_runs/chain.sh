# after ref.sh: the grid students, 7.5 and 15 minutes, alone on both cores; usage: chain.sh PRECISION
cd /work/main && source .venv/bin/activate
while ! grep -q "REF DONE" /tmp/m22/ref.log; do sleep 5; done
P=$1
T=/tmp/m22/long/run
J=consistency:1:0,consistency:1:1,consistency:1:2,consistency:2:0,consistency:2:1,consistency:2:2
for run in "g1u75 7.5" "g1u 15"; do set -- $run
  bash benchmarks/results/mnist/fast_samplers_amx7k_runs/distill.sh $1 $2 --set 'train.ect_grid=[1.0]' --set train.ect_weight=uniform --set train.precision=$P
  tail -2 /tmp/s23/$1/metrics.csv
  bash benchmarks/results/mnist/fast_samplers_amx7k_runs/scan.sh $1 1.0
  python benchmarks/fast_samplers.py --stage sample --run $T --cm-run /tmp/s23/$1 --recipe edm_loguniform_fp32_7k_amx_$1 --channels-last --sigma-mid 1.0 --jobs $J --out /tmp/s23/out_$1 2>&1 | tail -2
  python benchmarks/fast_samplers.py --stage score --recipe edm_loguniform_fp32_7k_amx_$1 --out /tmp/s23/out_$1 2>&1 | tail -8
done
python benchmarks/fast_samplers.py --stage time --run $T --cm-run /tmp/s23/g1u --recipe edm_loguniform_fp32_7k_amx_g1u --channels-last --compile --threads 2 --batch-size 50 --sigma-mid 1.0 --time-jobs consistency:1,consistency:2,unipc:8,dpmpp_2m_sde_eta01:9 --out /tmp/s23/out_g1u 2>&1 | tail -12
echo CHAIN DONE
