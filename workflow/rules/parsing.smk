# Stage 4: parsing. Canonical face-parsing label maps per decoded frame: FaRL via facer (GPU)
# or polygons rasterised from the landmarks (CPU, offline); uint8 safetensors shard + Parquet
# of per-frame region areas + per-clip failures table.


rule parsing:
    input:
        frames=f"{RESULTS}/{{dataset}}/frames/shard-{{shard}}.safetensors",
        index=f"{RESULTS}/{{dataset}}/frames/shard-{{shard}}.parquet",
        landmarks=f"{RESULTS}/{{dataset}}/landmarks/shard-{{shard}}.parquet",
    output:
        maps=f"{RESULTS}/{{dataset}}/parsing/shard-{{shard}}.safetensors",
        index=f"{RESULTS}/{{dataset}}/parsing/shard-{{shard}}.parquet",
        failures=f"{RESULTS}/{{dataset}}/parsing/shard-{{shard}}.failures.parquet",
    params:
        cfg=section_json("parsing"),
        dfer=dfer_command(),
    resources:
        gpu=parsing_gpu,
    log:
        f"{RESULTS}/{{dataset}}/logs/parsing/shard-{{shard}}.log",
    conda:
        "../../envs/dfer.yaml"
    shell:
        "{params.dfer} parsing --frames {input.frames} --index {input.index}"
        " --landmarks {input.landmarks} --out-maps {output.maps} --out-index {output.index}"
        " --out-failures {output.failures} --params {params.cfg:q} 2> >(tee {log} >&2)"


rule parsing_all:
    input:
        parsing_targets(),
