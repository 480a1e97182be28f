# after teacher.sh: the distill step's speed by precision, then the teacher's reference rows
set -e
cd /work/main && source .venv/bin/activate
while ! grep -q "TRAIN DONE" /tmp/m22/teacher.log; do
  if ! pgrep -f "teacher.sh" >/dev/null; then echo "training died"; exit 1; fi
  sleep 15
done
T=/tmp/m22/long/run
mkdir -p /tmp/s23
# speed of one distill step: fp32 / bf16 / channels_last, 80 steps each
for v in "fp32 false" "bf16 false" "fp32 true" "bf16 true"; do set -- $v
  ncsn distill $T --out /tmp/s23/speed_$1_$2 --steps 80 --no-progress --set train.log_every=20 --set train.ect_stage_steps=1000000000 \
    --set train.ect_pair=teacher --set train.ect_q=2 --set train.ect_teacher_steps=3 --set train.batch_size=32 --set train.p_mean=0.0 \
    --set train.precision=$1 --set train.channels_last=$2 --set 'train.ect_grid=[1.0]' > /tmp/s23/speed_$1_$2.log 2>&1
  echo "$1 channels_last=$2"; tail -4 /tmp/s23/speed_$1_$2/metrics.csv
done
echo SPEED DONE
R=edm_loguniform_fp32_7k_amx
python benchmarks/fast_samplers.py --stage sample --run $T --recipe $R --channels-last --out /tmp/m22/out --jobs dpmpp_2m:8:0
python - <<'PY'
import numpy as np
a=np.load('/tmp/m22/out/samples/edm_loguniform_fp32_7k_amx-dpmpp_2m-8-seed0.npz')['images']
b=np.load('benchmarks/results/mnist/samples/edm_loguniform_fp32_7k-dpmpp_2m-8-seed0.npz')['images']
print('SAME BYTES as the AVX2 teacher' if a.tobytes()==b.tobytes() else f'DIFFERENT from the AVX2 teacher: max {np.abs(a.astype(int)-b).max()} share {(a!=b).mean():.3f}')
PY
J=""
for s in 0 1 2; do J="$J,dpmpp_2m_sde_eta01:9:$s,dpmpp_2m_sde_eta01:10:$s,dpmpp_2m_sde:10:$s,unipc:8:$s,unipc:10:$s,dpmpp_2m:8:$s,ode:9:$s"; done
J=${J#,}
python benchmarks/fast_samplers.py --stage sample --run $T --recipe $R --channels-last --out /tmp/m22/out --jobs "$J"
python benchmarks/fast_samplers.py --stage score --recipe $R --out /tmp/m22/out
echo REF DONE
