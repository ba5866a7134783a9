"""Bad input, one probe at a time: what each one ends in (the count of issue 24).

Every probe feeds one kind of bad (or odd but valid) input to the command a user or a rule
runs (``dfer manifest``, ``dfer decode``, ``dfer landmarks``, ``dfer parsing``, ``dfer report``,
``dfer inspect``, ``dfer predict``, Snakemake), each in its own process, and sorts the outcome:

* ``clear error``: the command stopped (exit status != 0) with no traceback, naming the file,
  line or key at fault;
* ``per-clip record``: the clip became a failure row (an ``error_type`` other than
  ``unexpected``) or a ``dfer predict`` error line, and the rest went on;
* ``handled, reported``: the input was kept or repaired and a warning, a count or a note says
  what was done (a frame folder's unreadable images skipped, a damaged shard rebuilt);
* ``works``: odd but valid input, decoded as it should be;
* ``unclear error``: it failed, but the message names no file or key, or a clip failed as
  ``unexpected``;
* ``traceback``, ``silent`` (bad input accepted, or a result quietly missing), ``data loss``
  (other clips lost with it), ``excess memory`` (over 1 GB for one clip).

The library under test is ``--src`` (default: this checkout's ``src/``), so the same probes
run against an older checkout's library give the "before" column:

    python benchmarks/probe_bad_input.py                      # -> results/bad_input.{json,md}
    python benchmarks/probe_bad_input.py --src OLD/src --label before   # merged into the same files

Shell quoting of rule commands and dry runs under a running workflow (issue 24, items 1 and
5) are not probed here. The 8000x8000 probe needs ~4 GB without a memory bound.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

OUTCOMES = ("clear error", "per-clip record", "handled, reported", "works", "unclear error",
            "traceback", "silent", "data loss", "excess memory")


@dataclass
class Probe:
    group: str
    name: str
    run: Callable[[Path], tuple[str, str]]  # workdir -> (outcome, evidence)


class Env:
    """Where the probes run: the library under test and a scratch folder."""

    def __init__(self, src: Path, scratch: Path) -> None:
        self.src = src
        self.scratch = scratch
        self.checkout = src.parent

    def dfer(self, *args: str, cwd: Path | None = None, memory: bool = False,
             timeout: int = 900) -> tuple[int, str, str]:
        """``python -m dfer ARGS`` on the library under test: (exit status, stdout, stderr).
        ``memory``: the peak resident memory (VmHWM, MB) is appended to stderr as
        ``PEAK_MB=...``."""
        code = ("import sys, runpy\n"
                "sys.argv = ['dfer', *sys.argv[1:]]\n"
                "from dfer.cli import main\n"
                "try:\n    rc = main(sys.argv[1:])\n"
                "finally:\n"
                f"    if {memory}:\n"
                "        hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')]\n"
                "        print('PEAK_MB=%.0f' % (int(hwm[0].split()[1]) / 1024), file=sys.stderr)\n"
                "sys.exit(rc)\n")
        proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                              cwd=cwd or self.scratch, timeout=timeout,
                              env={**os.environ, "PYTHONPATH": f"{self.src}{os.pathsep}{REPO / 'tests'}",
                                   "DFER_LOCAL_GPUS": "0"})
        return proc.returncode, proc.stdout, proc.stderr


def cli_outcome(code: int, err: str, names: str) -> tuple[str, str]:
    """A failed command's outcome: traceback, clear (names ``names``) or unclear error."""
    last = [line for line in err.strip().splitlines() if line.strip()]
    evidence = last[-1][:200] if last else ""
    if "Traceback" in err:
        return "traceback", evidence
    if code == 0:
        return "silent", evidence or "exit 0"
    return ("clear error" if names in err else "unclear error"), evidence


# ------------------------------------------------------------------------- inputs


def _videos():  # noqa: ANN202 - the test fixtures' writers
    sys.path.insert(0, str(REPO / "tests"))
    from support import videos

    return videos


