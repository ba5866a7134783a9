# Shared helpers for every rule file (rule files hold rules only). Parsing this file prepares
# the datasets: it writes the demo data when configured and missing, and syncs each dataset's
# shard manifests, rewriting a shard manifest only when its clips changed, so Snakemake re-runs
# exactly the changed shards. A job on a cluster node reads the synced manifests instead, and
# nothing is written while another run holds this directory's lock (dfer.pipeline).
#
# Every value put into a shell command is quoted (`:q`, shlex.quote) or built from names that
# the config schema restricts to [A-Za-z0-9_.-] (datasets, runs). A job's `params` hold only
# what changes its output: each section's execution keys (device, batch sizes for speed,
# servers, workers; EXECUTION_KEYS beside each stage's config) reach the job untracked.

import json
import os
import re
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))


# PATH is read and extended below; declared so that cluster jobs get the same one.
envvars:
    "PATH",


# Jobs run `python -m dfer`: make that the interpreter running Snakemake (the project venv)
# unless a per-rule conda env is activated, which puts its own python first.
_path = os.environ["PATH"]
os.environ["PATH"] = f"{os.path.dirname(sys.executable)}{os.pathsep}{_path}"

from dfer.core import paths  # noqa: E402 - after src/ is on sys.path
from dfer.core.artifacts import read_meta  # noqa: E402
from dfer.core.integrity import JOB_OUTPUTS, repair_damaged_shards  # noqa: E402
from dfer.core.execution_keys import result_part  # noqa: E402
from dfer.core.gpu_placement import JOB_GPUS_ENV  # noqa: E402
from dfer.captions.config import CaptionsConfig, vllm_python  # noqa: E402
from dfer.landmarks.config import EXECUTION_KEYS as LANDMARKS_EXECUTION_KEYS  # noqa: E402
from dfer.landmark_features.config import SPEED_ONLY as LANDMARK_FEATURES_EXECUTION_KEYS  # noqa: E402
from dfer.parsing.config import EXECUTION_KEYS as PARSING_EXECUTION_KEYS  # noqa: E402
from dfer.pipeline import local_gpu_count, prepare_datasets  # noqa: E402
from dfer.core.sharding import SHARD_REGEX  # noqa: E402
from dfer.train import execution as run_execution  # noqa: E402
from dfer.train.inputs import INPUT_OPTIONS, KINDS, declared_files, kinds_read, needs_for  # noqa: E402
from dfer.methods.registry import split_model_block  # noqa: E402

RESULTS = config["results"]
# Each stage's artifact folder under results/{dataset}/, from dfer.core.paths.
MANIFEST_DIR = paths.MANIFEST_DIR
FRAMES_DIR, LANDMARKS_DIR, PARSING_DIR, CAPTIONS_DIR, LANDMARK_FEATURES_DIR = (
    paths.STAGE_DIRS[stage] for stage in ("decode", "landmarks", "parsing", "captions", "landmark_features"))
DATASETS = list(config["datasets"])
# PARSE (the Snakefile: -n, a job on a cluster node, or a run already going here) decides
# whether the manifests are synced, read as they are, or read as the submitting run left them.
SHARDS = prepare_datasets(config, context=PARSE)  # dataset -> ["000", "001", ...] (dfer.core.sharding names)
# Shard outputs deleted or damaged since their job ran: the job's remaining outputs are removed
# so that Snakemake runs it again (dfer.core.integrity), as the manifest sync writes what changed
# (a dry run too, so that it lists those jobs). Never in a job on a cluster node (other jobs are
# writing) nor while another run holds the lock.
if workflow.is_main_process and not PARSE.cluster_job and not PARSE.locked:
    repair_damaged_shards(RESULTS, SHARDS)
TRAIN = config.get("train", {}) or {}
TRAIN_RUNS = TRAIN.get("runs", {}) or {}
CAPTIONS = CaptionsConfig.from_params(config.get("captions", {}))


wildcard_constraints:
    dataset="|".join(map(re.escape, DATASETS)) if DATASETS else "NONE",
    source="|".join(map(re.escape, DATASETS)) if DATASETS else "NONE",
    shard=SHARD_REGEX,
    run="|".join(map(re.escape, TRAIN_RUNS)) if TRAIN_RUNS else "NONE",
    fold=r"\d+",


