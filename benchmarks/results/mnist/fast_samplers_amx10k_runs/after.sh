# after teacher.sh: is it session 14's teacher byte for byte; then the distill step's speed with a compiled teacher
cd /work/main && source .venv/bin/activate
while ! grep -q "sample it with" /tmp/m24/teacher.log; do
  if ! pgrep -f "teacher.sh" >/dev/null; then echo "training died"; exit 1; fi
  sleep 15
done
sleep 5
T=/tmp/m24/runs/edm_loguniform/posthoc/std-0.150
python benchmarks/fast_samplers.py --stage sample --run $T --recipe edm_loguniform_amx_10k --channels-last --precision bf16 --out /tmp/m24/chk --jobs dpmpp_2m_sde_eta03:9:0
python - <<'PY'
import numpy as np
a=np.load('/tmp/m24/chk/samples/edm_loguniform_amx_10k-dpmpp_2m_sde_eta03-9-seed0.npz')['images']
b=np.load('benchmarks/results/mnist/samples/edm_loguniform_amx_10k-dpmpp_2m_sde_eta03-9-seed0.npz')['images']
print('SAME BYTES as the fourteenth session teacher' if a.tobytes()==b.tobytes() else f'DIFFERENT: max {np.abs(a.astype(int)-b).max()} share {(a!=b).mean():.3f}')
PY
for v in "false false" "true false" "true true"; do set -- $v
  ncsn distill $T --out /tmp/s24/speed_ct$1_c$2 --steps 100 --no-progress --set train.log_every=20 --set train.ect_stage_steps=1000000000 \
    --set train.ect_pair=teacher --set train.ect_q=2 --set train.ect_teacher_steps=3 --set train.batch_size=32 --set train.p_mean=0.0 \
    --set train.precision=bf16 --set train.compile_teacher=$1 --set train.compile=$2 --set 'train.ect_grid=[1.0]' --set train.ect_weight=uniform > /tmp/s24/speed_ct$1_c$2.log 2>&1
  echo "compile_teacher=$1 compile=$2"; tail -3 /tmp/s24/speed_ct$1_c$2/metrics.csv
done
echo SPEED DONE
