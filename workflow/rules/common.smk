# Shared helpers for every rule file (rule files hold rules only). Parsing this file prepares
# the datasets: it writes the demo data when configured and missing, and syncs each dataset's
# shard manifests, rewriting a shard manifest only when its clips changed, so Snakemake re-runs
# exactly the changed shards.

import json
import os
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
from dfer.core.integrity import repair_damaged_shards  # noqa: E402
from dfer.captions.config import CaptionsConfig, vllm_python  # noqa: E402
from dfer.pipeline import local_gpu_count, prepare_datasets  # noqa: E402
from dfer.core.sharding import SHARD_REGEX  # noqa: E402
from dfer.train.inputs import INPUT_OPTIONS, declared_files, needs_for  # noqa: E402

RESULTS = config["results"]
# Each stage's artifact folder under results/{dataset}/, from dfer.core.paths.
MANIFEST_DIR = paths.MANIFEST_DIR
FRAMES_DIR, LANDMARKS_DIR, PARSING_DIR, CAPTIONS_DIR = (
    paths.STAGE_DIRS[stage] for stage in ("decode", "landmarks", "parsing", "captions"))
DATASETS = list(config["datasets"])
SHARDS = prepare_datasets(config, dryrun=workflow.dryrun)  # dataset -> ["000", "001", ...] (dfer.core.sharding names)
# Shard outputs deleted or damaged since their job ran: the job's remaining outputs are removed
# so that Snakemake runs it again (dfer.core.integrity). Only in the main process (a cluster
# job parses this file too, while other jobs write), and nothing while a run holds the lock.
if workflow.is_main_process:
    repair_damaged_shards(RESULTS, SHARDS)
TRAIN = config.get("train", {}) or {}
TRAIN_RUNS = TRAIN.get("runs", {}) or {}
CAPTIONS = CaptionsConfig.from_params(config.get("captions", {}))


wildcard_constraints:
    dataset="|".join(DATASETS) if DATASETS else "NONE",
    source="|".join(DATASETS) if DATASETS else "NONE",
    shard=SHARD_REGEX,
    run=r"[A-Za-z0-9_.-]+",
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
    Used for the interpreter that runs a job: moving the checkout or the venv changes its
    path, and must not re-run finished jobs.
    """

    def __init__(self, text):
        self.text = text

    def __str__(self):
        return self.text

    def __repr__(self):
        return f"UntrackedParam({self.text!r})"


def dfer_command():
    """`python -m dfer` with this checkout's src/ on PYTHONPATH.

    Jobs import dfer from this checkout's src/: the per-rule conda envs (envs/*.yaml) hold
    only its dependencies, as a copied env file cannot name this checkout (envs/dfer.yaml).
    """
    src = shlex.quote(str(Path(workflow.basedir) / "src"))
    return UntrackedParam(f"PYTHONPATH={src} python -m dfer")


def captions_command():
    """`python -m dfer`, run by the vLLM environment's python for the `vllm` backend.

    vLLM pins its own torch, so that backend runs in a separate env with dfer's src/ on
    PYTHONPATH (dfer is not installed there). With --use-conda the rule's env is activated
    and its own `python` is right; otherwise the configured / default vLLM venv is used.
    """
    if CAPTIONS.backend != "vllm":
        return dfer_command()
    src = shlex.quote(str(Path(workflow.basedir) / "src"))
    python = vllm_python(config.get("captions", {})) or "python"
    if any(m.name == "CONDA" for m in workflow.deployment_settings.deployment_method):
        python = "python"  # envs/vllm.yaml is active
    return UntrackedParam(f"PYTHONPATH={src} {python} -m dfer")


def results_dir(depth):
    """A params function: the results folder, `depth` levels above the job's first output.

    Derived from the output path as the job sees it (not the configured string), so that a
    storage plugin's local prefix is honoured; derived params are not part of the rerun check.
    """

    def results(wildcards, output):
        return str(Path(output[0]).parents[depth - 1])

    return results


def section_json(section):
    """A config section as canonical JSON: the `params` that re-trigger a stage when edited."""
    return json.dumps(config.get(section, {}), sort_keys=True)


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


def parsing_gpu(wildcards):
    return stage_gpu("parsing", "landmarks")


def captions_gpu(wildcards):
    """gpu=1 only for the in-process vLLM backend on a GPU (`device` not cpu)."""
    if CAPTIONS.backend != "vllm" or CAPTIONS.raw["device"] == "cpu":
        return 0
    return 1 if CAPTIONS.raw["device"] == "cuda" or gpu_may_be_used() else 0


def train_gpu(wildcards):
    """1 GPU unless the run is pinned to the CPU."""
    cfg = TRAIN_RUNS[wildcards.run]
    cpu = cfg.get("device", "auto") == "cpu" or (cfg.get("trainer", {}) or {}).get("accelerator") == "cpu"
    return 0 if cpu else 1


# --- training runs -----------------------------------------------------------------------

#: Keys of a run that change a fold's result (its `params`); `datasets`, `folds` and
#: `description` only say which jobs exist, so editing them re-runs nothing already done.
RUN_RESULT_KEYS = ("model", "data", "optim", "trainer", "device")


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


def data_inputs(run, ds):
    """Every file a run's model reads of dataset `ds`, by kind (manifest, frames, landmarks,
    parsing, captions, failures): dfer.train.inputs decides which, for the rules and the
    trainer alike, and the job is given exactly these (data_args)."""
    return declared_files(RESULTS, ds, SHARDS[ds], needs_for(run_model(run)))


def train_inputs(wildcards):
    return data_inputs(wildcards.run, wildcards.dataset)


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
    """What changes a fold's result (RUN_RESULT_KEYS of the run) as canonical JSON."""
    run = TRAIN_RUNS[wildcards.run]
    return json.dumps({k: run[k] for k in RUN_RESULT_KEYS if k in run}, sort_keys=True)


