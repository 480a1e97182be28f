set -e
cd /work/main && source .venv/bin/activate
R=/tmp/m18/runs/edm_loguniform
ncsn ema $R --std 0.05
T=$R/posthoc/std-0.050
python benchmarks/fast_samplers.py --stage sample --run $T --recipe edm_loguniform_fp32_2t --channels-last --out /tmp/m18/check --jobs dpmpp_2m:8:0
python - <<'PY'
import numpy as np
a=np.load('/tmp/m18/check/samples/edm_loguniform_fp32_2t-dpmpp_2m-8-seed0.npz')['images']
b=np.load('benchmarks/results/mnist/samples/edm_loguniform_fp32_2t-dpmpp_2m-8-seed0.npz')['images']
print('SAME BYTES' if a.tobytes()==b.tobytes() else f'DIFFERENT {np.abs(a.astype(int)-b).max()} {(a!=b).mean()}')
PY
J=""
for s in 0 1 2; do J="$J,unipc:8:$s,unipc_order3:8:$s,unipc:10:$s,unipc_order3:10:$s,dpmpp_2m:10:$s"; done
for s in 0 1 2; do J="$J,unipc:4:$s,unipc:6:$s,unipc_order3:6:$s,dpmpp_2m_sde:6:$s,dpmpp_2m_sde:8:$s"; done
J="$J,dpmpp_2m:6:1,dpmpp_2m:6:2,unipc:15:0,unipc:20:0"
J=${J#,}
echo "$J"
python benchmarks/fast_samplers.py --stage sample --run $T --recipe edm_loguniform_fp32_2t --channels-last --jobs "$J"
python benchmarks/fast_samplers.py --stage score --recipe edm_loguniform_fp32_2t
echo PIPELINE DONE
