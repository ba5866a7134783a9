"""Mutation score of the modules whose numbers the pipeline's results rest on (`make mutation`).

Runs mutmut over ``dfer.train.metrics``, the zero-shot label mapping (``dfer.train.label_mapping``),
the manifest readers (``dfer.manifests.readers`` and the ``labels`` module they map through) and
``dfer.core.sharding``, with only those modules' fast tests (settings: ``benchmarks/mutation.cfg``),
and writes killed / survived / total per module to ``benchmarks/results/mutation.md``.

mutmut works on a scratch copy of the project in ``benchmarks/out/mutation/`` (git-ignored,
removed afterwards unless ``--keep``), so no ``mutants/`` folder lands in the repository.
mutmut is not a dev dependency: the make target installs it into the project venv.

    python benchmarks/mutation.py                # run, rewrite mutation.md
    python benchmarks/mutation.py --baseline     # ... and store this run as the baseline table
    python benchmarks/mutation.py --tests tests/test_metrics.py tests/test_manifests.py
"""

from __future__ import annotations

import argparse
import configparser
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "benchmarks" / "mutation.cfg"
WORK = REPO / "benchmarks" / "out" / "mutation"
RESULT = REPO / "benchmarks" / "results" / "mutation.md"

#: Modules as the report groups them -> their source files.
MODULES: dict[str, tuple[str, ...]] = {
    "dfer.train.metrics": ("src/dfer/train/metrics.py",),
    "dfer.train.label_mapping (zero-shot)": ("src/dfer/train/label_mapping.py",),
    "dfer.manifests readers": ("src/dfer/manifests/readers.py", "src/dfer/manifests/labels.py"),
    "dfer.core.sharding": ("src/dfer/core/sharding.py",),
}

#: mutmut exit codes -> outcome (as mutmut.stats.status_by_exit_code; anything else: suspicious).
STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped",
          35: "suspicious", 36: "timeout", 37: "caught by type check", -24: "timeout",
          24: "timeout", 152: "timeout", 255: "timeout", -11: "segfault", -9: "segfault",
          None: "not checked"}
#: Outcomes that count as detected: the tests (or the time limit) caught the mutant.
DETECTED = {"killed", "timeout", "caught by type check", "segfault"}

_NEWLINE = ("equivalent: reading with newline='' or None splits lines at the same \\n, \\r, "
            "\\r\\n, and each line is stripped, so texts and line numbers are the same")
_CODEC = "equivalent: Python codec names are case-insensitive"
_RSPLIT = ("equivalent: the last element of rsplit('/') is the same whatever the maxsplit (>= 1)")
_STRICT = ("equivalent: the confusion matrix is built with len(labels) classes, so the zipped "
           "sequences always have equal length and strict= never fires")
_FLOAT64 = "equivalent: an array of Python floats is float64 without the dtype"
_ERRSTATE = ("equivalent: the divisor is np.maximum(..., 1) >= 1, so no division by zero or "
             "invalid value can occur and np.errstate changes nothing")
_MPL_CASE = "equivalent: matplotlib lower-cases backend and format names"
_NAN = "equivalent: float('NAN') is float('nan')"

