# Stage 6: train / evaluate. One job per (run, dataset, fold) trains FineCLIPER on the clips
# with test_fold != k and saves only the tunable weights; one job per fold evaluates it on
# test_fold == k (UAR, WAR, per-class accuracy, confusion matrix, predictions); one job per
# (run, dataset) averages the folds into summary.json. Zero-shot entries evaluate every fold
# checkpoint of a run trained on one dataset on all clips of another (labels mapped by name).

from dfer.artifacts import read_meta  # noqa: E402 - after common.smk put src on sys.path

TRAIN = config.get("train", {}) or {}
TRAIN_RUNS = TRAIN.get("runs", {}) or {}
HAS_CAPTIONS_RULE = workflow.is_rule("captions")


def num_folds(dataset):
    """Number of folds from the synced manifest's metadata (written at parse time)."""
    return int(read_meta(f"{RESULTS}/{dataset}/manifest/manifest.parquet").get("num_folds", 1))


def run_datasets(run):
    """Configured datasets a run trains on (`datasets` in the run; default: all)."""
    wanted = TRAIN_RUNS[run].get("datasets")
    return [ds for ds in DATASETS if wanted is None or ds in wanted]


def run_folds(run, dataset):
    folds = TRAIN_RUNS[run].get("folds")
    every = list(range(1, num_folds(dataset) + 1))
    return every if folds is None else [k for k in folds if k in every]


def run_model(run):
    return TRAIN_RUNS[run].get("model", {}) or {}


wildcard_constraints:
    run=r"[A-Za-z0-9_.-]+",
    source="|".join(DATASETS) if DATASETS else "NONE",


def data_inputs(run, ds):
    """Every shard of the artifacts a run's model reads (captions only when a rule makes them)."""
    model = run_model(run)
    files = [f"{RESULTS}/{ds}/manifest/manifest.parquet"]
    for s in SHARDS[ds]:
        files += [f"{RESULTS}/{ds}/frames/shard-{s}.safetensors", f"{RESULTS}/{ds}/frames/shard-{s}.parquet"]
        if model.get("use_landmarks", True):
            files.append(f"{RESULTS}/{ds}/landmarks/shard-{s}.parquet")
        if model.get("use_parsing", True):
            files.append(f"{RESULTS}/{ds}/parsing/shard-{s}.safetensors")
        if model.get("use_captions", True) and HAS_CAPTIONS_RULE:
            files.append(f"{RESULTS}/{ds}/captions/shard-{s}.parquet")
    return files


def train_inputs(wildcards):
    return data_inputs(wildcards.run, wildcards.dataset)


def train_gpu(wildcards):
    """1 GPU unless the run is pinned to the CPU."""
    cfg = TRAIN_RUNS[wildcards.run]
    cpu = cfg.get("device", "auto") == "cpu" or (cfg.get("trainer", {}) or {}).get("accelerator") == "cpu"
    return 0 if cpu else 1


def run_json(wildcards):
    return json.dumps(TRAIN_RUNS[wildcards.run], sort_keys=True)


def eval_json(wildcards):
    """In-domain evaluation: the trained class names as they are."""
    return json.dumps({"device": TRAIN_RUNS[wildcards.run].get("device", "auto")}, sort_keys=True)


def zero_shot_json(wildcards):
    """Zero-shot: the target's class names, re-worded by `train.label_prompts` where given."""
    cfg = TRAIN_RUNS[wildcards.run]
    return json.dumps({"device": cfg.get("device", "auto"), "label_prompts": TRAIN.get("label_prompts", {})},
                      sort_keys=True)


rule train:
    input:
        train_inputs,
    output:
        checkpoint=f"{RESULTS}/{{dataset}}/train/{{run}}/fold-{{fold}}/checkpoint.safetensors",
        summary=f"{RESULTS}/{{dataset}}/train/{{run}}/fold-{{fold}}/train.json",
    params:
        cfg=run_json,
        out=lambda wc, output: os.path.dirname(output.checkpoint),
    resources:
        gpu=train_gpu,
    wildcard_constraints:
        fold=r"\d+",
    log:
        f"{RESULTS}/{{dataset}}/logs/train/{{run}}/fold-{{fold}}.log",
    conda:
        "../../envs/dfer.yaml"
    shell:
        "{PY} train --results {RESULTS} --dataset {wildcards.dataset} --fold {wildcards.fold}"
        " --run {wildcards.run} --out {params.out} --params {params.cfg:q} 2> >(tee {log} >&2)"


