"""``dfer predict --checkpoint CKPT VIDEO...``: expression labels with probabilities.

Each video (a file, or a folder of frames) goes through the preprocessing the checkpoint was
trained with (decode crop, and landmarks / parsing when the model uses them), then the model.
Prints one line per video: the path, then the top classes with probabilities; ``--json``
prints one JSON object per line instead. Exit status 1 when any video failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("videos", nargs="+", type=Path, help="video files or frame folders")
    parser.add_argument("--checkpoint", type=Path, required=True, help="checkpoint.safetensors")
    parser.add_argument("--top", type=int, default=3, help="how many classes to print per video")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--labels", nargs="+", default=None,
                        help="score these class names instead of the trained ones (zero-shot)")
    parser.add_argument("--preprocessing", default="{}",
                        help='JSON overriding stored preprocessing, e.g. {"landmarks": {"backend": "dlib"}}')
    parser.add_argument("--json", action="store_true", help="one JSON object per video")


def run(args: argparse.Namespace) -> int:
    from dfer.inference.predict import predict_videos

    preds = predict_videos(args.checkpoint, [str(v) for v in args.videos], device=args.device,
                           preprocessing=json.loads(args.preprocessing), labels=args.labels)
    failed = 0
    for p in preds:
        if p.error is not None:
            failed += 1
            print(f"{p.path}: ERROR {p.error}", file=sys.stderr)
            if args.json:
                print(json.dumps({"path": p.path, "error": p.error}))
            continue
        top = p.top(args.top)
        if args.json:
            print(json.dumps({"path": p.path, "label": top[0][0],
                              "probs": {lab: round(float(x), 6) for lab, x in zip(p.labels, p.probs, strict=True)}}))
        else:
            print(f"{p.path}\t" + "\t".join(f"{lab} {prob:.3f}" for lab, prob in top))
    return 1 if failed else 0
