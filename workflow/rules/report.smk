# Stage 7: report. One table across runs, folds and datasets, stage statistics, plots and the
# error-analysis gallery (one card per test clip of every evaluation) in results/report/; its
# outputs are flagged for `snakemake --report report.html`. The gallery folder scales to large
# folds; `snakemake --report` embeds single files only, so it gets gallery.html, the same page
# in one file with `report.embed_max` cards a fold (docs/report.md).
# Its inputs are decode's outputs plus those of the stages the configured runs read (a
# DFER-CLIP-only study schedules no landmarks, parsing or captions; the stage table says
# "not run" for them); it reports exactly the folds of the run summaries it declares (each
# summary lists its folds, whose metrics.json sit beside it). It declares every file it reads:
# the manifests and all outputs of those stages' shard jobs (the gallery's frames and parsing
# tensors, the failure tables of the stage table), and each fold's metrics.json,
# predictions.parquet and, in-domain, train.json; --stages keeps it out of other stage folders.


rule report:
    input:
        stages=report_stage_files(),
        summaries=train_targets(),
        folds=report_fold_files(),
    output:
        metrics=report(report_path("metrics.png"), caption="../report/metrics.rst", category="Results"),
        confusion=report(report_path("confusion.png"), caption="../report/confusion.rst", category="Results"),
        gallery_html=report(report_path("gallery.html"), caption="../report/gallery.rst", category="Results"),
        stages=report(report_path("stages.png"), caption="../report/stages.rst", category="Stages"),
        summary=report(report_path("summary.csv"), caption="../report/tables.rst", category="Results"),
        per_fold=report(report_path("metrics.csv"), caption="../report/tables.rst", category="Results"),
        stage_table=report(report_path("stages.csv"), caption="../report/tables.rst", category="Stages"),
        gallery=directory(report_path("gallery")),
        md=report_path("report.md"),
        html=report_path("report.html"),
    params:
        results=results_dir(2),
        datasets=DATASETS,
        out=lambda wc, output: os.path.dirname(output.md),
        gallery=report_gallery_args(),
        stage_dirs=report_stage_args(),
        dfer=dfer_command(),
    threads: 1
    log:
        report_log(),
    conda:
        "../../envs/dfer.yaml"
    shell:
        "{params.dfer} report --results {params.results:q} --datasets {params.datasets:q} --out {params.out:q}"
        " --stages {params.stage_dirs} --summaries {input.summaries:q} {params.gallery} 2> >(tee {log:q} >&2)"