def write_clips(folder: Path) -> dict[str, tuple[Path, str]]:
    """One input per decode probe: (path, source_kind)."""
    v = _videos()
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    noisy = [np.clip(f.astype(np.int16) + rng.integers(-20, 21, f.shape), 0, 255).astype(np.uint8)
             for f in v.pattern_frames(20, 64, 64)]
    out: dict[str, tuple[Path, str]] = {}

    def video(name: str, path: Path) -> None:
        out[name] = (path, "video")

    video("good video", v.write_video(folder / "good.mp4", v.pattern_frames(20, 64, 64)))
    empty = folder / "empty.mp4"
    empty.write_bytes(b"")
    video("zero-byte video", empty)
    video("truncated mp4 (index first)", v.truncate_file(
        v.write_video(folder / "trunc.mp4", noisy, faststart=True), 0.6))
    video("truncated mp4 (index lost)", v.truncate_file(
        v.write_video(folder / "nomoov.mp4", v.pattern_frames(20, 64, 64)), 0.6))
    video("truncated mkv", v.truncate_file(v.write_video(folder / "trunc.mkv", noisy), 0.6))
    fake = folder / "fake.mp4"
    fake.write_bytes(rng.integers(0, 256, 4096, np.uint8).tobytes())
    video("random bytes named .mp4", fake)
    text = folder / "notes.mp4"
    text.write_text("this is not a video\n")
    video("text file named .mp4", text)
    video("audio-only file", v.write_audio_only(folder / "audio.mp4"))
    video("video deleted after the manifest", folder / "gone.mp4")
    video("grey video", v.write_video(folder / "grey.mkv", [f[..., 0] for f in
                                                            v.pattern_frames(12, 64, 64)],
                                      codec="ffv1", pix_fmt="gray"))
    video("odd-sized video (317x241)", v.write_video(folder / "odd.avi",
                                                     v.pattern_frames(12, 317, 241), codec="mpeg4"))
    video("variable frame rate", v.write_video(folder / "vfr.mp4", v.pattern_frames(12, 64, 64),
                                               pts_ms=[0, 33, 66, 200, 233, 500, 533, 566, 900,
                                                       1000, 1033, 1300]))
    video("rotated phone video", v.write_video(folder / "rot.mp4", v.pattern_frames(8, 64, 48),
                                               display=(90, False, False)))
    video("one-frame video", v.write_video(folder / "one.mp4", v.pattern_frames(1, 64, 64)))
    video("200x8 sliver video", v.write_video(folder / "sliver.mkv", v.pattern_frames(4, 200, 8),
                                              codec="ffv1"))

    def frames(name: str, path: Path) -> None:
        out[name] = (path, "frames")

    empty_dir = folder / "empty_frames"
    empty_dir.mkdir()
    frames("empty frame folder", empty_dir)
    notes = folder / "not_images"
    notes.mkdir()
    (notes / "readme.txt").write_text("x")
    frames("frame folder of non-images", notes)
    one_bad = v.write_frame_folder(folder / "one_corrupt", v.pattern_frames(17, 64, 64))
    (one_bad / "00004.jpg").write_bytes(b"not a jpeg")
    frames("1 corrupt jpg of 17", one_bad)
    three_bad = v.write_frame_folder(folder / "three_bad", v.pattern_frames(17, 64, 64))
    (three_bad / "00004.jpg").write_bytes(b"not a jpeg")
    v.truncate_file(three_bad / "00009.jpg", 0.5)
    (three_bad / "00012.jpg").write_bytes(b"")
    frames("corrupt + truncated + empty jpg of 17 (T=16)", three_bad)
    mixed = v.write_frame_folder(folder / "mixed_sizes", v.pattern_frames(17, 64, 64))
    v.write_frame_folder(mixed, [v.pattern_frames(1, 48, 64)[0]] * 3, start=5)
    frames("frames of different sizes", mixed)
    frames("1x1 images", v.write_frame_folder(folder / "tiny", [np.zeros((1, 1, 3), np.uint8)] * 3))
    return out


# ------------------------------------------------------------------------- probes


