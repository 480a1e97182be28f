# after chain.sh: dpmpp_2m_sde's eta at 9 NFE on this teacher (500 samples, seed 100; the eta stage)
cd /work/main && source .venv/bin/activate
while ! grep -q "CHAIN DONE" /tmp/s23/chain.log; do sleep 5; done
T=/tmp/m22/long/run
R=edm_loguniform_fp32_7k_amx
python benchmarks/fast_samplers.py --stage eta --run $T --recipe $R --channels-last --out /tmp/m22/out --etas 0.0,0.1,0.2,0.3,0.5,1.0 --eta-nfe 9 2>&1 | tail -12
echo ETA DONE