#: Survivors that no test can kill: mutant name -> (the mutated line, as a check that the name
#: still means that mutant, and why it is equivalent). A survivor not listed here, or whose
#: mutated line no longer matches, is reported as "needs a test".
EQUIVALENT: dict[str, tuple[str, str]] = {
    "dfer.manifests.readers.x__lines__mutmut_3": ('newline=None', _NEWLINE),
    "dfer.manifests.readers.x__lines__mutmut_6": ('encoding="utf-8-sig", )', _NEWLINE),
    "dfer.manifests.readers.x__lines__mutmut_8": ('"UTF-8-SIG"', _CODEC),
    "dfer.manifests.readers.x_read_table_csv__mutmut_9": ('"UTF-8-SIG"', _CODEC),
    "dfer.manifests.readers.x_numbered_clip_id__mutmut_5": ('rsplit("/", )', _RSPLIT),
    "dfer.manifests.readers.x_numbered_clip_id__mutmut_17": ('rsplit("/", 2)', _RSPLIT),
    "dfer.manifests.readers.x_read_kfold__mutmut_49": (
        'len(fields) >= 2', "equivalent: two fields are already accepted by `len(fields) == 2`"),
    "dfer.core.sharding.x_shard_of__mutmut_11": ('encode("UTF-8")', _CODEC),
    "dfer.core.sharding.x_shard_of__mutmut_17": (
        'int.from_bytes(digest, )',
        "equivalent: int.from_bytes defaults to big-endian since Python 3.11 (the project needs "
        ">= 3.11)"),
    "dfer.train.metrics.x_compute_metrics__mutmut_30": ("strict=None", _STRICT),
    "dfer.train.metrics.x_compute_metrics__mutmut_33": ("zip(labels, rec, )", _STRICT),
    "dfer.train.metrics.x_compute_metrics__mutmut_34": ("strict=False", _STRICT),
    "dfer.train.metrics.x_compute_metrics__mutmut_40": ("strict=None", _STRICT),
    "dfer.train.metrics.x_compute_metrics__mutmut_43": ("cm.sum(axis=1), )", _STRICT),
    "dfer.train.metrics.x_compute_metrics__mutmut_46": ("strict=False", _STRICT),
    "dfer.train.metrics.x_mean_over_folds__mutmut_16": ("dtype=None", _FLOAT64),
    "dfer.train.metrics.x_mean_over_folds__mutmut_18": ("for m in folds], )", _FLOAT64),
    "dfer.train.metrics.x_per_class_recall__mutmut_4": ("invalid=None", _ERRSTATE),
    "dfer.train.metrics.x_per_class_recall__mutmut_5": ("divide=None", _ERRSTATE),
    "dfer.train.metrics.x_per_class_recall__mutmut_6": ("np.errstate(divide=", _ERRSTATE),
    "dfer.train.metrics.x_per_class_recall__mutmut_7": ('invalid="ignore", )', _ERRSTATE),
    "dfer.train.metrics.x_plot_confusion__mutmut_8": ("invalid=None", _ERRSTATE),
    "dfer.train.metrics.x_plot_confusion__mutmut_9": ("divide=None", _ERRSTATE),
    "dfer.train.metrics.x_plot_confusion__mutmut_10": ("np.errstate(divide=", _ERRSTATE),
    "dfer.train.metrics.x_plot_confusion__mutmut_11": ('invalid="ignore", )', _ERRSTATE),
    "dfer.train.metrics.x_plot_confusion__mutmut_4": ('use("agg")', _MPL_CASE),
    "dfer.train.metrics.x_plot_confusion__mutmut_5": ('use("AGG")', _MPL_CASE),
    "dfer.train.metrics.x_plot_confusion__mutmut_118": ('format="PNG"', _MPL_CASE),
    "dfer.train.metrics.x_plot_confusion__mutmut_123": (
        "plt.close(None)",
        "equivalent: close(None) closes the current figure, which is the one made a few lines "
        "above"),
    "dfer.train.metrics.x_uar__mutmut_11": ('float("NAN")', _NAN),
    "dfer.train.metrics.x_war__mutmut_9": ('float("NAN")', _NAN),
}

BASELINE_START, BASELINE_END = "<!-- baseline -->", "<!-- /baseline -->"