def manifest_probes(env: Env) -> list[Probe]:
    """Split-file faults through ``dfer manifest`` (generic layout)."""
    v = _videos()
    root = env.scratch / "man" / "data"
    root.mkdir(parents=True)
    for c in ("a", "b"):
        v.write_video(root / f"{c}.mp4", v.pattern_frames(8, 64, 64))
    header = "clip_id,path,label,test_fold\n"
    cases = {
        "duplicate clip id": ("a,a.mp4,happy,1\na,b.mp4,sad,1\n", ":3:"),
        "unknown label": ("a,a.mp4,bored,1\n", ":2:"),
        "missing video": ("a,a.mp4,happy,1\nc,c.mp4,sad,1\n", ":3:"),
        "malformed line": ("a,a.mp4,happy\n", ":2:"),
        "fold not a number": ("a,a.mp4,happy,one\n", ":2:"),
        "id with a space": ("a b,a.mp4,happy,1\n", ":2:"),
        "reserved id __metadata__": ("a,a.mp4,happy,1\n__metadata__,b.mp4,sad,1\n", ":3:"),
        "id '.'": ("a,a.mp4,happy,1\n.,b.mp4,sad,1\n", ":3:"),
        "id '..'": ("a,a.mp4,happy,1\n..,b.mp4,sad,1\n", ":3:"),
        "id longer than a file name": (f"a,a.mp4,happy,1\n{'x' * 300},b.mp4,sad,1\n", ":3:"),
        "header only": ("", "no clips listed"),
    }
    probes = []
    for n, (name, (body, names)) in enumerate(cases.items()):
        def run(work: Path, body: str = body, names: str = names, n: int = n,
                name: str = name) -> tuple[str, str]:
            csv = root / f"split{n}.csv"
            csv.write_text(header + body, encoding="utf-8")
            config = _config(work, root, [csv])
            code, out, err = env.dfer("manifest", "--config", str(config), "--dataset", "g",
                                      cwd=work)
            if code == 0 and "__metadata__" in name:
                return _reserved_downstream(env, work)
            if code == 0:
                return "silent", f"accepted: {out.splitlines()[0] if out else ''}"
            return cli_outcome(code, err, f"{csv}{names}" if names.startswith(":") else names)
        probes.append(Probe("split files", name, run))

    def bom(work: Path) -> tuple[str, str]:
        csv = root / "bom.csv"
        csv.write_text("\ufeff" + header + "a,a.mp4,happy,1\nb,b.mp4,sad,2\n", encoding="utf-8")
        config = _config(work, root, [csv])
        # the sync of a pipeline run: config/config.yaml + the overlay, schema defaults filled
        sync = ("import sys, yaml\n"
                "from snakemake.utils import update_config, validate\n"
                "from dfer.pipeline import prepare_datasets\n"
                "config = yaml.safe_load(open('config/config.yaml'))\n"
                "update_config(config, yaml.safe_load(open(sys.argv[1])))\n"
                f"validate(config, {str(env.checkout / 'workflow/schemas/config.schema.yaml')!r})\n"
                "prepare_datasets(config)\n")
        subprocess.run([sys.executable, "-c", sync, str(config)], cwd=work, check=True,
                       capture_output=True, env={**os.environ, "PYTHONPATH": str(env.src)})
        code, out, err = env.dfer("manifest", "--check", "--config", str(config), "--dataset",
                                  "g", cwd=work)
        if code != 0:
            return cli_outcome(code, err, str(csv))
        line = next((x for x in out.splitlines() if "would rewrite" in x), out[-200:])
        return ("works" if "none (whole manifest unchanged)" in line else "silent"), line[:200]
    probes.append(Probe("split files", "split file with a BOM, --check after a sync", bom))

    def missing_split(work: Path) -> tuple[str, str]:
        config = _config(work, root, [root / "nope.csv"])
        code, _, err = env.dfer("manifest", "--config", str(config), "--dataset", "g", cwd=work)
        return cli_outcome(code, err, "nope.csv")
    probes.append(Probe("split files", "split file missing", missing_split))

    def missing_root(work: Path) -> tuple[str, str]:
        csv = root / "ok.csv"
        csv.write_text(header + "a,a.mp4,happy,1\n", encoding="utf-8")
        config = _config(work, work / "no_such_root", [csv])
        code, _, err = env.dfer("manifest", "--config", str(config), "--dataset", "g", cwd=work)
        return cli_outcome(code, err, "root")
    probes.append(Probe("split files", "dataset root missing", missing_root))
    return probes


def _config(work: Path, root: Path, splits: list[Path], **extra: object) -> Path:
    import yaml

    (work / "config").mkdir(parents=True, exist_ok=True)
    shutil.copy2(REPO / "config" / "config.yaml", work / "config" / "config.yaml")
    definition = {"layout": "generic", "root": str(root), "split_files": [str(s) for s in splits],
                  "num_shards": 1, **extra}
    path = work / "overlay.yaml"
    path.write_text(yaml.safe_dump({"results": str(work / "results"), "datasets": ["g"],
                                    "dataset_defs": {"g": definition}}))
    return path


def _reserved_downstream(env: Env, work: Path) -> tuple[str, str]:
    """The manifest took `__metadata__`: decode the shard, then landmarks on it."""
    shard = work / "results" / "g" / "manifest" / "shard-000.parquet"
    frames = work / "results" / "g" / "frames"
    code, _, err = env.dfer("decode", "--manifest", str(shard), "--out-frames",
                            str(frames / "shard-000.safetensors"), "--out-index",
                            str(frames / "shard-000.parquet"), "--out-failures",
                            str(frames / "shard-000.failures.parquet"), "--no-progress",
                            "--params", '{"num_frames": 2, "size": 32, "escalate": []}')
    if code != 0:
        return cli_outcome(code, err, str(frames))
    code, _, err = env.dfer("landmarks", "--frames", str(frames / "shard-000.safetensors"),
                            "--index", str(frames / "shard-000.parquet"), "--out",
                            str(work / "l.parquet"), "--out-failures", str(work / "lf.parquet"),
                            "--params", '{"backend": "dlib"}')
    if code != 0:
        return "data loss", "decode said success; landmarks: " + cli_outcome(code, err, "")[1]
    return "silent", "accepted and decoded"


