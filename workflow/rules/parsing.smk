# Stage 4: parsing. Canonical face-parsing label maps per decoded frame: FaRL via facer (GPU)
# or polygons rasterised from the landmarks (CPU, offline); uint8 safetensors shard + Parquet
# of per-frame region areas + per-clip failures table.


rule parsing:
    input:
        frames=shard_path(FRAMES_DIR, paths.SAFETENSORS),
        index=shard_path(FRAMES_DIR, paths.PARQUET),
        landmarks=shard_path(LANDMARKS_DIR, paths.PARQUET),
    output:
        maps=shard_path(PARSING_DIR, paths.SAFETENSORS),
        index=shard_path(PARSING_DIR, paths.PARQUET),
        failures=shard_path(PARSING_DIR, paths.FAILURES),
    params:
        result=stage_result("parsing"),  # tracked: what changes the label maps
        settings=stage_settings("parsing"),  # the section as the job reads it (device, batch size too)
        dfer=dfer_command(),
    resources:
        gpu=parsing_gpu,
    # polygon rasterisation (cv2) and the facer feeder run on one thread
    threads: 1
    log:
        shard_log("parsing"),
    conda:
        "../../envs/dfer.yaml"
    shell:
        "{params.dfer} parsing --frames {input.frames:q} --index {input.index:q}"
        " --landmarks {input.landmarks:q} --out-maps {output.maps:q} --out-index {output.index:q}"
        " --out-failures {output.failures:q} --params {params.settings:q} 2> >(tee {log:q} >&2)"


rule parsing_all:
    input:
        parsing_targets(),
