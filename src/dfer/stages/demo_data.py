"""``dfer demo-data``: write the synthetic demo dataset (videos, frame folders, manifest.csv),
or with ``--static`` the static demo (stills of the demo face, manifest.csv)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", type=Path, default=None,
                        help="output folder (default: data/demo, with --static data/demo_static)")
    parser.add_argument("--static", action="store_true",
                        help="write the static demo instead: still images of the demo face, "
                             "layout demo_static (dfer.demo_static)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same data)")
    parser.add_argument("--clips-per-class", type=int, default=8,
                        help="clips (with --static: still images) of each class")
    parser.add_argument("--size", type=int, default=256, help="frame width and height, pixels")
    parser.add_argument("--fps", type=int, default=15, help="frame rate")
    parser.add_argument("--frames-every", type=int, default=4,
                        help="write every N-th clip as a JPEG frame folder (0: videos only)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    if args.static:
        from dfer.demo_static import generate_static_demo

        manifest = generate_static_demo(args.root or Path("data/demo_static"), seed=args.seed,
                                        images_per_class=args.clips_per_class, size=args.size,
                                        progress=not args.no_progress)
    else:
        from dfer.demo import generate_demo

        manifest = generate_demo(args.root or Path("data/demo"), seed=args.seed,
                                 clips_per_class=args.clips_per_class, size=args.size,
                                 fps=args.fps, frames_every=args.frames_every,
                                 progress=not args.no_progress)
    print(f"wrote {manifest}", file=sys.stderr)
    return 0
