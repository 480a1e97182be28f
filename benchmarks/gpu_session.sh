#!/usr/bin/env bash
# The one GPU check of a session (issues 4, 5, 6), run through the device tool from the repo root
# with the slim runs and the job file in .gpu/ (made by benchmarks/sample_sets.py --export):
#   1. sample sets for the MNIST benchmark when .gpu/jobs.json exists (sample_sets.py; no job
#      starts after 280 s);
#   2. the speed benchmark on the GPU: fp32, bf16, bf16 + channels-last for the three models,
#      then torch.compile for the MNIST U-Net (each part stopped by its own time limit; the JSON
#      is rewritten after every row, so a stopped part keeps what it measured). Training is timed
#      in blocks of --steps alternated with the bare network (speed.py); compile recompiles at
#      each block's resume, so its part has two blocks and the longer limit.
# Everything lands in $OUT (at most 8 files come back): sets/*.npz, sets/sample_sets.log,
# speed_gpu.json, speed_gpu_compile.json. The GPU and driver are printed to the log.
set -u
export PYTHONPATH="$PWD/src" PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT/sets"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name(0))'
if [ -f .gpu/jobs.json ]; then
  python3 benchmarks/sample_sets.py .gpu/jobs.json --out "$OUT/sets" --device cuda --deadline 280
fi
timeout 150 python3 benchmarks/speed.py --device cuda --out "$OUT" --name speed_gpu \
  --batch 128 --variants fp32,bf16,bf16+cl --steps 30 --blocks 4
timeout 200 python3 benchmarks/speed.py --device cuda --out "$OUT" --name speed_gpu_compile \
  --models unet-mnist --batch 128 --variants fp32,fp32+compile --steps 30 --blocks 2
ls -la "$OUT" "$OUT/sets"