def decode_probes(env: Env) -> list[Probe]:
    """Each fault clip decoded by `dfer decode` (risky ones alone, the rest in one shard)."""
    clips = write_clips(env.scratch / "clips")
    alone = {"1x1 images", "200x8 sliver video"}
    batch = {k: v for k, v in clips.items() if k not in alone}
    ran: dict[str, tuple[str, str]] = {}

    def run_batch(work: Path, names: dict[str, tuple[Path, str]],
                  params: str = '{"num_frames": 16, "size": 32, "escalate": []}'
                  ) -> dict[str, tuple[str, str]]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        ids = {name: f"clip{i:02d}" for i, name in enumerate(names)}
        manifest = work / "shard.parquet"
        pq.write_table(pa.table({
            "clip_id": list(ids.values()), "path": [str(p) for p, _ in names.values()],
            "source_kind": [k for _, k in names.values()], "label": ["happiness"] * len(ids),
            "label_idx": pa.array([0] * len(ids), pa.int32()),
            "test_fold": pa.array([1] * len(ids), pa.int32())}), manifest)
        out = work / "frames"
        code, _, err = env.dfer("decode", "--manifest", str(manifest), "--out-frames",
                                str(out / "s.safetensors"), "--out-index", str(out / "s.parquet"),
                                "--out-failures", str(out / "s.failures.parquet"), "--no-progress",
                                "--params", params)
        if code != 0:
            outcome = cli_outcome(code, err, str(manifest))
            return {name: outcome for name in names}
        fails = {r["clip_id"]: r for r in pq.read_table(out / "s.failures.parquet").to_pylist()}
        index = {r["clip_id"]: r for r in pq.read_table(out / "s.parquet").to_pylist()}
        result = {}
        for name, cid in ids.items():
            if cid in fails:
                row = fails[cid]
                kind = "unclear error" if row["error_type"] == "unexpected" else "per-clip record"
                result[name] = (kind, f"{row['error_type']}: {row['message'][:160]}")
            elif cid in index:
                row = index[cid]
                counts = {k: row.get(k) for k in ("bad_frames", "resized_frames") if row.get(k)}
                result[name] = (("handled, reported", f"kept, counted {counts}") if counts else
                                ("works", f"decoded from {row['num_source_frames']} frames"))
            else:
                result[name] = ("data loss", "neither decoded nor recorded")
        return result

    def batch_probe(name: str) -> Probe:
        def run(work: Path) -> tuple[str, str]:
            if not ran:
                ran.update(run_batch(work, batch))
            return ran[name]
        return Probe("decode", name, run)

    def alone_probe(name: str) -> Probe:
        """Tiny frames alone, with the default escalation: dlib's CNN rung is what failed on
        them (and could crash the process afterwards)."""
        return Probe("decode", name, lambda work: run_batch(
            work, {name: clips[name]}, '{"num_frames": 16, "size": 32}')[name])

    probes = [batch_probe(n) for n in batch] + [alone_probe(n) for n in sorted(alone)]

    def huge(work: Path) -> tuple[str, str]:
        import cv2

        folder = work / "huge"
        folder.mkdir()
        small = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
        cv2.imwrite(str(folder / "00001.jpg"), cv2.resize(small, (8000, 8000)))
        import pyarrow as pa
        import pyarrow.parquet as pq

        manifest = work / "shard.parquet"
        pq.write_table(pa.table({"clip_id": ["huge"], "path": [str(folder)],
                                 "source_kind": ["frames"], "label": ["happiness"],
                                 "label_idx": pa.array([0], pa.int32()),
                                 "test_fold": pa.array([1], pa.int32())}), manifest)
        out = work / "frames"
        code, _, err = env.dfer("decode", "--manifest", str(manifest), "--out-frames",
                                str(out / "s.safetensors"), "--out-index", str(out / "s.parquet"),
                                "--out-failures", str(out / "s.failures.parquet"), "--no-progress",
                                "--params", '{"escalate": []}', memory=True)
        peak = float(next(line.split("=")[1] for line in err.splitlines() if line.startswith("PEAK_MB")))
        if code != 0:
            return cli_outcome(code, err, str(manifest))
        return ("works" if peak < 1024 else "excess memory"), f"peak {peak:.0f} MB"
    probes.append(Probe("decode", "one 8000x8000 image", huge))
    return probes


