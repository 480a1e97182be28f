# after student.sh g1u30: wall time of 1,000 samples on this machine (2 threads, batches of 50, bf16, channels-last, eager and compiled)
cd /work/main && source .venv/bin/activate
while ! grep -q "STUDENT DONE" /tmp/m24/g1u30.log; do sleep 5; done
T=/tmp/m24/runs/edm_loguniform/posthoc/std-0.150
python benchmarks/fast_samplers.py --stage time --run $T --cm-run /tmp/s24/g1u --recipe edm_loguniform_amx_10k_g1u --channels-last --compile \
  --threads 2 --batch-size 50 --sigma-mid 1.0 --precision bf16 --time-jobs consistency:1,consistency:2,unipc:8,dpmpp_2m_sde_eta03:9 2>&1 | tail -14
echo TIME DONE
