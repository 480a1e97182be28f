# ref.sh was stopped after seed 0's seven sets (about 45 s a set on this CPU): seeds 1 and 2 only
# for the rows that matter to the targets, then the score; appends REF DONE to ref.log for chain.sh
cd /work/main && source .venv/bin/activate
T=/tmp/m22/long/run
R=edm_loguniform_fp32_7k_amx
J=""
for s in 1 2; do J="$J,unipc:8:$s,dpmpp_2m_sde_eta01:9:$s,ode:9:$s,dpmpp_2m_sde:10:$s"; done
J=${J#,}
python benchmarks/fast_samplers.py --stage sample --run $T --recipe $R --channels-last --out /tmp/m22/out --jobs "$J"
python benchmarks/fast_samplers.py --stage score --recipe $R --out /tmp/m22/out
echo REF DONE