# --- where artifacts live (dfer.core.paths, the one layout definition) ------------------------
# Each helper gives a rule's pattern by default ({dataset}, {shard}, {run}, {fold} left in)
# and one concrete file when given values, so rules, targets and the library share one layout.


def shard_path(stage, suffix, dataset=paths.DATASET, shard=paths.SHARD):
    """results/{dataset}/{stage}/shard-{shard}{suffix}."""
    return paths.under(RESULTS, paths.shard_rel(dataset, stage, shard, suffix))


def shard_log(stage):
    """results/{dataset}/logs/{stage}/shard-{shard}.log: a shard job's log."""
    return paths.under(RESULTS, paths.shard_log_rel(paths.DATASET, stage, paths.SHARD))


def manifest_path(dataset):
    """results/{dataset}/manifest/manifest.parquet."""
    return paths.under(RESULTS, paths.manifest_rel(dataset))


def fold_path(name, dataset=paths.DATASET, run=paths.RUN, fold=paths.FOLD, source=None):
    """results/{dataset}/train/{run}[/zeroshot-from-{source}]/fold-{fold}/{name}."""
    return paths.under(RESULTS, paths.fold_file_rel(dataset, run, fold, name, source))


def run_summary_path(dataset=paths.DATASET, run=paths.RUN, source=None):
    """results/{dataset}/train/{run}[/zeroshot-from-{source}]/summary.json."""
    return paths.under(RESULTS, paths.run_summary_rel(dataset, run, source))


def job_log(job, fold=paths.FOLD, source=None):
    """results/{dataset}/logs/{job}/{run}/...: a train / evaluate job's log (fold=None: summary)."""
    return paths.under(RESULTS, paths.job_log_rel(paths.DATASET, job, paths.RUN, fold, source))


def report_path(name):
    """results/report/{name}."""
    return paths.under(RESULTS, paths.report_rel(name))


def report_log():
    """results/logs/report.log."""
    return paths.under(RESULTS, paths.REPORT_LOG)


# --- the command a job runs --------------------------------------------------------------


class UntrackedParam:
    """A `params` value that Snakemake's params trigger leaves out.

    Snakemake records only params of builtin types (str, int, list, ...) to decide whether a
    job must re-run; this object formats as its text in a shell command but is not recorded.
    Used for the interpreter that runs a job (moving the checkout or the venv changes its
    path) and for the settings that decide only where or how fast a job runs.
    """

    def __init__(self, text):
        self.text = text

    def __str__(self):
        return self.text

    def __repr__(self):
        return f"UntrackedParam({self.text!r})"


def places_gpus():
    """Whether this Snakemake runs jobs itself on this machine (a local executor, not a job
    on a cluster node): only then does a GPU job take GPUs of its own
    (dfer.core.gpu_placement); a cluster scheduler's assignment stands."""
    return workflow.local_exec and not PARSE.cluster_job


def job_gpus_prefix(resources):
    """`DFER_JOB_GPUS=N ` for a GPU job run on this machine, else nothing."""
    gpus = getattr(resources, "gpu", 0)
    return f"{JOB_GPUS_ENV}={int(gpus)} " if isinstance(gpus, int) and gpus > 0 and places_gpus() else ""


def command(python):
    """A params function: `[DFER_JOB_GPUS=N] PYTHONPATH=<src> <python> -m dfer` for the job.

    Jobs import dfer from this checkout's src/: the per-rule conda envs (envs/*.yaml) hold
    only its dependencies, as a copied env file cannot name this checkout (envs/dfer.yaml).
    Derived from the job's resources, so it is not part of the rerun check.
    """
    src = shlex.quote(str(Path(workflow.basedir) / "src"))

    def text(wildcards, resources):
        return UntrackedParam(f"{job_gpus_prefix(resources)}PYTHONPATH={src} {python} -m dfer")

    return text


def dfer_command():
    """`python -m dfer` of the project venv (or of the rule's activated conda env)."""
    return command("python")