def config_probes(env: Env) -> list[Probe]:
    """`dfer manifest --config` overlays."""
    import yaml

    v = _videos()
    root = env.scratch / "cfg" / "data"
    root.mkdir(parents=True)
    v.write_video(root / "a.mp4", v.pattern_frames(8, 64, 64))
    csv = root / "split.csv"
    csv.write_text("clip_id,path,label,test_fold\na,a.mp4,happy,1\n", encoding="utf-8")
    definition = {"layout": "generic", "root": str(root), "split_files": [str(csv)], "num_shards": 1}

    def setup(work: Path) -> None:
        (work / "config").mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / "config" / "config.yaml", work / "config" / "config.yaml")

    def two(work: Path) -> tuple[str, str]:
        setup(work)
        a, b = work / "a.yaml", work / "b.yaml"
        a.write_text(yaml.safe_dump({"dataset_defs": {"g": dict(definition, num_shards=4)}}))
        b.write_text(yaml.safe_dump({"dataset_defs": {"g": {"num_shards": 1}}}))
        code, out, err = env.dfer("manifest", "--check", "--config", str(a), "--config", str(b),
                                  "--dataset", "g", cwd=work)
        if code == 0:
            return "works", out.splitlines()[0]
        return cli_outcome(code, err, str(a))

    def bad(text: str, names: str) -> Callable[[Path], tuple[str, str]]:
        def run(work: Path) -> tuple[str, str]:
            setup(work)
            path = work / "bad.yaml"
            path.write_text(text)
            code, _, err = env.dfer("manifest", "--check", "--config", str(path), "--dataset",
                                    "g", cwd=work)
            return cli_outcome(code, err, names)
        return run

    def missing(work: Path) -> tuple[str, str]:
        setup(work)
        code, _, err = env.dfer("manifest", "--config", str(work / "nope.yaml"), "--dataset", "g",
                                cwd=work)
        return cli_outcome(code, err, "nope.yaml")

    unknown = yaml.safe_dump({"dataset_defs": {"g": dict(definition, shards=3)}})
    return [Probe("config overlays", "two overlays without `results`", two),
            Probe("config overlays", "overlay that is a YAML list", bad("- a\n- b\n", "bad.yaml")),
            Probe("config overlays", "overlay with broken YAML", bad("a: [b\n", "bad.yaml")),
            Probe("config overlays", "unknown key in a dataset", bad(unknown, "shards")),
            Probe("config overlays", "overlay file missing", missing)]


#: (folder, suffix) of every shard file a later stage reads
KINDS = [("manifest", ".parquet"), ("frames", ".safetensors"), ("frames", ".parquet"),
         ("landmarks", ".parquet"), ("parsing", ".parquet"), ("captions", ".parquet"),
         ("frames", ".failures.parquet")]


