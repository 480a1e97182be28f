set -e
cd /work/main && source .venv/bin/activate
while ! grep -q "TRAIN DONE" /tmp/m18/long.log; do
  if ! pgrep -f "long.sh" >/dev/null; then echo "training died"; exit 1; fi
  sleep 20
done
T=/tmp/m18/long/run
python benchmarks/fast_samplers.py --stage sample --run $T --recipe edm_loguniform_fp32_7k --channels-last --out /tmp/m18/check7 --jobs dpmpp_2m:8:0
python - <<'PY'
import numpy as np
a=np.load('/tmp/m18/check7/samples/edm_loguniform_fp32_7k-dpmpp_2m-8-seed0.npz')['images']
b=np.load('benchmarks/results/mnist/samples/edm_loguniform_fp32_7k-dpmpp_2m-8-seed0.npz')['images']
print('SAME BYTES' if a.tobytes()==b.tobytes() else f'DIFFERENT {np.abs(a.astype(int)-b).max()} {(a!=b).mean()}')
PY
J=""
for s in 0 1 2; do J="$J,unipc:8:$s,unipc:6:$s,unipc:10:$s,dpmpp_2m:6:$s,dpmpp_2m:10:$s,dpmpp_2m_sde:8:$s"; done
J=${J#,}
echo "$J"
python benchmarks/fast_samplers.py --stage sample --run $T --recipe edm_loguniform_fp32_7k --channels-last --jobs "$J"
python benchmarks/fast_samplers.py --stage score --recipe edm_loguniform_fp32_7k
python benchmarks/fast_samplers.py --stage time --run $T --recipe edm_loguniform_fp32_7k --channels-last \
    --compile --threads 2 --batch-size 50 --time-jobs dpmpp_2m:8,unipc:8,ode:9,dpmpp_2m_sde:10,dpmpp_2m_sde:8,unipc:6,dpmpp_2m:6
echo PIPELINE DONE
