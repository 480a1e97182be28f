#!/bin/bash
# the 10,000-step bf16 teacher of the thirteenth/fourteenth sessions, retrained on this AMX CPU
cd /work/main && source .venv/bin/activate
date
python benchmarks/mnist.py --stage train --configs default --name edm_loguniform --minutes 25.0 --evals 4 --threads 2 --out /tmp/m24 --data ../shared/data/mnist --steps 10000 --set 'edm_loguniform:train.ema_stds=[0.05,0.1]' --set edm_loguniform:train.ema_snapshot_every=100 --set 'edm_loguniform:data.subset=[0,8256]' --set edm_loguniform:train.holdout=256 --set edm_loguniform:model.parameterization=edm --set edm_loguniform:model.sigma_data=auto --set edm_loguniform:train.sigma_distribution=loguniform --set edm_loguniform:train.precision=bf16
date
ncsn ema /tmp/m24/runs/edm_loguniform --std 0.15
date
