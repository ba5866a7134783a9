"""The GPU benchmark's ``--smoke`` run on the CPU: it runs end to end and writes every field.

The real run happens only on a lent GPU machine, with no chance to debug there; this test
keeps the script importable and its output shape stable against model and data changes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_gpu_bench_smoke_writes_all_fields(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu" / "run.py"), "--smoke",
                           "--out", str(out)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["smoke"] is True and res["weights"] == "random" and res["errors"] == {}
    assert {(r["levels"], r["batch"]) for r in res["train_step"]} == {(1, 2), (3, 2)}
    for row in res["train_step"]:
        assert row["clips_per_s"] > 0 and row["tflop_per_step"] > 0
        assert {"achieved_tflops", "fraction_of_peak", "peak_memory_gib"} <= set(row)
    assert res["fan"]["frames_per_s"] > 0 and res["farl_parser"]["frames_per_s"] > 0
    assert [r["workers"] for r in res["dataloader"]] == [0, 2]
    assert all(r["clips_per_s"] > 0 for r in res["dataloader"])
    assert isinstance(res["data_keeps_up"], bool)
    assert "dataloader_best_over_train_step_3_levels" in res["ratios"]
