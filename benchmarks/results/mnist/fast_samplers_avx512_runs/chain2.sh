cd /work/main && source .venv/bin/activate
while ! grep -q "CHAIN DONE" /tmp/s22/chain.log; do sleep 5; done
T=/tmp/m22/long/run
python benchmarks/fast_samplers.py --stage sample --run $T --cm-run /tmp/s22/refbf16 --recipe edm_loguniform_fp32_7k_avx512_refbf16 --channels-last --sigma-mid 1.0 --jobs consistency:1:0,consistency:1:1,consistency:1:2,consistency:2:0,consistency:2:1,consistency:2:2 --out /tmp/s22/outref 2>&1 | tail -2
python benchmarks/fast_samplers.py --stage score --recipe edm_loguniform_fp32_7k_avx512_refbf16 --out /tmp/s22/outref 2>&1 | tail -6
python benchmarks/fast_samplers.py --stage time --run $T --cm-run /tmp/s22/g1u --recipe edm_loguniform_fp32_7k_avx512_g1u --channels-last --compile --threads 2 --batch-size 50 --sigma-mid 1.0 --time-jobs consistency:1,consistency:2,unipc:8,dpmpp_2m_sde_eta01:9 --out /tmp/s22/outg1u 2>&1 | tail -12
bash /tmp/s22/distill.sh g1 15 --set 'train.ect_grid=[1.0]' --set train.precision=bf16
bash /tmp/s22/scan.sh g1 1.0
echo CHAIN2 DONE
