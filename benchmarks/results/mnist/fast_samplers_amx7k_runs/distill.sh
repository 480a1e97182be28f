# usage: distill.sh NAME MINUTES [--set ...]; the reference recipe (teacher pairs, q 2, K 3, batch 32, P_mean 0)
cd /work/main && source .venv/bin/activate
NAME=$1; MIN=$2; shift 2
T=/tmp/m22/long/run
ncsn distill $T --out /tmp/s23/$NAME --minutes $MIN --no-progress --set train.ect_stage_steps=1000000000 \
  --set train.ect_pair=teacher --set train.ect_q=2 --set train.ect_teacher_steps=3 --set train.batch_size=32 \
  --set train.p_mean=0.0 "$@" > /tmp/s23/$NAME.log 2>&1
echo "DISTILL DONE $NAME" >> /tmp/s23/$NAME.log
