# usage: scan.sh NAME MIDS
cd /work/main && source .venv/bin/activate
T=/tmp/m22/long/run
python benchmarks/fast_samplers.py --stage mid --run $T --cm-run /tmp/s23/$1 --recipe s23_$1 --n 500 \
    --channels-last --mids $2 --out /tmp/s23/out 2>&1 | tail -8
