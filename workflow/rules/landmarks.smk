# Stage 3: landmarks. 68 points per decoded frame: face-alignment's FAN (GPU) or dlib's shape
# predictor (CPU, offline); one Parquet row per (clip, frame) + per-clip failures table.


def nvidia_gpu_present():
    """Cheap parse-time check (no torch import) for an NVIDIA GPU on the machine."""
    return os.path.exists("/dev/nvidiactl") or bool(os.environ.get("CUDA_VISIBLE_DEVICES"))


def gpu_may_be_used():
    """Whether `auto` backends will find a GPU where the jobs run: this machine has one, or
    jobs go to a cluster executor (the login node parsing the workflow usually has none)."""
    return workflow.non_local_exec or nvidia_gpu_present()


def stage_gpu(section, cpu_backend):
    """gpu=1 for a stage whose backend may run on the GPU: pinned GPU backend, or `auto` on
    a machine with an NVIDIA GPU or on a cluster; 0 for the CPU backend or `device: cpu`."""
    cfg = config.get(section, {})
    backend = cfg.get("backend", "auto")
    if backend == cpu_backend or cfg.get("device", "auto") == "cpu":
        return 0
    return 1 if backend != "auto" or gpu_may_be_used() else 0


def landmarks_gpu(wildcards):
    return stage_gpu("landmarks", "dlib")


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
