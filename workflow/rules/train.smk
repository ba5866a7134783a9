# Stage 6: train / evaluate. One job per (run, dataset, fold) trains FineCLIPER on the clips
# with test_fold != k and saves only the tunable weights; one job per fold evaluates it on
# test_fold == k (UAR, WAR, per-class accuracy, confusion matrix, predictions); one job per
# (run, dataset) averages the folds into summary.json. Zero-shot entries evaluate every fold
# checkpoint of a run trained on one dataset on all clips of another (labels mapped by name).
# Each job is given exactly the files it declares (data_inputs / data_args in common.smk, from
# dfer.train.inputs) and reads nothing else.
# A fold's params are only what changes its result (run_json in common.smk): editing a run's
# `datasets` or `folds` schedules the new (dataset, fold) jobs and re-runs nothing else, and
# its execution keys (device, workers, eval batch size, GPUs per fold: dfer.train.execution)
# re-run nothing. A fold asks for `trainer.devices` GPUs; its DataLoader workers follow its
# threads (train_threads / train_settings in common.smk).


rule train:
    input:
        unpack(train_inputs),
    output:
        checkpoint=fold_path(paths.CHECKPOINT),
        summary=fold_path(paths.TRAIN_SUMMARY),
    params:
        result=run_json,  # tracked: what changes the fold's result
        settings=train_settings,  # the run as the job reads it (untracked: derived from threads)
        data=data_args,
        out=lambda wc, output: os.path.dirname(output.checkpoint),
        dfer=dfer_command(),
    resources:
        gpu=train_gpu,
    threads: train_threads
    log:
        job_log("train"),
    conda:
        "../../envs/dfer.yaml"
    shell:
        "{params.dfer} train --dataset {wildcards.dataset:q} --fold {wildcards.fold:q} --run {wildcards.run:q}"
        " --out {params.out:q} --params {params.settings:q} {params.data} 2> >(tee {log:q} >&2)"


rule evaluate:
    input:
        unpack(evaluate_inputs),
    output:
        metrics=fold_path(paths.METRICS),
        predictions=fold_path(paths.PREDICTIONS),
        confusion=fold_path(paths.CONFUSION),
    params:
        result=eval_json,  # tracked (the checkpoint is an input)
        settings=eval_settings,  # device and data loading (untracked: derived from threads)
        data=data_args,
        out=lambda wc, output: os.path.dirname(output.metrics),
        dfer=dfer_command(),
    resources:
        gpu=eval_gpu,
    threads: eval_threads
    log:
        job_log("evaluate"),
    conda:
        "../../envs/dfer.yaml"
    shell:
        "{params.dfer} evaluate --checkpoint {input.checkpoint:q} --dataset {wildcards.dataset:q}"
        " --fold {wildcards.fold:q} --out {params.out:q} --params {params.settings:q} {params.data}"
        " 2> >(tee {log:q} >&2)"


rule train_summary:
    input:
        fold_metrics,
    output:
        run_summary_path(),
    params:
        dfer=dfer_command(),
    threads: 1
    log:
        job_log("evaluate", fold=None),
    conda:
        "../../envs/dfer.yaml"
    shell:
        "{params.dfer} evaluate --summarize {input:q} --out {output:q} 2> >(tee {log:q} >&2)"


rule zero_shot:
    input:
        unpack(zero_shot_inputs),
    output:
        metrics=fold_path(paths.METRICS, source=paths.SOURCE),
        predictions=fold_path(paths.PREDICTIONS, source=paths.SOURCE),
        confusion=fold_path(paths.CONFUSION, source=paths.SOURCE),
    params:
        result=zero_shot_json,  # tracked: label prompts (the checkpoint is an input)
        settings=eval_settings,  # label prompts, device and data loading (untracked)
        data=data_args,
        out=lambda wc, output: os.path.dirname(output.metrics),
        dfer=dfer_command(),
    resources:
        gpu=eval_gpu,
    threads: eval_threads
    log:
        job_log("evaluate", source=paths.SOURCE),
    conda:
        "../../envs/dfer.yaml"
    shell:
        "{params.dfer} evaluate --checkpoint {input.checkpoint:q} --dataset {wildcards.dataset:q}"
        " --fold {wildcards.fold:q} --split all --out {params.out:q} --params {params.settings:q} {params.data}"
        " 2> >(tee {log:q} >&2)"


rule zero_shot_summary:
    input:
        zero_shot_fold_metrics,
    output:
        run_summary_path(source=paths.SOURCE),
    params:
        dfer=dfer_command(),
    threads: 1
    log:
        job_log("evaluate", fold=None, source=paths.SOURCE),
    conda:
        "../../envs/dfer.yaml"
    shell:
        "{params.dfer} evaluate --summarize {input:q} --out {output:q} 2> >(tee {log:q} >&2)"


rule train_all:
    input:
        train_targets(),
