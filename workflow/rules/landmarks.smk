# Stage 3: landmarks. 68 points per decoded frame: face-alignment's FAN (GPU) or dlib's shape
# predictor (CPU, offline); one Parquet row per (clip, frame) + per-clip failures table.
# gpu=1 for a GPU backend, or `auto` where a GPU is found (landmarks_gpu in common.smk).


rule landmarks:
    input:
        frames=shard_path(FRAMES_DIR, paths.SAFETENSORS),
        index=shard_path(FRAMES_DIR, paths.PARQUET),
    output:
        landmarks=shard_path(LANDMARKS_DIR, paths.PARQUET),
        failures=shard_path(LANDMARKS_DIR, paths.FAILURES),
    params:
        cfg=section_json("landmarks"),
        dfer=dfer_command(),
    resources:
        gpu=landmarks_gpu,
    log:
        shard_log("landmarks"),
    conda:
        "../../envs/dfer.yaml"
    shell:
        "{params.dfer} landmarks --frames {input.frames} --index {input.index}"
        " --out {output.landmarks} --out-failures {output.failures}"
        " --params {params.cfg:q} 2> >(tee {log} >&2)"


rule landmarks_all:
    input:
        landmarks_targets(),
