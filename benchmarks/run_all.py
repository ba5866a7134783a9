"""Run every ``benchmarks/bench_*.py`` and index their results in ``benchmarks/results/README.md``.

Each benchmark is an on-demand script that writes its figures to
``benchmarks/results/<name>.json`` (and usually a short ``<name>.md``). This runner starts each
one in its own interpreter (so one benchmark's imports, caches and peak memory cannot distort
the next), records whether it succeeded and how long it took, then rebuilds the README from
every results JSON present: the benchmark's own Markdown summary when it wrote one, else its
top-level scalar figures. ``make bench`` calls it.

    python benchmarks/run_all.py                    # run everything, rebuild the README
    python benchmarks/run_all.py --only scale       # just bench_scale.py
    python benchmarks/run_all.py --collect-only     # rebuild the README from existing results
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
sys.path.insert(0, str(REPO / "src"))


@dataclass
class Outcome:
    """How one benchmark script ended."""

    name: str
    status: str  # ok | failed (exit N) | timed out
    seconds: float


def discover(folder: Path = HERE) -> dict[str, Path]:
    """``{name: script}`` for every ``bench_<name>.py`` in ``folder``, sorted by name."""
    return {p.stem[len("bench_"):]: p for p in sorted(folder.glob("bench_*.py"))}


def run_one(name: str, script: Path, timeout: float | None, extra: list[str]) -> Outcome:
    """Run one benchmark in a fresh interpreter from the repository root; output streams."""
    print(f"== {name}: {script.relative_to(REPO)}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, str(script), *extra], cwd=REPO, timeout=timeout)
        status = "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
    except subprocess.TimeoutExpired:
        status = f"timed out after {timeout:.0f} s"
    return Outcome(name, status, time.perf_counter() - t0)


def scalar_lines(data: dict, limit: int = 20) -> list[str]:
    """Top-level numbers / strings of a results JSON as Markdown bullets."""
    lines = []
    for key, value in data.items():
        if isinstance(value, (int, float, str, bool)):
            lines.append(f"- `{key}`: {value}")
        if len(lines) >= limit:
            break
    return lines or ["- (no top-level scalar figures; see the JSON)"]


def results_section(json_path: Path) -> list[str]:
    """The README section of one results JSON."""
    stem = json_path.stem
    lines = [f"## {stem}", "", f"Figures: [`{json_path.name}`]({json_path.name})"]
    md = json_path.with_suffix(".md")
    if md.exists():
        lines[-1] += f", summary: [`{md.name}`]({md.name})"
    lines.append("")
    if md.exists():
        body = md.read_text().strip().splitlines()
        if body and body[0].startswith("# "):  # the README already titles the section
            body = body[1:]
        while body and not body[0].strip():
            body = body[1:]
        lines += body + [""]
        return lines
    try:
        data = json.loads(json_path.read_text())
    except (OSError, ValueError) as exc:
        return lines + [f"- unreadable: {type(exc).__name__}: {exc}", ""]
    return lines + (scalar_lines(data) if isinstance(data, dict) else
                    [f"- a JSON {type(data).__name__}; see the file"]) + [""]


#: Stated in the README while ``gpu.json`` is absent: why there are no GPU figures.
NO_GPU_SECTION = [
    "## gpu (not measured)",
    "",
    "No GPU machine was lent to the sessions that produced these results (nor in the round of "
    "issue 23: eight GPUs, SLURM, shared caption servers), so there are no GPU figures "
    "(FineCLIPER training-step time and share of bf16 peak at batch 32 on ViT-B/16, 3 levels x 16 "
    "frames, peak GPU memory, DataLoader keeping up or not, FAN / FaRL frames/s, vLLM captions "
    "clips/s). Every GPU path ran only on the CPU. `benchmarks/gpu/run.py` ran only as its CPU "
    "`--smoke` check (`tests/test_gpu_bench_smoke.py`). On a GPU machine it writes "
    "`benchmarks/results/gpu.json` (how: [benchmarks/gpu/README.md](../gpu/README.md)); this "
    "index then shows that file in place of this note.",
    "",
]


def build_readme(results: Path, outcomes: list[Outcome] | None,
                 scripts: dict[str, Path] | None = None) -> str:
    """The results index: this run's outcomes (when it ran anything), every JSON found, a
    line for each benchmark script without results yet, and the GPU note while ``gpu.json``
    is absent."""
    lines = [
        "# Benchmark results",
        "",
        "Written by `benchmarks/run_all.py` (`make bench`); each `benchmarks/bench_<name>.py` "
        "writes `<name>.json` here. Figures are from the machine that ran them; compare "
        "ratios within one run, not absolute numbers across machines.",
        "",
    ]
    if outcomes:
        lines += ["| benchmark | status | seconds |", "|---|---|---|"]
        lines += [f"| {o.name} | {o.status} | {o.seconds:.1f} |" for o in outcomes]
        lines.append("")
    found = sorted(results.glob("*.json"))
    if not found:
        lines += ["No results yet: run `make bench`.", ""]
    for path in found:
        lines += results_section(path)
    missing = sorted(set(scripts if scripts is not None else discover()) - {p.stem for p in found})
    if missing:
        lines += ["## not run yet", ""]
        lines += [f"- {name}: `python benchmarks/bench_{name}.py` writes `{name}.json` here"
                  for name in missing]
        lines.append("")
    if not (results / "gpu.json").exists():
        lines += NO_GPU_SECTION
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run just these benchmarks")
    parser.add_argument("--skip", nargs="+", metavar="NAME", default=[], help="do not run these")
    parser.add_argument("--timeout", type=float, default=3600.0,
                        help="seconds before a benchmark is stopped (default 3600)")
    parser.add_argument("--collect-only", action="store_true",
                        help="run nothing; rebuild the README from the results present")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--results", type=Path, default=RESULTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    scripts = discover()
    if args.list:
        for name, script in scripts.items():
            print(f"{name}\t{script.relative_to(REPO)}")
        return 0
    unknown = sorted((set(args.only or []) | set(args.skip)) - set(scripts))
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; known: {', '.join(scripts) or 'none'}")
    chosen = [n for n in (args.only or scripts) if n not in args.skip]

    outcomes: list[Outcome] = []
    if not args.collect_only:
        outcomes = [run_one(n, scripts[n], args.timeout, []) for n in chosen]

    from dfer.core.artifacts import write_bytes_atomic

    args.results.mkdir(parents=True, exist_ok=True)
    readme = args.results / "README.md"
    write_bytes_atomic(readme, build_readme(args.results, outcomes, scripts).encode())
    for o in outcomes:
        print(f"{o.name:20s} {o.status:28s} {o.seconds:8.1f} s", file=sys.stderr)
    print(f"results index: {readme}", file=sys.stderr)
    return 0 if all(o.status == "ok" for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