def artifact_probes(env: Env) -> list[Probe]:
    """A deleted or truncated shard file, then the stage that reads it."""
    sys.path.insert(0, str(env.src))
    from support.dataset import write_synthetic_dataset

    pristine = env.scratch / "art" / "results"
    write_synthetic_dataset(pristine, "ds", num_classes=2, clips_per_class=2, frames=4, size=32,
                            num_shards=1)

    def consumer(results: Path, folder: str, suffix: str, work: Path) -> list[str]:
        def f(stage: str, suf: str) -> str:
            return str(results / "ds" / stage / f"shard-000{suf}")
        if folder == "manifest":
            return ["decode", "--manifest", f("manifest", ".parquet"), "--out-frames",
                    str(work / "f.safetensors"), "--out-index", str(work / "f.parquet"),
                    "--out-failures", str(work / "ff.parquet"), "--no-progress"]
        if folder == "frames" and suffix != ".failures.parquet":
            return ["landmarks", "--frames", f("frames", ".safetensors"), "--index",
                    f("frames", ".parquet"), "--out", str(work / "l.parquet"), "--out-failures",
                    str(work / "lf.parquet"), "--params", '{"backend": "dlib"}']
        if folder == "landmarks":
            return ["parsing", "--frames", f("frames", ".safetensors"), "--index",
                    f("frames", ".parquet"), "--landmarks", f("landmarks", ".parquet"),
                    "--out-maps", str(work / "p.safetensors"), "--out-index", str(work / "p.parquet"),
                    "--out-failures", str(work / "pf.parquet"), "--params", '{"backend": "landmarks"}']
        return ["report", "--results", str(results), "--datasets", "ds", "--out", str(work / "report")]

    probes = []
    for folder, suffix in KINDS:
        for how in ("deleted", "truncated"):
            def run(work: Path, folder: str = folder, suffix: str = suffix,
                    how: str = how) -> tuple[str, str]:
                results = work / "results"
                shutil.copytree(pristine, results)
                path = results / "ds" / folder / f"shard-000{suffix}"
                if how == "deleted":
                    path.unlink()
                else:
                    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * 0.6)])
                code, _, err = env.dfer(*consumer(results, folder, suffix, work), cwd=work)
                return cli_outcome(code, err, str(path))
            probes.append(Probe("damaged artifacts", f"{folder} {suffix} {how}", run))

    def report_images(work: Path) -> tuple[str, str]:
        results = work / "results"
        shutil.copytree(pristine, results)
        _fake_fold(results)
        (results / "ds" / "frames" / "shard-000.safetensors").unlink()
        code, _, err = env.dfer("report", "--results", str(results), "--datasets", "ds", "--out",
                                str(work / "report"), cwd=work)
        if code != 0:
            return cli_outcome(code, err, "safetensors")
        md = (work / "report" / "report.md").read_text()
        said = next((line for line in md.splitlines() if "have no images" in line), None)
        return ("handled, reported", said) if said else ("silent", "cards without images, unsaid")
    probes.append(Probe("damaged artifacts", "report with a deleted frames shard", report_images))

    def full_disk(work: Path) -> tuple[str, str]:
        results = work / "results"
        shutil.copytree(pristine, results)
        _fake_fold(results)
        # room for the tables and plots and half of the gallery: the disk fills in the gallery
        first = work / "first"
        env.dfer("report", "--results", str(results), "--datasets", "ds", "--out", str(first),
                 cwd=work)

        def pages(paths: list[Path]) -> int:
            return sum(-(-p.stat().st_size // 4096) * 4096 for p in paths if p.is_file())
        before = [first / n for n in ("metrics.csv", "summary.csv", "stages.csv", "metrics.png",
                                      "stages.png", "confusion.png")]
        size = pages(before) + pages(list((first / "gallery").rglob("*"))) // 2 + 8192
        out = work / "tiny"
        out.mkdir()
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(out)],
                                 capture_output=True).returncode == 0
        if not mounted:
            return "unclear error", "cannot mount a tmpfs here: not probed"
        try:
            code, _, err = env.dfer("report", "--results", str(results), "--datasets", "ds",
                                    "--out", str(out), cwd=work)
            left = sorted(p.name for p in out.rglob("*") if ".tmp" in p.name)
        finally:
            subprocess.run(["umount", str(out)], check=False)
        outcome, evidence = cli_outcome(code, err, str(out) + "/")
        if left and outcome == "clear error":
            outcome = "unclear error"
        return outcome, evidence + (f" (left behind: {', '.join(left)})" if left else "")
    probes.append(Probe("damaged artifacts", "report onto a full disk (tmpfs)", full_disk))

    for suffix in (".safetensors", ".parquet"):
        def inspect(work: Path, suffix: str = suffix) -> tuple[str, str]:
            path = work / f"shard-000{suffix}"
            data = (pristine / "ds" / "frames" / f"shard-000{suffix}").read_bytes()
            path.write_bytes(data[: len(data) // 2])
            code, _, err = env.dfer("inspect", str(path), cwd=work)
            return cli_outcome(code, err, str(path))
        probes.append(Probe("damaged artifacts", f"dfer inspect of a truncated {suffix}", inspect))
    return probes


def _fake_fold(results: Path) -> None:
    """An evaluated fold (predictions + metrics) over the synthetic dataset's fold-1 clips."""
    import pandas as pd

    from dfer.core.artifacts import provenance, write_parquet
    from dfer.train.evaluate import PREDICTIONS_SCHEMA
    from dfer.train.metrics import compute_metrics

    labels = ["class0", "class1"]
    manifest = pd.read_parquet(results / "ds" / "manifest" / "manifest.parquet")
    test = manifest[manifest["test_fold"] == 1]
    frame = pd.DataFrame([{"clip_id": c, "label": labels[k], "label_idx": k, "pred_idx": 0,
                           "pred_label": labels[0], "prob": np.float32(0.5), "correct": k == 0,
                           "probs": np.full(2, 0.5, np.float32)}
                          for c, k in zip(test["clip_id"], test["label_idx"], strict=True)])
    fold = results / "ds" / "train" / "r" / "fold-1"
    write_parquet(fold / "predictions.parquet", frame, provenance("evaluate", 1, labels=labels),
                  schema=PREDICTIONS_SCHEMA)
    metrics = compute_metrics(frame["label_idx"], frame["pred_idx"], labels)
    metrics.update(dataset="ds", fold=1, run="r", trained_on="ds", zero_shot=False)
    (fold / "metrics.json").write_text(json.dumps(metrics))


def snakemake_probe(env: Env) -> list[Probe]:
    """A deleted frames shard under Snakemake: is it rebuilt by the next run?"""
    def run(work: Path) -> tuple[str, str]:
        import yaml

        project = work / "project"
        (project / "config").mkdir(parents=True)
        config = yaml.safe_load((env.checkout / "config" / "config.yaml").read_text())
        config["datasets"] = ["demo"]
        config["dataset_defs"] = {"demo": {**config["dataset_defs"]["demo"], "num_shards": 2,
                                           "demo_clips_per_class": 1}}
        config["decode"].update(num_frames=2, size=32)
        (project / "config" / "config.yaml").write_text(yaml.safe_dump(config))

        def snakemake(*args: str) -> str:
            proc = subprocess.run(
                [sys.executable, "-m", "snakemake", "--snakefile", str(env.checkout / "Snakefile"),
                 "--directory", str(project), "--cores", "2", *args], capture_output=True,
                text=True, timeout=1200, env={**os.environ, "PYTHONPATH": str(env.src),
                                              "DFER_LOCAL_GPUS": "0"})
            return proc.stdout + proc.stderr
        snakemake("decode_all")
        (project / "results" / "demo" / "frames" / "shard-000.safetensors").unlink()
        out = snakemake("decode_all")
        if (project / "results" / "demo" / "frames" / "shard-000.safetensors").exists():
            return "handled, reported", "rebuilt by the next run"
        return "silent", "Nothing to be done" if "Nothing to be done" in out else out[-200:]
    return [Probe("damaged artifacts", "snakemake after deleting a frames shard", run)]


def predict_probes(env: Env) -> list[Probe]:
    """`dfer predict` on bad and mixed arguments (a tiny checkpoint trained here)."""
    v = _videos()
    state: dict[str, Path] = {}

    def checkpoint(work: Path) -> Path:
        if "ckpt" not in state:
            sys.path.insert(0, str(env.src))
            from support.dataset import simple_renderers, write_synthetic_dataset

            from dfer.train.fit import train_fold

            results = env.scratch / "pred" / "results"
            write_synthetic_dataset(results, "pre", num_classes=2, clips_per_class=2, frames=4,
                                    size=32)
            params = {"dataset": "pre", "device": "cpu",
                      "model": {"backbone": "tiny", "pretrained": None},
                      "data": {"batch_size": 4, "num_workers": 0, "num_frames": 4},
                      "optim": {"lr": 1e-2}, "trainer": {"max_epochs": 1, "seed": 0,
                                                         "precision": "32-true"}}
            state["ckpt"] = train_fold(results, "pre", 1, "r", params,
                                       results / "pre" / "train" / "r" / "fold-1",
                                       renderers=simple_renderers())
        return state["ckpt"]

    pre = json.dumps({"decode": {"num_frames": 4, "size": 112, "escalate": []},
                      "landmarks": {"backend": "dlib", "detector": "crop"},
                      "parsing": {"backend": "landmarks"}})

    def predict(work: Path, *paths: Path) -> tuple[int, str, str]:
        return env.dfer("predict", "--checkpoint", str(checkpoint(work)), "--device", "cpu",
                        "--no-progress", "--preprocessing", pre, "--json", *map(str, paths),
                        cwd=work)

    def mixed(work: Path) -> tuple[str, str]:
        folder = work / "mixed"
        for name in ("a.mkv", "b.mkv"):
            v.write_video(folder / name, v.face_frames(6, size=160), codec="ffv1")
        v.write_frame_folder(work / "img", v.face_frames(1, size=160))
        shutil.move(str(work / "img" / "00001.jpg"), folder / "cover.jpg")
        code, out, err = predict(work, folder)
        paths = [json.loads(line)["path"] for line in out.splitlines() if line.startswith("{")]
        if "Traceback" in err:
            return "traceback", err.strip().splitlines()[-1]
        if paths == [str(folder)]:
            return "silent", "one prediction for the whole folder; its videos ignored"
        note = next((line for line in err.splitlines() if "not predicted" in line), None)
        return (("handled, reported", f"{len(paths)} videos predicted; {note[:120]}") if note
                else ("silent", f"{len(paths)} predicted, image unmentioned"))

    def bad_clip(make: Callable[[Path], Path]) -> Callable[[Path], tuple[str, str]]:
        def run(work: Path) -> tuple[str, str]:
            path = make(work)
            code, out, err = predict(work, path)
            line = next((x for x in err.splitlines() if ": ERROR " in x), "")
            if "Traceback" in err:
                return "traceback", err.strip().splitlines()[-1]
            return (("per-clip record", line[:200]) if code == 1 and line else
                    cli_outcome(code, err, str(path)))
        return run

    def corrupt(work: Path) -> Path:
        p = work / "c.mp4"
        p.write_bytes(b"\0" * 1000)
        return p

    def empty_folder(work: Path) -> Path:
        (work / "empty").mkdir()
        return work / "empty"

    return [Probe("predict", "folder of videos and one image", mixed),
            Probe("predict", "missing file", bad_clip(lambda w: w / "gone.mp4")),
            Probe("predict", "corrupt video", bad_clip(corrupt)),
            Probe("predict", "empty folder", bad_clip(empty_folder))]


# ------------------------------------------------------------------------- report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=REPO / "src", help="library under test")
    parser.add_argument("--label", default="after", help="column name of this run")
    parser.add_argument("--only", default=None, help="run only probes of this group")
    parser.add_argument("--no-snakemake", action="store_true", help="skip the Snakemake probe")
    args = parser.parse_args()
    sys.path.insert(0, str(args.src.resolve()))
    results: dict[str, dict[str, list[str]]] = {}
    with tempfile.TemporaryDirectory(prefix="dfer-probe-") as tmp:
        env = Env(args.src.resolve(), Path(tmp))
        groups = [manifest_probes, decode_probes, config_probes, artifact_probes, predict_probes]
        if not args.no_snakemake:
            groups.append(snakemake_probe)
        for make in groups:
            probes = make(env)
            for n, probe in enumerate(probes):
                if args.only and probe.group != args.only:
                    continue
                work = Path(tmp) / "work" / f"{probe.group}-{n}".replace(" ", "_")
                work.mkdir(parents=True, exist_ok=True)
                try:
                    outcome, evidence = probe.run(work)
                except Exception as exc:  # noqa: BLE001 - the probe itself broke: say so
                    outcome, evidence = "traceback", f"probe error {type(exc).__name__}: {exc}"[:200]
                results.setdefault(probe.group, {})[probe.name] = [outcome, evidence]
                print(f"[{outcome}] {probe.group}: {probe.name}: {evidence}", flush=True)
    write(results, args.label)


def write(results: dict[str, dict[str, list[str]]], label: str) -> None:
    out = HERE / "results"
    path = out / "bad_input.json"
    every = json.loads(path.read_text()) if path.exists() else {}
    every.setdefault(label, {}).update(results)  # --only: the other groups' results stay
    path.write_text(json.dumps(every, indent=2, ensure_ascii=False) + "\n")
    labels = [x for x in ("before", "after") if x in every] + \
        [x for x in every if x not in ("before", "after")]
    lines = ["# Bad input: what each probe ends in (`benchmarks/probe_bad_input.py`)", "",
             "Outcome categories: see the script's docstring. `before`: the library of the "
             "commit this branch started from; `after`: this checkout.", "",
             "| outcome | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for outcome in OUTCOMES:
        counts = [sum(1 for g in every[x].values() for o, _ in g.values() if o == outcome)
                  for x in labels]
        lines.append(f"| {outcome} | " + " | ".join(map(str, counts)) + " |")
    totals = [sum(len(g) for g in every[x].values()) for x in labels]
    lines.append("| **probes** | " + " | ".join(map(str, totals)) + " |")
    lines += ["", "| group | probe | " + " | ".join(labels) + f" | evidence ({labels[-1]}) |",
              "|---|---|" + "---|" * (len(labels) + 1)]
    keys = {(g, name) for x in labels for g, probes in every[x].items() for name in probes}
    order = {g: i for i, g in enumerate(every[labels[-1]])}
    for group, name in sorted(keys, key=lambda k: (order.get(k[0], 99), k[1])):
        cells = [every[x].get(group, {}).get(name, ["-", ""])[0] for x in labels]
        evidence = every[labels[-1]].get(group, {}).get(name, ["", ""])[1].replace("|", "/")
        lines.append(f"| {group} | {name} | " + " | ".join(cells) + f" | {evidence[:160]} |")
    (out / "bad_input.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:16]))


if __name__ == "__main__":
    main()
