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
        assert row["batch_levels"] is True  # the fast path (model.batch_levels default)
    assert res["fan"]["frames_per_s"] > 0 and res["farl_parser"]["frames_per_s"] > 0
    assert [r["workers"] for r in res["dataloader"]] == [0, 2]
    assert all(r["clips_per_s"] > 0 for r in res["dataloader"])
    assert isinstance(res["data_keeps_up"], bool)
    assert "dataloader_best_over_train_step_3_levels" in res["ratios"]


def test_results_index_states_the_missing_gpu_figures(tmp_path: Path) -> None:
    """``run_all.py``'s README: every results JSON (predict included, with its Markdown), a
    line per benchmark not run yet, and the no-GPU note until ``gpu.json`` exists."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import run_all
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    (tmp_path / "predict.json").write_text('{"clips_per_s": 1.5}\n')
    (tmp_path / "predict.md").write_text("| stage | s |\n|---|---:|\n| decode | 0.5 |\n")
    scripts = {"predict": REPO / "benchmarks" / "bench_predict.py", "train": REPO / "benchmarks" / "bench_train.py"}
    readme = run_all.build_readme(tmp_path, None, scripts)
    assert "## predict" in readme and "| decode | 0.5 |" in readme and "predict.md" in readme
    assert "## not run yet" in readme and "bench_train.py" in readme
    assert "## gpu (not measured)" in readme and "benchmarks/results/gpu.json" in readme
    (tmp_path / "gpu.json").write_text('{"device": "cuda", "smoke": false}\n')
    readme = run_all.build_readme(tmp_path, None, scripts)
    assert "## gpu\n" in readme and "not measured" not in readme
