"""Where every artifact lives: the one definition that rules, stages, the report and tests use.

Layout (``results/{dataset}/...``)::

    manifest/manifest.parquet          normalized manifest of the whole dataset
    manifest/shard-{s}.parquet         the clips of shard s (rewritten only when they change)
    frames/shard-{s}.safetensors       decoded face crops, key clip_id -> uint8 [T, S, S, 3]
    frames/shard-{s}.parquet           decode index, one row per decoded clip
    frames/shard-{s}.failures.parquet  per-clip decode failures
    landmarks/shard-{s}.parquet        one row per (clip, frame): bbox, score, 68x2 points
    parsing/shard-{s}.safetensors      label maps, key clip_id -> uint8 [T, S, S]
    parsing/shard-{s}.parquet          per-frame region areas
    captions/shard-{s}.parquet         one caption per clip
    landmark_features/shard-{s}.safetensors  landmark feature maps, key clip_id -> [T, C, 14, 14]
    landmark_features/shard-{s}.parquet      their index, one row per clip
    logs/{stage}/shard-{s}.log         a shard job's log
    train/{run}/fold-{k}/...           checkpoint, train.json, metrics, predictions, confusion
                                       (resume.ckpt while a fold trains)
    train/{run}/summary.json           the run's folds averaged
    train/{run}/zeroshot-from-{src}/   the same for a run trained on dataset {src}
    logs/{train|evaluate}/{run}/...    the training / evaluation jobs' logs

and ``results/report/`` (tables and plots across datasets) with its log in ``results/logs/``.

Every layout function takes and returns plain text, so the same definition gives a concrete
path (called with a dataset and a shard) and a Snakemake pattern (called with the wildcards
:data:`DATASET`, :data:`SHARD`, ...). :func:`under` puts a relative path under the results
folder *as text*, keeping the configured ``results`` string verbatim (a storage plugin's
``s3://...`` prefix survives, which ``pathlib`` would collapse); the ``*_file`` / ``*_dir``
functions return a :class:`~pathlib.Path` for the library.

Shard names ``{s}`` (``"000"``, or ``"0000"`` for datasets of more than 1000 shards) come from
:mod:`dfer.core.sharding`.
"""

from __future__ import annotations

from pathlib import Path

from dfer.core.sharding import SHARD_PREFIX, shards_in

#: The preprocessing stages in pipeline order -> their artifact folder under
#: ``results/{dataset}/`` (decode writes ``frames/``; the others are named after the stage).
#: ``landmark_features`` (only for methods that read feature maps) comes last, so a clip that
#: an earlier stage lost is attributed to that stage.
STAGE_DIRS: dict[str, str] = {
    "decode": "frames",
    "landmarks": "landmarks",
    "parsing": "parsing",
    "captions": "captions",
    "landmark_features": "landmark_features",
}

#: the manifest stage's folder under ``results/{dataset}/``
MANIFEST_DIR = "manifest"

#: suffixes of a stage's per-shard files: tensors, the table, and the clips it failed
SAFETENSORS = ".safetensors"
PARQUET = ".parquet"
FAILURES = ".failures.parquet"

#: Snakemake wildcards: pass them to a layout function to get a rule's pattern.
DATASET = "{dataset}"
SHARD = "{shard}"
RUN = "{run}"
FOLD = "{fold}"
SOURCE = "{source}"

#: files of one fold's folder (training writes the first two, evaluation the other three)
CHECKPOINT = "checkpoint.safetensors"
TRAIN_SUMMARY = "train.json"
METRICS = "metrics.json"
PREDICTIONS = "predictions.parquet"
CONFUSION = "confusion.png"
#: training's full-state file of the last finished epoch (dfer.train.resume): in the fold folder
#: but not a rule output, so that a killed fold resumes; removed when training finishes
RESUME = "resume.ckpt"
#: a run's folds averaged (train/{run}/ and train/{run}/zeroshot-from-{src}/)
RUN_SUMMARY = "summary.json"

#: the report's folder and log, under the results folder (not per dataset)
REPORT = "report"
REPORT_LOG = "logs/report.log"


# --- relative layout (text in, text out: values or wildcards) -------------------------------


def shard_file_name(shard: str, suffix: str) -> str:
    """``shard-{shard}{suffix}`` (suffix like ``.parquet``)."""
    return f"{SHARD_PREFIX}{shard}{suffix}"


def shard_rel(dataset: str, stage: str, shard: str, suffix: str) -> str:
    """``{dataset}/{stage}/shard-{shard}{suffix}``: a stage's file of one shard."""
    return f"{dataset}/{stage}/{shard_file_name(shard, suffix)}"