def captions_command():
    """`python -m dfer`, run by the vLLM environment's python for the `vllm` backend.

    vLLM pins its own torch, so that backend runs in a separate env with dfer's src/ on
    PYTHONPATH (dfer is not installed there). With --use-conda the rule's env is activated
    and its own `python` is right; otherwise the configured / default vLLM venv is used.
    """
    if CAPTIONS.backend != "vllm":
        return dfer_command()
    python = shlex.quote(vllm_python(config.get("captions", {})) or "python")
    if any(m.name == "CONDA" for m in workflow.deployment_settings.deployment_method):
        python = "python"  # envs/vllm.yaml is active
    return command(python)


def results_dir(depth):
    """A params function: the results folder, `depth` levels above the job's first output.

    Derived from the output path as the job sees it (not the configured string), so that a
    storage plugin's local prefix is honoured; derived params are not part of the rerun check.
    """

    def results(wildcards, output):
        return str(Path(output[0]).parents[depth - 1])

    return results


def section_json(section):
    """A config section as canonical JSON (every key changes the stage's result)."""
    return json.dumps(config.get(section, {}), sort_keys=True)


# --- what a job computes vs where it runs ---------------------------------------------------
# Each stage's config module lists its EXECUTION_KEYS (dfer.core.execution_keys): the rule's
# tracked `result` param holds the other keys, the job gets its whole section untracked.

STAGE_EXECUTION_KEYS = {"landmarks": LANDMARKS_EXECUTION_KEYS, "parsing": PARSING_EXECUTION_KEYS,
                        "landmark_features": LANDMARK_FEATURES_EXECUTION_KEYS}


def stage_result(section):
    """The keys of a stage's section that change its outputs, as canonical JSON (tracked)."""
    cfg = config.get(section, {}) or {}
    if section == "captions":
        return json.dumps(CAPTIONS.result_section(cfg), sort_keys=True)
    return json.dumps(result_part(cfg, STAGE_EXECUTION_KEYS.get(section, ())), sort_keys=True)


def stage_settings(section):
    """A stage's whole section as the job reads it (`--params`), not tracked."""
    return UntrackedParam(section_json(section))


# --- GPUs ------------------------------------------------------------------------------


def gpu_may_be_used():
    """Whether `auto` backends will find a GPU where the jobs run: this machine has one
    (dfer.pipeline.local_gpu_count, pinned by $DFER_LOCAL_GPUS like the local profile's GPU
    limit), or jobs go to a cluster executor (the login node parsing the workflow usually has
    none)."""
    return workflow.non_local_exec or local_gpu_count() > 0


def stage_gpu(section, cpu_backend):
    """gpu=1 for a stage whose backend may run on the GPU: pinned GPU backend, or `auto` on
    a machine with an NVIDIA GPU or on a cluster; 0 for the CPU backend or `device: cpu`."""
    cfg = config.get(section, {})
    backend = cfg.get("backend", "auto")
    if backend == cpu_backend or cfg.get("device", "auto") == "cpu":
        return 0
    return 1 if backend != "auto" or gpu_may_be_used() else 0


def landmarks_gpu(wildcards):
    return stage_gpu("landmarks", "dlib")


def landmark_features_gpu(wildcards):
    """Both backends are networks with no CPU-only variant: gpu=1 unless `device: cpu`, or
    `auto` on a machine where no GPU may be used."""
    device = str((config.get("landmark_features", {}) or {}).get("device", "auto"))
    if device == "cpu":
        return 0
    return 1 if device.startswith("cuda") or gpu_may_be_used() else 0


def parsing_gpu(wildcards):
    return stage_gpu("parsing", "landmarks")


def captions_gpu(wildcards):
    """The in-process vLLM backend on a GPU (`device` not cpu): one GPU per tensor-parallel
    rank (`vllm.tensor_parallel_size`); 0 for the other backends."""
    if CAPTIONS.backend != "vllm" or CAPTIONS.raw["device"] == "cpu":
        return 0
    on_gpu = CAPTIONS.raw["device"] == "cuda" or gpu_may_be_used()
    return int(CAPTIONS.raw["vllm"]["tensor_parallel_size"]) if on_gpu else 0


def train_gpu(wildcards):
    """GPUs of one fold's job: `trainer.devices` (default 1); 0 when the run is pinned to
    the CPU (dfer.train.execution.run_devices)."""
    return run_execution.run_devices(TRAIN_RUNS[wildcards.run])


