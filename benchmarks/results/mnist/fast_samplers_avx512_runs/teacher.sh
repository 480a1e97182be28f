set -e
cd /work/main && source .venv/bin/activate
python benchmarks/mnist.py --stage train --configs default --name edm_loguniform --minutes 25.0 --evals 4 --threads 2 --out /tmp/m22 --data /work/shared/data/mnist --steps 2000 --set 'edm_loguniform:train.ema_stds=[0.05,0.1]' --set edm_loguniform:train.ema_snapshot_every=100 --set 'edm_loguniform:data.subset=[0,8256]' --set edm_loguniform:train.holdout=256 --set edm_loguniform:model.parameterization=edm --set edm_loguniform:model.sigma_data=auto --set edm_loguniform:train.sigma_distribution=loguniform --set edm_loguniform:train.precision=fp32
mkdir -p /tmp/m22/long && cp -r /tmp/m22/runs/edm_loguniform /tmp/m22/long/run
R=/tmp/m22/long/run
ncsn train --config $R/config.yaml --run-dir $R --set train.steps=7000 --set train.precision=fp32 --no-progress
echo "TRAIN DONE"
