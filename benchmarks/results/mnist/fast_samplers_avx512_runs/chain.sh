cd /work/main && source .venv/bin/activate
bash /tmp/s22/distill.sh refbf16 15 --set train.precision=bf16
bash /tmp/s22/scan.sh refbf16 0.7,1.0
T=/tmp/m22/long/run
ncsn distill $T --out /tmp/s22/g1u601 --steps 601 --no-progress --set train.ect_stage_steps=1000000000 \
  --set train.ect_pair=teacher --set train.ect_q=2 --set train.ect_teacher_steps=3 --set train.batch_size=32 \
  --set train.p_mean=0.0 --set 'train.ect_grid=[1.0]' --set train.ect_weight=uniform > /tmp/s22/g1u601.log 2>&1
bash /tmp/s22/scan.sh g1u601 1.0
echo CHAIN DONE
