# post-hoc EMA scan of a student of the twenty-fourth session: usage pema.sh NAME stds... (NAME under /tmp/s24; σ_mid 1.0 scans)
cd /work/main && source .venv/bin/activate
NAME=$1; shift
T=/tmp/m24/runs/edm_loguniform/posthoc/std-0.150
for s in "$@"; do
  ncsn ema /tmp/s24/$NAME --std $s 2>&1 | tail -1
  d=$(printf "std-%.3f" $s)
  python benchmarks/fast_samplers.py --stage mid --run $T --cm-run /tmp/s24/$NAME/posthoc/$d --recipe s25_${NAME}_${d//[-.]/} --n 500 \
    --channels-last --precision bf16 --mids 1.0 --out /tmp/m25/out 2>&1 | tail -2
done
echo PEMA DONE