def eval_gpu(wildcards):
    """GPUs of an evaluate / zero-shot job: one (one process scores the clips), 0 on the CPU."""
    return run_execution.eval_devices(TRAIN_RUNS[wildcards.run])


# --- threads ----------------------------------------------------------------------------
# What each job uses; Snakemake hands them to the job as OMP_NUM_THREADS and, on SLURM, as
# --cpus-per-task. The stages' loops run on one thread (dlib, cv2, the GPU's feeder).


def captions_threads(wildcards):
    """offline: one thread; openai: the event loop and JPEG encoding in worker threads; the
    in-process vLLM engine pre-processes frames and tokens beside its engine process."""
    return {"vllm": 4, "openai": 2}.get(CAPTIONS.backend, 1)


def train_threads(wildcards):
    """The fold's processes and their DataLoader workers (dfer.train.execution.job_threads);
    the workers follow the job's threads (train_settings) unless data.num_workers is set."""
    return run_execution.job_threads(TRAIN_RUNS[wildcards.run])


def eval_threads(wildcards):
    """The evaluating process and its DataLoader workers (workers follow the threads)."""
    return run_execution.job_threads(TRAIN_RUNS[wildcards.run], processes=1)


# --- training runs -----------------------------------------------------------------------
# A run's `datasets`, `folds` and `description` only say which jobs exist, and its execution
# keys (dfer.train.execution.RUN_EXECUTION_KEYS) where they run: editing either re-runs
# nothing already done.


def num_folds(dataset):
    """Number of folds from the synced manifest's metadata (written at parse time)."""
    return int(read_meta(manifest_path(dataset)).get("num_folds", 1))


def run_datasets(run):
    """Configured datasets a run trains on (`datasets` in the run; default: all)."""
    wanted = TRAIN_RUNS[run].get("datasets")
    return [ds for ds in DATASETS if wanted is None or ds in wanted]


def run_folds(run, dataset):
    folds = TRAIN_RUNS[run].get("folds")
    every = list(range(1, num_folds(dataset) + 1))
    return every if folds is None else [k for k in every if k in folds]


def run_model(run):
    return TRAIN_RUNS[run].get("model", {}) or {}


def run_method(run):
    """The run's method (dfer.methods.registry; `model.method`, default fineclipper)."""
    return split_model_block(run_model(run))[0]


def data_inputs(run, ds):
    """Every file a run's model reads of dataset `ds`, by kind (manifest, frames, landmarks,
    parsing, captions, failures): dfer.train.inputs decides which, for the rules and the
    trainer alike, and the job is given exactly these (data_args)."""
    return declared_files(RESULTS, ds, SHARDS[ds], needs_for(run_model(run)))


def static_checkpoint(run):
    """The fold checkpoint of the static run a video run starts from (S2D's
    `model.static_from: {run, dataset, fold}`), or None. The config check has made sure that run
    trains on that dataset, so the train rule makes this file."""
    src = run_model(run).get("static_from")
    if not src:
        return None
    return fold_path(paths.CHECKPOINT, src["dataset"], src["run"], int(src.get("fold", 1)))


def train_inputs(wildcards):
    """Every data file the run's model reads, and the static run's checkpoint when it starts
    from one (so the video run's folds wait for it and re-run when it changes)."""
    inputs = data_inputs(wildcards.run, wildcards.dataset)
    static = static_checkpoint(wildcards.run)
    return {**inputs, "static_checkpoint": static} if static else inputs


def evaluate_inputs(wildcards):
    """The fold's checkpoint plus every file of the dataset its model reads."""
    return {"checkpoint": fold_path(paths.CHECKPOINT, wildcards.dataset, wildcards.run, wildcards.fold),
            **data_inputs(wildcards.run, wildcards.dataset)}


def zero_shot_inputs(wildcards):
    """The source run's fold checkpoint plus every file of the target dataset it reads."""
    return {"checkpoint": fold_path(paths.CHECKPOINT, wildcards.source, wildcards.run, wildcards.fold),
            **data_inputs(wildcards.run, wildcards.dataset)}


def data_args(wildcards, input):
    """`--manifest M --frames F... --landmarks ...`: the job's declared data files, by kind
    (kinds the model does not read are left out)."""
    return " ".join(f"--{key} " + " ".join(shlex.quote(str(p)) for p in input[key])
                    for key in INPUT_OPTIONS if len(input[key]))