def prepare(work: Path, tests: list[str] | None) -> None:
    """Scratch copy of src/, tests/, data_manifests/ and pyproject.toml, with mutation.cfg as its setup.cfg."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    shutil.copytree(REPO / "src", work / "src", ignore=ignore)
    shutil.copytree(REPO / "tests", work / "tests", ignore=ignore)
    shutil.copytree(REPO / "data_manifests", work / "data_manifests", ignore=ignore)
    shutil.copy2(REPO / "pyproject.toml", work / "pyproject.toml")
    cfg = configparser.ConfigParser()
    cfg.read(CONFIG)
    if tests:
        cfg["mutmut"]["pytest_add_cli_args_test_selection"] = "\n" + "\n".join(tests)
    with open(work / "setup.cfg", "w") as fh:
        cfg.write(fh)


def selected_tests(tests: list[str] | None) -> list[str]:
    if tests:
        return tests
    cfg = configparser.ConfigParser()
    cfg.read(CONFIG)
    return [t for t in cfg["mutmut"]["pytest_add_cli_args_test_selection"].split("\n") if t]


def mutmut_bin() -> str:
    exe = Path(sys.executable).with_name("mutmut")
    return str(exe) if exe.exists() else "mutmut"


def run_mutmut(work: Path, max_children: int) -> float:
    """``mutmut run`` in ``work``; returns its wall time in seconds."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "MPLBACKEND": "Agg"}
    start = time.perf_counter()
    proc = subprocess.run([mutmut_bin(), "run", "--max-children", str(max_children)], cwd=work,
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    elapsed = time.perf_counter() - start
    tail = "\n".join(proc.stdout.splitlines()[-15:])
    print(tail)
    if proc.returncode != 0:
        raise SystemExit(f"mutmut run failed (exit {proc.returncode}); output above")
    return elapsed


def outcomes(work: Path) -> dict[str, dict[str, str]]:
    """``{source file: {mutant name: outcome}}`` from mutmut's per-file ``.meta`` records."""
    out: dict[str, dict[str, str]] = {}
    for files in MODULES.values():
        for src in files:
            meta = work / "mutants" / (src + ".meta")
            codes = json.loads(meta.read_text())["exit_code_by_key"] if meta.exists() else {}
            out[src] = {name: STATUS.get(code, "suspicious") for name, code in codes.items()}
    return out


_DIFFS = """
import json, sys
from mutmut.mutation.diff_apply import get_diff_for_mutant
out = {}
for name, path in json.load(sys.stdin):
    try:
        out[name] = get_diff_for_mutant(name, path=path)
    except Exception as exc:  # a diff is only for the report; never fail the run on it
        out[name] = f"(no diff: {exc})"
print(json.dumps(out))
"""


def mutant_diffs(work: Path, names: dict[str, str]) -> dict[str, str]:
    """The changed lines of each mutant ``{name: source file}``, in one mutmut process."""
    proc = subprocess.run([sys.executable, "-c", _DIFFS], cwd=work, input=json.dumps(list(names.items())),
                          stdout=subprocess.PIPE, text=True, check=True)
    diffs = json.loads(proc.stdout.strip().splitlines()[-1])
    return {name: "\n".join(ln for ln in diff.splitlines()
                            if ln[:1] in "+-" and not ln.startswith(("+++", "---")))
            for name, diff in diffs.items()}


def is_equivalent(name: str, diff: str) -> bool:
    line = EQUIVALENT.get(name, ("", ""))[0]
    return bool(line) and line in "\n".join(ln for ln in diff.splitlines() if ln.startswith("+"))


def score_rows(results: dict[str, dict[str, str]],
               equivalent: set[str]) -> list[tuple[str, int, int, int, int, int]]:
    """(module, killed, survived, of them equivalent, no tests / other, total) per module, and
    over all modules."""
    rows = []
    for module, files in MODULES.items():
        states = [(n, s) for f in files for n, s in results[f].items()]
        det = sum(s in DETECTED for _, s in states)
        surv = sum(s == "survived" for _, s in states)
        equiv = sum(s == "survived" and n in equivalent for n, s in states)
        rows.append((module, det, surv, equiv, len(states) - det - surv, len(states)))
    tot = [sum(r[i] for r in rows) for i in range(1, 6)]
    rows.append(("**all**", *tot))
    return rows


def table(rows: list[tuple[str, int, int, int, int, int]]) -> str:
    lines = ["| module | killed | survived | of them equivalent | no tests / other | total "
             "| score (killed / total) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for module, det, surv, equiv, other, total in rows:
        score = f"{100 * det / total:.1f}%" if total else "n/a"
        lines.append(f"| {module} | {det} | {surv} | {equiv} | {other} | {total} | {score} |")
    return "\n".join(lines)


def old_baseline() -> str | None:
    if not RESULT.exists():
        return None
    text = RESULT.read_text()
    m = re.search(re.escape(BASELINE_START) + r"\n(.*?)\n" + re.escape(BASELINE_END), text, re.S)
    return m.group(1) if m else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tests", nargs="+", help="test selection instead of mutation.cfg's")
    ap.add_argument("--baseline", action="store_true",
                    help="also store this run's table as the baseline in mutation.md")
    ap.add_argument("--max-children", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--keep", action="store_true", help=f"keep the scratch copy {WORK}")
    ap.add_argument("--out", type=Path, default=RESULT)
    args = ap.parse_args(argv)

    tests = selected_tests(args.tests)
    prepare(WORK, args.tests)
    try:
        elapsed = run_mutmut(WORK, args.max_children)
        results = outcomes(WORK)
        survivors = mutant_diffs(WORK, {name: src for src, f in results.items()
                                        for name, s in f.items() if s not in DETECTED})
    finally:
        if not args.keep:
            shutil.rmtree(WORK, ignore_errors=True)

    equivalent = {name for name, diff in survivors.items() if is_equivalent(name, diff)}
    rows = score_rows(results, equivalent)
    today = dt.date.today().isoformat()
    current = table(rows)
    cmd = "python benchmarks/mutation.py" + (" --tests " + " ".join(args.tests) if args.tests else "")
    baseline = (f"Run on {today}, tests: {', '.join(tests)}.\n\n{current}" if args.baseline
                else old_baseline())
    out = [
        "# Mutation testing",
        "",
        f"Written by `benchmarks/mutation.py` (`make mutation`; kept out of CI). Date: {today}; "
        f"tool: mutmut {metadata.version('mutmut')}, Python {sys.version.split()[0]}, "
        f"{args.max_children} worker(s); command: `{cmd}` (settings: `benchmarks/mutation.cfg`); "
        f"wall time of the mutmut run: {elapsed / 60:.1f} min.",
        "",
        "Tests run against the mutants (each mutant only meets the tests that reach its "
        f"function): {', '.join(f'`{t}`' for t in tests)}.",
        "",
        "*killed* counts mutants the tests fail on (and time-outs); the score is killed / total. "
        "*of them equivalent*: survivors that behave exactly like the original (listed below "
        "with the reason), which no test can kill.",
        "",
        "## Score",
        "",
        current,
        "",
    ]
    if baseline:
        out += ["## Baseline (before the value tests were added)", "", BASELINE_START, baseline,
                BASELINE_END, ""]
    out += ["## Surviving mutants", ""]
    if not survivors:
        out.append("None.")
    for name, diff in sorted(survivors.items()):
        reason = EQUIVALENT[name][1] if name in equivalent else "**needs a test**"
        status = next(f[name] for f in results.values() if name in f)
        out += [f"- `{name}` ({status}): {reason}", "", "  ```diff",
                *("  " + ln for ln in diff.splitlines()), "  ```", ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(out).rstrip() + "\n")
    print(current)
    print(f"mutmut run: {elapsed:.0f} s; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
