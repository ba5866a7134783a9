"""The ``dfer`` command line: one sub-command per stage plus user tools.

Each sub-command lives in its own module under ``dfer.stages`` exposing
``add_arguments(parser)`` and ``run(args) -> int``; modules are imported lazily so that
``dfer inspect`` does not pay for importing torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: sub-command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo-data": ("dfer.stages.demo_data", "write the synthetic demo dataset (videos + manifest)"),
    "manifest": ("dfer.stages.manifest", "normalize a dataset's split files and write shard manifests"),
    "decode": ("dfer.stages.decode", "decode, face-crop and resize the sampled frames of one shard"),
    "landmarks": ("dfer.stages.landmarks", "68-point landmarks for the decoded frames of one shard"),
    "parsing": ("dfer.stages.parsing", "face parsing label maps for the decoded frames of one shard"),
    "landmark-features": ("dfer.stages.landmark_features",
                          "landmark feature maps (MobileFaceNet conv_4 or FAN heat maps) of one shard"),
    "captions": ("dfer.stages.captions", "describe facial movements of each clip of one shard"),
    "serve-captions": ("dfer.stages.serve_captions",
                       "start one vllm serve per GPU group for the captions stage; print the URLs"),
    "train": ("dfer.stages.train", "train FineCLIPER on one fold"),
    "evaluate": ("dfer.stages.evaluate", "evaluate a trained fold (or zero-shot) and write metrics"),
    "predict": ("dfer.stages.predict", "predict expressions of video files with a trained checkpoint"),
    "report": ("dfer.stages.report", "one table and plots across folds and datasets"),
    "inspect": ("dfer.stages.inspect", "print a readable summary of any artifact"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dfer", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_module, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    # A GPU job that Snakemake runs on this machine takes GPUs of its own first, before any
    # sub-command imports torch (dfer.core.gpu_placement; nothing happens without
    # $DFER_JOB_GPUS, i.e. for CPU jobs, cluster jobs and commands run by hand).
    from dfer.core.gpu_placement import GpuPlacementError, place_job

    try:
        place_job()
    except GpuPlacementError as exc:
        print(f"dfer: {exc}", file=sys.stderr)
        return 3
    argv = list(sys.argv[1:] if argv is None else argv)
    top = build_parser()
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        top.parse_args(argv or ["--help"])
        return 2
    name, rest = argv[0], argv[1:]
    module = importlib.import_module(COMMANDS[name][0])
    parser = argparse.ArgumentParser(prog=f"dfer {name}", description=COMMANDS[name][1])
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    from dfer.core.integrity import DamagedArtifact

    try:
        return int(module.run(args) or 0)
    except DamagedArtifact as exc:  # an input is missing or cut short: one line, no traceback
        print(f"dfer {name}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
