# Stage 3: landmarks. 68 points per decoded frame: face-alignment's FAN (GPU) or dlib's shape
# predictor (CPU, offline); one Parquet row per (clip, frame) + per-clip failures table.


def landmarks_gpu(wildcards):
    """1 GPU when the configured backend may use one (face_alignment, or auto off the CPU)."""
    cfg = config.get("landmarks", {})
    cpu_only = cfg.get("backend", "auto") == "dlib" or cfg.get("device", "auto") == "cpu"
    return 0 if cpu_only else 1


rule landmarks:
    input:
        frames=f"{RESULTS}/{{dataset}}/frames/shard-{{shard}}.safetensors",
        index=f"{RESULTS}/{{dataset}}/frames/shard-{{shard}}.parquet",
    output:
        landmarks=f"{RESULTS}/{{dataset}}/landmarks/shard-{{shard}}.parquet",
        failures=f"{RESULTS}/{{dataset}}/landmarks/shard-{{shard}}.failures.parquet",
    params:
        cfg=section_json("landmarks"),
    resources:
        gpu=landmarks_gpu,
    log:
        f"{RESULTS}/{{dataset}}/logs/landmarks/shard-{{shard}}.log",
    conda:
        "../../envs/dfer.yaml"
    shell:
        "{PY} landmarks --frames {input.frames} --index {input.index}"
        " --out {output.landmarks} --out-failures {output.failures}"
        " --params {params.cfg:q} 2> >(tee {log} >&2)"


LANDMARKS_TARGETS = shard_targets("{results}/{dataset}/landmarks/shard-{shard}.parquet")
TARGETS.extend(LANDMARKS_TARGETS)


rule landmarks_all:
    input:
        LANDMARKS_TARGETS,
