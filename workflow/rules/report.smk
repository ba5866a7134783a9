# Stage 7: report. One table across runs, folds and datasets, stage statistics, plots and the
# error-analysis gallery (one card per test clip of every evaluation) in results/report/; its
# outputs are flagged for `snakemake --report report.html`. The gallery folder scales to large
# folds; `snakemake --report` embeds single files only, so it gets gallery.html, the same page
# in one file with `report.embed_max` cards a fold (docs/report.md).
# Its inputs are every stage's final outputs; it reports exactly the folds of the run summaries
# it declares (each summary lists its folds, whose metrics.json sit beside it).


rule report:
    input:
        stages=stage_targets(),
        summaries=train_targets(),
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
        dfer=dfer_command(),
    threads: 1
    log:
        report_log(),
    conda:
        "../../envs/dfer.yaml"
    shell:
        "{params.dfer} report --results {params.results:q} --datasets {params.datasets:q} --out {params.out:q}"
        " --summaries {input.summaries:q} {params.gallery} 2> >(tee {log:q} >&2)"
