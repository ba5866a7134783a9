"""The package layers of docs/architecture.md hold: no import runs back up a layer.

Checked on the source (every ``import`` statement, also those inside functions), so a lazy
import that would tie the ground floor to a stage is caught as well as a module-level one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "dfer"

#: package -> the dfer packages it must not import (its own layer and those below are fine)
FORBIDDEN: dict[str, set[str]] = {
    "core": {"manifests", "video", "landmarks", "parsing", "captions", "landmark_features", "model", "train", "report",
             "inference", "stages", "cli", "demo", "pipeline", "config_check"},
    **{stage: {"model", "train", "report", "inference", "stages", "cli"}
       for stage in ("manifests", "video", "landmarks", "parsing", "captions", "landmark_features")},
    "model": {"train", "report", "inference", "stages", "cli"},
    "train": {"report", "inference", "stages", "cli"},
    "report": {"inference", "stages", "cli"},
    "inference": {"stages", "cli"},
}


def dfer_imports(path: Path) -> set[str]:
    """The top-level dfer packages / modules ``path`` imports (``dfer.core.paths`` -> ``core``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "dfer" and len(parts) > 1:
                found.add(parts[1])
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_import_runs_back_up_a_layer(package: str) -> None:
    files = sorted((SRC / package).rglob("*.py"))
    assert files, f"no package dfer.{package}"
    wrong = {f"{path.relative_to(SRC)} imports dfer.{name}"
             for path in files for name in dfer_imports(path) & FORBIDDEN[package]}
    assert not wrong, "\n".join(sorted(wrong))


def test_the_checker_sees_lazy_imports(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from dfer.train.fit import train_fold\n    import dfer.report\n")
    assert dfer_imports(module) == {"train", "report"}
