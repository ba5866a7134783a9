# Stage 3b: landmark features. A per-frame feature map of the decoded frames (MobileFaceNet
# conv_4, or FAN heat maps pooled to 14 x 14: the `landmark_features` section) for the methods
# that read one (S2D). Opt-in: only a run whose method's needs name a feature kind
# (dfer.train.inputs.Needs.landmark_features) declares these files, so only then are the jobs
# scheduled (data_inputs, dataset_stage_dirs in common.smk).


rule landmark_features:
    input:
        frames=shard_path(FRAMES_DIR, paths.SAFETENSORS),
        index=shard_path(FRAMES_DIR, paths.PARQUET),
    output:
        features=shard_path(LANDMARK_FEATURES_DIR, paths.SAFETENSORS),
        index=shard_path(LANDMARK_FEATURES_DIR, paths.PARQUET),
        failures=shard_path(LANDMARK_FEATURES_DIR, paths.FAILURES),
    params:
        result=stage_result("landmark_features"),  # tracked: what changes the maps
        settings=stage_settings("landmark_features"),  # the section as the job reads it (device, batch size too)
        dfer=dfer_command(),
    resources:
        gpu=landmark_features_gpu,
    threads: 1
    log:
        shard_log("landmark_features"),
    conda:
        "../../envs/dfer.yaml"
    shell:
        "{params.dfer} landmark-features --frames {input.frames:q} --index {input.index:q}"
        " --out {output.features:q} --out-index {output.index:q} --out-failures {output.failures:q}"
        " --params {params.settings:q} 2> >(tee {log:q} >&2)"


rule landmark_features_all:
    input:
        landmark_features_targets(),
