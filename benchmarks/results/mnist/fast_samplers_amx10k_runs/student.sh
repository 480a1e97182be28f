# usage: student.sh NAME MINUTES [--set ...]: the grid recipe on the 10k bf16 teacher, alone on both cores, then its scan, sets and score
cd /work/main && source .venv/bin/activate
NAME=$1; MIN=$2; shift 2
T=/tmp/m24/runs/edm_loguniform/posthoc/std-0.150
ncsn distill $T --out /tmp/s24/$NAME --minutes $MIN --no-progress --set train.ect_stage_steps=1000000000 \
  --set train.ect_pair=teacher --set train.ect_q=2 --set train.ect_teacher_steps=3 --set train.batch_size=32 \
  --set train.p_mean=0.0 --set train.precision=bf16 --set 'train.ect_grid=[1.0]' --set train.ect_weight=uniform "$@" > /tmp/s24/$NAME.log 2>&1
tail -2 /tmp/s24/$NAME/metrics.csv
python benchmarks/fast_samplers.py --stage mid --run $T --cm-run /tmp/s24/$NAME --recipe s24_$NAME --n 500 \
    --channels-last --precision bf16 --mids 0.7,1.0 --out /tmp/s24/out 2>&1 | tail -5
J=consistency:1:0,consistency:1:1,consistency:1:2,consistency:2:0,consistency:2:1,consistency:2:2
python benchmarks/fast_samplers.py --stage sample --run $T --cm-run /tmp/s24/$NAME --recipe edm_loguniform_amx_10k_$NAME \
    --channels-last --precision bf16 --sigma-mid 1.0 --jobs $J 2>&1 | tail -2
python benchmarks/fast_samplers.py --stage score --recipe edm_loguniform_amx_10k_$NAME 2>&1 | tail -6
echo "STUDENT DONE $NAME"
