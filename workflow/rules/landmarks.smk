# Stage 3: landmarks. 68 points per decoded frame: face-alignment's FAN (GPU) or dlib's shape
# predictor (CPU, offline); one Parquet row per (clip, frame) + per-clip failures table.
# gpu=1 for a GPU backend, or `auto` where a GPU is found (landmarks_gpu in common.smk).


rule landmarks:
    input:
        frames=f"{RESULTS}/{{dataset}}/frames/shard-{{shard}}.safetensors",
        index=f"{RESULTS}/{{dataset}}/frames/shard-{{shard}}.parquet",
    output:
        landmarks=f"{RESULTS}/{{dataset}}/landmarks/shard-{{shard}}.parquet",
        failures=f"{RESULTS}/{{dataset}}/landmarks/shard-{{shard}}.failures.parquet",
    params:
        cfg=section_json("landmarks"),
        dfer=dfer_command(),
    resources:
        gpu=landmarks_gpu,
    log:
        f"{RESULTS}/{{dataset}}/logs/landmarks/shard-{{shard}}.log",
    conda:
        "../../envs/dfer.yaml"
    shell:
        "{params.dfer} landmarks --frames {input.frames} --index {input.index}"
        " --out {output.landmarks} --out-failures {output.failures}"
        " --params {params.cfg:q} 2> >(tee {log} >&2)"


rule landmarks_all:
    input:
        landmarks_targets(),
