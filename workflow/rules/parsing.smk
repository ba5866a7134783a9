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
        cfg=section_json("parsing"),
        dfer=dfer_command(),
    resources:
        gpu=parsing_gpu,
    log:
        shard_log("parsing"),
    conda:
        "../../envs/dfer.yaml"
    shell:
        "{params.dfer} parsing --frames {input.frames} --index {input.index}"
        " --landmarks {input.landmarks} --out-maps {output.maps} --out-index {output.index}"
        " --out-failures {output.failures} --params {params.cfg:q} 2> >(tee {log} >&2)"


rule parsing_all:
    input:
        parsing_targets(),
