"""benchmarks/oracle_seeds.py --smoke: the exact-score test's cases over seeds, counted."""

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "oracle_seeds.py"


def test_smoke_draws_every_case_of_the_test_and_the_references(tmp_path):
    spec = importlib.util.spec_from_file_location("oracle_seeds", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "seeds.json"
    record = module.main(["--smoke", "--out", str(out)])
    assert json.loads(out.read_text()) == record
    rows = record["rows"]
    tested = {name for name, row in rows.items() if row["in_test"]}
    assert tested == {"ipndm", "dpmpp_2m", "dpmpp_2m_sde", "unipc", "unipc_order3", "restart",
                      "dpmpp_2m_sde_eta1", "restart_heun"}  # fmt: skip
    new = ("ipndm", "dpmpp_2m", "dpmpp_2m_sde", "unipc", "unipc_order3", "restart")
    assert all(rows[name]["nfe"] <= 20 for name in new)
    for row in rows.values():
        assert len(row["floors"]) == 2 and row["within_3"] == sum(f < 3 for f in row["floors"])
    assert record["command"].endswith("--smoke --out " + str(out)) and record["points"] == 400
