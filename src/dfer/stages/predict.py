"""``dfer predict --checkpoint CKPT CLIP...``: expression labels with probabilities.

CLIP arguments are video files, frame folders, folders of clips or quoted glob patterns (the
rule: :mod:`dfer.inference.sources`). The model and the face detectors are loaded once; each
clip goes through the preprocessing the checkpoint was trained with (decode crop, and landmarks
/ parsing when the model uses them), then the model, ``--batch-size`` clips per forward pass.

Prints one line per clip on stdout (the path, then the top classes with probabilities), or one
JSON object per line with ``--json``; ``--output FILE.parquet|FILE.csv`` also writes a table
of all clips, ``--overlay DIR`` a PNG strip per clip (crops, landmarks, top classes). A clip
that fails gets one line on stderr (``PATH: ERROR error_type: cause``); images lying beside
videos in a folder of clips are not predicted and get one note line (``dfer predict: note:``);
a progress bar and a closing summary with the times go to stderr too. Exit status 1 when any clip failed, 0 when
all were predicted, 2 for a usage error (bad option, unloadable checkpoint).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from collections.abc import Callable

    from dfer.inference.predict import Prediction, Predictor
    from dfer.inference.sources import Source


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("videos", nargs="+", metavar="CLIP",
                        help="video files, frame folders, folders of clips, or quoted globs "
                             "('clips/*.mp4', 'data/**/*.avi')")
    parser.add_argument("--checkpoint", type=Path, required=True, help="checkpoint.safetensors")
    parser.add_argument("--top", type=int, default=3, help="how many classes to print per clip")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--labels", action="append", default=None, metavar="NAMES",
                        help="score these class names instead of the trained ones (zero-shot): "
                             "comma-separated (--labels happy,sad), or the option repeated")
    parser.add_argument("--preprocessing", default="{}",
                        help='JSON overriding stored preprocessing, e.g. {"landmarks": {"backend": "dlib"}}')
    parser.add_argument("--json", action="store_true", help="one JSON object per clip on stdout")
    parser.add_argument("--output", type=Path, default=None, metavar="FILE",
                        help="also write a table of all clips: FILE.parquet or FILE.csv")
    parser.add_argument("--overlay", type=Path, default=None, metavar="DIR",
                        help="write one PNG strip per clip into DIR: the face crops the model "
                             "saw, landmarks, top classes")
    parser.add_argument("--batch-size", type=int, default=8,
                        help="clips per forward pass (default 8)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def parse_labels(values: list[str] | None) -> list[str] | None:
    """``--labels a,b --labels c`` -> ``[a, b, c]`` (None when the option was not given)."""
    if values is None:
        return None
    names = [name.strip() for v in values for name in v.split(",") if name.strip()]
    if not names:
        raise ValueError("--labels needs at least one class name")
    if len(set(names)) != len(names):
        raise ValueError(f"--labels names a class twice: {names}")
    return names


def _usage(message: str) -> int:
    print(f"dfer predict: error: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    try:
        labels = parse_labels(args.labels)
        preprocessing = json.loads(args.preprocessing)
        if not isinstance(preprocessing, dict):
            raise ValueError("--preprocessing must be a JSON object of config sections")
        if args.top < 1 or args.batch_size < 1:
            raise ValueError("--top and --batch-size must be at least 1")
        if args.output is not None:
            from dfer.inference.table import check_table_path

            check_table_path(args.output)
    except (ValueError, json.JSONDecodeError) as exc:
        return _usage(str(exc))

    from dfer.inference.sources import expand_sources

    notes: list[str] = []
    sources = expand_sources(args.videos, notes)
    for note in dict.fromkeys(notes):  # a folder named twice: one note
        print(f"dfer predict: note: {note}", file=sys.stderr, flush=True)
    predictor = None
    if any(s.error is None for s in sources):  # nothing to load for arguments naming no clip
        from dfer.inference.predict import Predictor

        try:
            predictor = Predictor(args.checkpoint, device=args.device, preprocessing=preprocessing,
                                  labels=labels, batch_size=args.batch_size)
        except (OSError, ValueError, RuntimeError) as exc:
            return _usage(f"cannot load {args.checkpoint}: {' '.join(str(exc).split())}")
    return _predict_all(args, sources, predictor, start)


def _report_clip(pred: Prediction, args: argparse.Namespace,
                 emit: Callable[[str, TextIO], None]) -> None:
    """One clip's output: its top classes (or ``--json`` record) on stdout; a failed clip's
    one line on stderr (``PATH: ERROR error_type: cause``)."""
    if pred.ok and not args.json:
        emit(f"{pred.path}\t" + "\t".join(f"{lab} {p:.3f}" for lab, p in pred.top(args.top)), sys.stdout)
    if not pred.ok:
        emit(f"{pred.path}: ERROR {pred.error_type}: {pred.error}", sys.stderr)
    if args.json:
        from dfer.inference.table import record

        emit(json.dumps(record(pred, args.top)), sys.stdout)


def _predict_all(args: argparse.Namespace, sources: list[Source], predictor: Predictor | None,
                 start: float) -> int:
    from tqdm import tqdm

    from dfer.inference.predict import Prediction

    startup = time.perf_counter() - start
    overlay_names = {}
    if args.overlay is not None:
        from dfer.inference.overlay import overlay_names as names_for
        from dfer.inference.overlay import write_strip

        overlay_names = names_for([s.path for s in sources])
    bar = tqdm(total=len(sources), file=sys.stderr, unit="clip", desc="dfer predict",
               disable=args.no_progress, dynamic_ncols=True)

    def emit(text: str, stream: TextIO) -> None:
        if bar.disable:
            print(text, file=stream, flush=True)
        else:
            bar.write(text, file=stream)
            stream.flush()

    labels = predictor.labels if predictor is not None else []
    preds: list[Prediction] = []
    if predictor is not None:
        results = predictor.predict(sources, keep_crops=args.overlay is not None)
    else:
        results = iter(Prediction(s.path, [], None, s.error, s.error_type) for s in sources)
    loop_start = time.perf_counter()
    failed = 0
    for pred in results:
        if pred.ok and args.overlay is not None:
            try:
                write_strip(pred, args.overlay / overlay_names[pred.path], args.top)
            except Exception as exc:  # noqa: BLE001 - the clip's line says why
                pred.error, pred.error_type = f"overlay not written: {exc}", "unexpected"
        pred.crops = pred.points = pred.frame_indices = None  # the overlay is done with them
        failed += 0 if pred.ok else 1
        _report_clip(pred, args, emit)
        preds.append(pred)
        bar.update(1)
    bar.close()
    clips_s = time.perf_counter() - loop_start
    if args.output is not None:
        from dfer.inference.table import write_table

        write_table(args.output, preds, labels, args.top,
                    info={"checkpoint": str(args.checkpoint), "device": args.device})
    n = len(preds)
    per = f" ({clips_s / n:.3f} s per clip)" if n else ""
    print(f"dfer predict: {n} clip(s), {n - failed} predicted, {failed} failed; start-up "
          f"{startup:.2f} s, clips {clips_s:.2f} s{per}, total {time.perf_counter() - start:.2f} s",
          file=sys.stderr, flush=True)
    return 1 if failed else 0
