# Stage 2: decode. PyAV samples T frames per clip, dlib finds the face, frames are cropped
# and resized; uint8 safetensors shard + Parquet index + per-clip failures table.


rule decode:
    input:
        manifest=f"{RESULTS}/{{dataset}}/manifest/shard-{{shard}}.parquet",
    output:
        frames=f"{RESULTS}/{{dataset}}/frames/shard-{{shard}}.safetensors",
        index=f"{RESULTS}/{{dataset}}/frames/shard-{{shard}}.parquet",
        failures=f"{RESULTS}/{{dataset}}/frames/shard-{{shard}}.failures.parquet",
    params:
        cfg=section_json("decode"),
        dfer=dfer_command(),
    log:
        f"{RESULTS}/{{dataset}}/logs/decode/shard-{{shard}}.log",
    conda:
        "../../envs/dfer.yaml"
    shell:
        "{params.dfer} decode --manifest {input.manifest} --out-frames {output.frames}"
        " --out-index {output.index} --out-failures {output.failures}"
        " --params {params.cfg:q} 2> >(tee {log} >&2)"


rule decode_all:
    input:
        decode_targets(),