rule evaluate:
    input:
        data=train_inputs,
        checkpoint=f"{RESULTS}/{{dataset}}/train/{{run}}/fold-{{fold}}/checkpoint.safetensors",
    output:
        metrics=f"{RESULTS}/{{dataset}}/train/{{run}}/fold-{{fold}}/metrics.json",
        predictions=f"{RESULTS}/{{dataset}}/train/{{run}}/fold-{{fold}}/predictions.parquet",
        confusion=f"{RESULTS}/{{dataset}}/train/{{run}}/fold-{{fold}}/confusion.png",
    params:
        cfg=eval_json,
        out=lambda wc, output: os.path.dirname(output.metrics),
    resources:
        gpu=train_gpu,
    wildcard_constraints:
        fold=r"\d+",
    log:
        f"{RESULTS}/{{dataset}}/logs/evaluate/{{run}}/fold-{{fold}}.log",
    conda:
        "../../envs/dfer.yaml"
    shell:
        "{PY} evaluate --checkpoint {input.checkpoint} --results {RESULTS} --dataset {wildcards.dataset}"
        " --fold {wildcards.fold} --out {params.out} --params {params.cfg:q} 2> >(tee {log} >&2)"


rule train_summary:
    input:
        lambda wc: [f"{RESULTS}/{wc.dataset}/train/{wc.run}/fold-{k}/metrics.json"
                    for k in run_folds(wc.run, wc.dataset)],
    output:
        f"{RESULTS}/{{dataset}}/train/{{run}}/summary.json",
    log:
        f"{RESULTS}/{{dataset}}/logs/evaluate/{{run}}/summary.log",
    conda:
        "../../envs/dfer.yaml"
    shell:
        "{PY} evaluate --summarize {input} --out {output} 2> >(tee {log} >&2)"


def zero_shot_inputs(wildcards):
    """The source run's fold checkpoint plus every artifact of the target dataset it reads."""
    return {
        "checkpoint": f"{RESULTS}/{wildcards.source}/train/{wildcards.run}/fold-{wildcards.fold}/checkpoint.safetensors",
        "data": data_inputs(wildcards.run, wildcards.dataset),
    }


rule zero_shot:
    input:
        unpack(zero_shot_inputs),
    output:
        metrics=f"{RESULTS}/{{dataset}}/train/{{run}}/zeroshot-from-{{source}}/fold-{{fold}}/metrics.json",
        predictions=f"{RESULTS}/{{dataset}}/train/{{run}}/zeroshot-from-{{source}}/fold-{{fold}}/predictions.parquet",
        confusion=f"{RESULTS}/{{dataset}}/train/{{run}}/zeroshot-from-{{source}}/fold-{{fold}}/confusion.png",
    params:
        cfg=zero_shot_json,
        out=lambda wc, output: os.path.dirname(output.metrics),
    resources:
        gpu=train_gpu,
    wildcard_constraints:
        fold=r"\d+",
    log:
        f"{RESULTS}/{{dataset}}/logs/evaluate/{{run}}/zeroshot-from-{{source}}-fold-{{fold}}.log",
    conda:
        "../../envs/dfer.yaml"
    shell:
        "{PY} evaluate --checkpoint {input.checkpoint} --results {RESULTS} --dataset {wildcards.dataset}"
        " --fold {wildcards.fold} --split all --out {params.out} --params {params.cfg:q}"
        " 2> >(tee {log} >&2)"


rule zero_shot_summary:
    input:
        lambda wc: [f"{RESULTS}/{wc.dataset}/train/{wc.run}/zeroshot-from-{wc.source}/fold-{k}/metrics.json"
                    for k in run_folds(wc.run, wc.source)],
    output:
        f"{RESULTS}/{{dataset}}/train/{{run}}/zeroshot-from-{{source}}/summary.json",
    log:
        f"{RESULTS}/{{dataset}}/logs/evaluate/{{run}}/zeroshot-from-{{source}}-summary.log",
    conda:
        "../../envs/dfer.yaml"
    shell:
        "{PY} evaluate --summarize {input} --out {output} 2> >(tee {log} >&2)"


TRAIN_TARGETS = [
    f"{RESULTS}/{ds}/train/{run}/summary.json" for run in TRAIN_RUNS for ds in run_datasets(run)
]
for _zs in TRAIN.get("zero_shot", []) or []:
    for _run in [_zs["run"]] if _zs.get("run") else list(TRAIN_RUNS):
        if _zs["train"] in run_datasets(_run) and _zs["eval"] in DATASETS:
            TRAIN_TARGETS.append(f"{RESULTS}/{_zs['eval']}/train/{_run}/zeroshot-from-{_zs['train']}/summary.json")
TARGETS.extend(TRAIN_TARGETS)


rule train_all:
    input:
        TRAIN_TARGETS,