def fold_metrics(wildcards):
    """metrics.json of every fold of a run on a dataset (train_summary)."""
    return [fold_path(paths.METRICS, wildcards.dataset, wildcards.run, k)
            for k in run_folds(wildcards.run, wildcards.dataset)]


def zero_shot_fold_metrics(wildcards):
    """metrics.json of every zero-shot fold (zero_shot_summary)."""
    return [fold_path(paths.METRICS, wildcards.dataset, wildcards.run, k, source=wildcards.source)
            for k in run_folds(wildcards.run, wildcards.source)]


def run_json(wildcards):
    """What changes a fold's result (the run less its execution keys), as canonical JSON."""
    return json.dumps(run_execution.result_settings(TRAIN_RUNS[wildcards.run]), sort_keys=True)


def train_settings(wildcards, input, threads):
    """The run as a fold's train job reads it (`--params`), DataLoader workers following the
    job's threads; derived from `threads`, so not tracked. A run with `model.static_from` gets
    its declared static checkpoint as `model.pretrained` (what static_from means; the tracked
    run_json keeps static_from itself)."""
    settings = run_execution.job_settings(TRAIN_RUNS[wildcards.run], threads)
    if "static_checkpoint" in input.keys():
        settings["model"] = {**settings.get("model", {}), "pretrained": str(input.static_checkpoint)}
    return json.dumps(settings, sort_keys=True)


def eval_json(wildcards):
    """In-domain evaluation: beyond the checkpoint, only how unscored clips count
    (run_execution.RUN_SCORING_KEYS) changes the scores."""
    return json.dumps(run_execution.scoring_settings(TRAIN_RUNS[wildcards.run]), sort_keys=True)


def zero_shot_json(wildcards):
    """Zero-shot: the target's class names, re-worded by `train.label_prompts` where given,
    and how unscored clips count."""
    return json.dumps({**run_execution.scoring_settings(TRAIN_RUNS[wildcards.run]),
                       "label_prompts": TRAIN.get("label_prompts", {})}, sort_keys=True)


def eval_settings(wildcards, threads):
    """Where and how fast an evaluate / zero-shot job runs (device, data loading), merged with
    its tracked params into `--params`; derived from `threads`, so not tracked."""
    settings = run_execution.eval_settings(TRAIN_RUNS[wildcards.run], threads)
    if wildcards.get("source"):
        settings["label_prompts"] = TRAIN.get("label_prompts", {})
    return json.dumps(settings, sort_keys=True)


# --- final targets -----------------------------------------------------------------------


def shard_targets(stage):
    """The stage's shard-{s}.parquet of every shard of every dataset."""
    return [shard_path(stage, paths.PARQUET, ds, s) for ds in DATASETS for s in SHARDS[ds]]


def decode_targets():
    return shard_targets(FRAMES_DIR)


def landmarks_targets():
    return shard_targets(LANDMARKS_DIR)


def landmark_features_targets():
    """Every shard's landmark features of the datasets a run reads them of (the stage is
    opt-in: `landmark_features_all` makes nothing when no run's method needs it)."""
    return [shard_path(LANDMARK_FEATURES_DIR, paths.PARQUET, ds, s)
            for ds in DATASETS if LANDMARK_FEATURES_DIR in dataset_stage_dirs(ds) for s in SHARDS[ds]]


def parsing_targets():
    return shard_targets(PARSING_DIR)


def captions_targets():
    return shard_targets(CAPTIONS_DIR)


def evaluations():
    """(run, dataset evaluated, source dataset or None) of every summary the workflow makes:
    each run on each of its datasets, and every configured zero-shot evaluation.

    A zero-shot entry that names its run trains that run on its `train` dataset even when the
    run's `datasets` leave it out (the zero-shot preset switches model variants with that one
    key); an entry without `run` applies to the runs that train on `train` anyway."""
    found = [(run, ds, None) for run in TRAIN_RUNS for ds in run_datasets(run)]
    for zs in TRAIN.get("zero_shot", []) or []:
        # an entry without `run`: the runs whose method can score unseen classes (the config
        # check refuses an entry naming a run whose method cannot)
        for run in [zs["run"]] if zs.get("run") else [r for r in TRAIN_RUNS if run_method(r).zero_shot]:
            trains = zs.get("run") or zs["train"] in run_datasets(run)
            if trains and zs["train"] in DATASETS and zs["eval"] in DATASETS:
                found.append((run, zs["eval"], zs["train"]))
    return found


