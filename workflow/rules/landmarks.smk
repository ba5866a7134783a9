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
        result=stage_result("landmarks"),  # tracked: what changes the points
        settings=stage_settings("landmarks"),  # the section as the job reads it (device, batch size too)
        dfer=dfer_command(),
    resources:
        gpu=landmarks_gpu,
    # dlib's detector and shape predictor, cv2's crops and the FAN feeder run on one thread
    threads: 1
    log:
        shard_log("landmarks"),
    conda:
        "../../envs/dfer.yaml"
    shell:
        "{params.dfer} landmarks --frames {input.frames:q} --index {input.index:q}"
        " --out {output.landmarks:q} --out-failures {output.failures:q}"
        " --params {params.settings:q} 2> >(tee {log:q} >&2)"


rule landmarks_all:
    input:
        landmarks_targets(),
