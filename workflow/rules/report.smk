# Stage 7: report. One table across runs, folds and datasets, stage statistics, plots and the
# error-analysis gallery (one card per test clip of every evaluation) in results/report/; its
# outputs are flagged for `snakemake --report report.html`. The gallery folder scales to large
# folds; `snakemake --report` embeds single files only, so it gets gallery.html, the same page
# in one file with `report.embed_max` cards a fold (docs/report.md).
# Its inputs are every stage's final outputs (report_inputs in common.smk).


rule report:
    input:
        report_inputs(),
    output:
        metrics=report(f"{RESULTS}/report/metrics.png", caption="../report/metrics.rst", category="Results"),
        confusion=report(f"{RESULTS}/report/confusion.png", caption="../report/confusion.rst", category="Results"),
        gallery_html=report(f"{RESULTS}/report/gallery.html", caption="../report/gallery.rst", category="Results"),
        stages=report(f"{RESULTS}/report/stages.png", caption="../report/stages.rst", category="Stages"),
        summary=report(f"{RESULTS}/report/summary.csv", caption="../report/tables.rst", category="Results"),
        per_fold=report(f"{RESULTS}/report/metrics.csv", caption="../report/tables.rst", category="Results"),
        stage_table=report(f"{RESULTS}/report/stages.csv", caption="../report/tables.rst", category="Stages"),
        gallery=directory(f"{RESULTS}/report/gallery"),
        md=f"{RESULTS}/report/report.md",
        html=f"{RESULTS}/report/report.html",
    params:
        results=results_dir(2),
        datasets=DATASETS,
        out=lambda wc, output: os.path.dirname(output.md),
        gallery=report_gallery_args(),
        dfer=dfer_command(),
    log:
        f"{RESULTS}/logs/report.log",
    conda:
        "../../envs/dfer.yaml"
    shell:
        "{params.dfer} report --results {params.results} --datasets {params.datasets} --out {params.out}"
        " {params.gallery} 2> >(tee {log} >&2)"