def manifest_rel(dataset: str) -> str:
    """``{dataset}/manifest/manifest.parquet``: the whole dataset's manifest."""
    return f"{dataset}/{MANIFEST_DIR}/manifest.parquet"


def manifest_failures_rel(dataset: str) -> str:
    """``{dataset}/manifest/failures.parquet``: clips the manifest stage refused."""
    return f"{dataset}/{MANIFEST_DIR}/failures.parquet"


def shard_log_rel(dataset: str, stage: str, shard: str) -> str:
    """``{dataset}/logs/{stage}/shard-{shard}.log``: a shard job's log."""
    return f"{dataset}/logs/{stage}/{shard_file_name(shard, '.log')}"


def run_rel(dataset: str, run: str, source: str | None = None) -> str:
    """``{dataset}/train/{run}``, or its ``zeroshot-from-{source}`` folder for a run trained on
    dataset ``source`` and evaluated on ``dataset``."""
    folder = f"{dataset}/train/{run}"
    return folder if source is None else f"{folder}/zeroshot-from-{source}"


def fold_rel(dataset: str, run: str, fold: int | str, source: str | None = None) -> str:
    """``{run_rel}/fold-{fold}``: one fold's training or evaluation outputs."""
    return f"{run_rel(dataset, run, source)}/fold-{fold}"


def fold_file_rel(dataset: str, run: str, fold: int | str, name: str, source: str | None = None) -> str:
    """``{fold_rel}/{name}``, ``name`` one of :data:`CHECKPOINT`, :data:`METRICS`, ..."""
    return f"{fold_rel(dataset, run, fold, source)}/{name}"


def run_summary_rel(dataset: str, run: str, source: str | None = None) -> str:
    """``{run_rel}/summary.json``: the folds of a run (or of its zero-shot transfer) averaged."""
    return f"{run_rel(dataset, run, source)}/{RUN_SUMMARY}"


def job_log_rel(dataset: str, job: str, run: str, fold: int | str | None = None,
                source: str | None = None) -> str:
    """``{dataset}/logs/{job}/{run}/[zeroshot-from-{source}-]{fold-{fold}|summary}.log``.

    ``job`` is ``train`` or ``evaluate``; without ``fold`` the log is the summary job's.
    Zero-shot logs sit beside the run's own ones, their names prefixed by the source dataset.
    """
    name = "summary" if fold is None else f"fold-{fold}"
    if source is not None:
        name = f"zeroshot-from-{source}-{name}"
    return f"{dataset}/logs/{job}/{run}/{name}.log"


def report_rel(name: str) -> str:
    """``report/{name}``: one of the report's files, relative to the results folder."""
    return f"{REPORT}/{name}"


def under(results: str | Path, rel: str) -> str:
    """``{results}/{rel}`` as text: a rule's pattern, or a target Snakemake is asked for."""
    return f"{results}/{rel}"


# --- concrete paths (the library) ---------------------------------------------------------


def dataset_dir(results: str | Path, dataset: str) -> Path:
    """``results/{dataset}``: every artifact of one dataset."""
    return Path(results) / dataset


def shard_file(results: str | Path, dataset: str, stage: str, shard: str, suffix: str) -> Path:
    """``results/{dataset}/{stage}/shard-{shard}{suffix}`` (suffix like ``.parquet``)."""
    return Path(results) / shard_rel(dataset, stage, shard, suffix)


def manifest_file(results: str | Path, dataset: str) -> Path:
    """``results/{dataset}/manifest/manifest.parquet``."""
    return Path(results) / manifest_rel(dataset)


def manifest_failures_file(results: str | Path, dataset: str) -> Path:
    """``results/{dataset}/manifest/failures.parquet``."""
    return Path(results) / manifest_failures_rel(dataset)


def stage_dir(results: str | Path, dataset: str, stage: str) -> Path:
    """``results/{dataset}/{stage}``: the folder of a stage's shard files."""
    return dataset_dir(results, dataset) / stage


def report_dir(results: str | Path) -> Path:
    """``results/report``: the report's tables and plots."""
    return Path(results) / REPORT


def failure_files(folder: str | Path) -> list[Path]:
    """The per-shard failures tables in a stage's folder, in shard order (the report and the
    lost-clip accounting of a whole dataset; a training job reads its declared ones)."""
    return [Path(folder) / shard_file_name(s, FAILURES) for s in shards_in(folder, FAILURES)]


def fold_file_of_run(run_folder: str | Path, fold: int | str, name: str) -> Path:
    """``{run_folder}/fold-{fold}/{name}``: a fold's file, given its run's folder (the report
    finds each fold a run summary averaged next to that summary)."""
    return Path(run_folder) / f"fold-{fold}" / name