def eval_json(wildcards):
    """In-domain evaluation: the trained class names as they are."""
    return json.dumps({"device": TRAIN_RUNS[wildcards.run].get("device", "auto")}, sort_keys=True)


def zero_shot_json(wildcards):
    """Zero-shot: the target's class names, re-worded by `train.label_prompts` where given."""
    cfg = TRAIN_RUNS[wildcards.run]
    return json.dumps({"device": cfg.get("device", "auto"), "label_prompts": TRAIN.get("label_prompts", {})},
                      sort_keys=True)


# --- final targets -----------------------------------------------------------------------


def shard_targets(stage):
    """The stage's shard-{s}.parquet of every shard of every dataset."""
    return [shard_path(stage, paths.PARQUET, ds, s) for ds in DATASETS for s in SHARDS[ds]]


def decode_targets():
    return shard_targets(FRAMES_DIR)


def landmarks_targets():
    return shard_targets(LANDMARKS_DIR)


def parsing_targets():
    return shard_targets(PARSING_DIR)


def captions_targets():
    return shard_targets(CAPTIONS_DIR)


def train_targets():
    """summary.json of every (run, dataset), and of every configured zero-shot evaluation.

    A zero-shot entry that names its run trains that run on its `train` dataset even when the
    run's `datasets` leave it out (the zero-shot preset switches model variants with that one
    key); an entry without `run` applies to the runs that train on `train` anyway."""
    targets = [run_summary_path(ds, run) for run in TRAIN_RUNS for ds in run_datasets(run)]
    for zs in TRAIN.get("zero_shot", []) or []:
        for run in [zs["run"]] if zs.get("run") else list(TRAIN_RUNS):
            trains = zs.get("run") or zs["train"] in run_datasets(run)
            if trains and zs["train"] in DATASETS and zs["eval"] in DATASETS:
                targets.append(run_summary_path(zs["eval"], run, source=zs["train"]))
    return targets


def report_gallery_args():
    """`dfer report` options of the configured gallery caps (`report.gallery_max`,
    `report.embed_max`: N, or null for every clip); an unset key keeps the command's default."""
    cfg = config.get("report", {}) or {}
    caps = {"gallery_max": "--gallery-max", "embed_max": "--embed-max"}
    return " ".join(f"{flag} {'all' if cfg[key] is None else int(cfg[key])}"
                    for key, flag in caps.items() if key in cfg)


def stage_targets():
    """Every preprocessing stage's final outputs (the report's statistics read them)."""
    return decode_targets() + landmarks_targets() + parsing_targets() + captions_targets()


def report_inputs():
    """Every stage's final outputs: the report reads them all."""
    return stage_targets() + train_targets()


def get_final_output():
    """The workflow's final outputs (the default target): every stage's and the report."""
    return report_inputs() + [report_path("report.md")]
