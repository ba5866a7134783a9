# Stage 4: parsing. Canonical face-parsing label maps per decoded frame: FaRL via facer (GPU)
# or polygons rasterised from the landmarks (CPU, offline); uint8 safetensors shard + Parquet
# of per-frame region areas + per-clip failures table.


rule parsing:
    input:
        frames=shard_path("frames", ".safetensors"),
        index=shard_path("frames", ".parquet"),
        landmarks=shard_path("landmarks", ".parquet"),
    output:
        maps=shard_path("parsing", ".safetensors"),
        index=shard_path("parsing", ".parquet"),
        failures=shard_path("parsing", ".failures.parquet"),
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
