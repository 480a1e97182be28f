# usage: student25.sh NAME MINUTES [--set ...] (twenty-fourth session): the grid recipe on the 10k bf16 teacher, alone on both cores, then σ_mid scans (training EMA: MIDS, default 0.7,1.0,1.4; post-hoc EMA 0.05 and 0.10: MID1, default 1.0)
# twenty-sixth session: GAMMAS (default 1.0) scans the re-noising's γ at every σ_mid too, N (default 500) samples per scan, runs in /tmp/$DIR (default s25)
cd /work/main && source .venv/bin/activate
NAME=$1; MIN=$2; shift 2
D=/tmp/${DIR:-s25}
T=/tmp/m24/runs/edm_loguniform/posthoc/std-0.150
ncsn distill $T --out $D/$NAME --minutes $MIN --no-progress --set train.ect_stage_steps=1000000000 \
  --set train.ect_pair=teacher --set train.ect_q=2 --set train.ect_teacher_steps=3 --set train.batch_size=32 \
  --set train.p_mean=0.0 --set train.precision=bf16 --set 'train.ect_grid=[1.0]' --set train.ect_weight=uniform "$@" > $D/$NAME.log 2>&1
tail -2 $D/$NAME/metrics.csv
python benchmarks/fast_samplers.py --stage mid --run $T --cm-run $D/$NAME --recipe s25_$NAME --n ${N:-500} \
    --channels-last --precision bf16 --mids ${MIDS:-0.7,1.0,1.4} --gammas ${GAMMAS:-1.0} --out /tmp/m25/out 2>&1 | tail -1
for s in 0.05 0.10; do
  ncsn ema $D/$NAME --std $s 2>&1 | tail -1
  d=$(printf "std-%.3f" $s)
  python benchmarks/fast_samplers.py --stage mid --run $T --cm-run $D/$NAME/posthoc/$d --recipe s25_${NAME}_${d//[-.]/} --n ${N:-500} \
    --channels-last --precision bf16 --mids ${MID1:-1.0} --gammas ${GAMMAS:-1.0} --out /tmp/m25/out 2>&1 | tail -1
done
echo "STUDENT DONE $NAME"
