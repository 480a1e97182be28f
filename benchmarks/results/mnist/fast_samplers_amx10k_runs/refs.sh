# the 10k teacher's rows the fourteenth session did not draw (unipc-8, Heun-9, eta 1 @10), seeds 0-2, bf16 as its other sets
cd /work/main && source .venv/bin/activate
T=/tmp/m24/runs/edm_loguniform/posthoc/std-0.150
J=""
for s in 0 1 2; do J="$J,unipc:8:$s,ode:9:$s,dpmpp_2m_sde:10:$s"; done
J=${J#,}
python benchmarks/fast_samplers.py --stage sample --run $T --recipe edm_loguniform_amx_10k --channels-last --precision bf16 --jobs "$J" 2>&1 | tail -3
python benchmarks/fast_samplers.py --stage score --recipe edm_loguniform_amx_10k 2>&1 | tail -14
echo REFS DONE