def train_targets():
    """summary.json of every (run, dataset), and of every configured zero-shot evaluation."""
    return [run_summary_path(ds, run, source=source) for run, ds, source in evaluations()]


def report_gallery_args():
    """`dfer report` options of the configured gallery caps (`report.gallery_max`,
    `report.embed_max`: N, or null for every clip) and of `report.reference` (the run the
    methods comparison pairs the others against); an unset key keeps the command's default."""
    cfg = config.get("report", {}) or {}
    caps = {"gallery_max": "--gallery-max", "embed_max": "--embed-max"}
    args = [f"{flag} {'all' if cfg[key] is None else int(cfg[key])}"
            for key, flag in caps.items() if key in cfg]
    if cfg.get("reference"):
        args.append(f"--reference {shlex.quote(str(cfg['reference']))}")
    return " ".join(args)


def dataset_stage_dirs(ds):
    """The stage folders of dataset `ds` the workflow's final targets ask for: decode plus
    what the runs that train or evaluate on `ds` read (their methods' needs, dfer.train.inputs),
    so that a DFER-CLIP-only study decodes and nothing else. A dataset no run reads is being
    preprocessed for its own sake: every stage but the opt-in landmark features (a feature map
    only a method that reads it asks for)."""
    readers = {run for run, evaluated, source in evaluations() if ds in (evaluated, source)}
    if not readers:
        return [FRAMES_DIR, LANDMARKS_DIR, PARSING_DIR, CAPTIONS_DIR]
    kinds = {kind for run in readers for kind in kinds_read(needs_for(run_model(run)))}
    return [paths.STAGE_DIRS[KINDS[kind][0]] for kind in KINDS if kind in kinds]


def stage_targets():
    """The final outputs of the stages the report and the final target ask for, per dataset
    (dataset_stage_dirs); the report says "not run" for the others."""
    return [shard_path(stage, paths.PARQUET, ds, s)
            for ds in DATASETS for stage in dataset_stage_dirs(ds) for s in SHARDS[ds]]


def report_stage_files():
    """Every file of a dataset the report reads: its manifests (the whole-dataset one, its
    failures table, the shard manifests) and every output of the shard jobs of the stages
    the runs read (dataset_stage_dirs: index, failures table, tensors). The report reads no
    other stage folder (report_stage_args)."""
    files = []
    for ds in DATASETS:
        files += [manifest_path(ds), paths.under(RESULTS, paths.manifest_failures_rel(ds))]
        files += [shard_path(MANIFEST_DIR, paths.PARQUET, ds, s) for s in SHARDS[ds]]
        files += [shard_path(stage, suffix, ds, s) for stage in dataset_stage_dirs(ds)
                  for s in SHARDS[ds] for suffix in JOB_OUTPUTS[stage]]
    return files


def report_stage_args():
    """`dfer report --stages`: the stage folders report_stage_files declares, per dataset."""
    return " ".join(shlex.quote(f"{ds}/{stage}") for ds in DATASETS for stage in dataset_stage_dirs(ds))


def report_fold_files():
    """The per-fold files of every run summary the report reads: metrics.json and
    predictions.parquet (tables, confusion matrices, gallery cards and the comparison of two
    runs' predictions), and each in-domain fold's train.json (parameters and training time
    in "Methods side by side")."""
    files = []
    for run, ds, source in evaluations():
        for k in run_folds(run, source or ds):
            files += [fold_path(paths.METRICS, ds, run, k, source), fold_path(paths.PREDICTIONS, ds, run, k, source)]
            if source is None:
                files.append(fold_path(paths.TRAIN_SUMMARY, ds, run, k))
    return files


def report_inputs():
    """The stages' outputs the configured runs read, and every run summary."""
    return stage_targets() + train_targets()


def get_final_output():
    """The workflow's final outputs (the default target): every stage's and the report."""
    return report_inputs() + [report_path("report.md")]
