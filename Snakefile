# dfer: FineCLIPER preprocessing + training pipeline.
#   snakemake --cores all                 # everything, for config["datasets"]
#   snakemake --cores all decode_all      # one stage for every shard
#   snakemake -n                          # what would run (e.g. after a dataset update)
# Rules are thin: each calls `python -m dfer <stage>`; the logic lives in src/dfer.

from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/decode.smk"
include: "workflow/rules/landmarks.smk"
include: "workflow/rules/parsing.smk"
include: "workflow/rules/captions.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        get_final_output(),
