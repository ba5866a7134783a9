# dfer: FineCLIPER preprocessing + training pipeline.
#   snakemake --cores all                 # everything, for config["datasets"]
#   snakemake --cores all decode_all      # one stage for every shard
#   snakemake -n                          # what would run (e.g. after a dataset update)
# Each rule runs `python -m dfer <stage>` on exactly the files it declares; paths, inputs,
# params and GPU requests come from helpers in workflow/rules/common.smk, the logic from src/dfer.

import sys
from pathlib import Path

from snakemake.utils import min_version, validate

min_version("9.0")

sys.path.insert(0, str(Path(workflow.basedir) / "src"))


configfile: "config/config.yaml"


from dfer.pipeline import ParseContext  # noqa: E402

# What this Snakemake is about to do: a dry run, one job on a cluster node, or a parse while
# another run holds this directory's lock (dfer.pipeline; common.smk syncs the manifests by it).
PARSE = ParseContext.of(workflow)

# Every section (runs included) is checked now, before any job starts or any output is
# deleted; a problem is one line naming the key, the file that sets it and what is allowed.
# A job on a cluster node skips the check: the run that submitted it checked the same config,
# and building every run's settings imports torch, seconds per job.
if not PARSE.cluster_job:
    from dfer.config_check import ConfigError, config_problem, snakemake_configfiles

    _problem = config_problem(config, Path(workflow.basedir) / "workflow/schemas/config.schema.yaml",
                              snakemake_configfiles(workflow))
    if _problem:
        raise ConfigError(_problem)
validate(config, "workflow/schemas/config.schema.yaml")  # fills in the schema's defaults


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/decode.smk"
include: "workflow/rules/landmarks.smk"
include: "workflow/rules/landmark_features.smk"
include: "workflow/rules/parsing.smk"
include: "workflow/rules/captions.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/report.smk"


# Aggregations that only read a few small files run where Snakemake runs, never as cluster jobs.
localrules:
    all,
    decode_all,
    landmarks_all,
    landmark_features_all,
    parsing_all,
    captions_all,
    train_all,
    train_summary,
    zero_shot_summary,


rule all:
    default_target: True
    input:
        get_final_output(),
