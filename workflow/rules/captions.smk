# Stage 5: captions. One text per clip describing its facial movements: an MLLM through vLLM
# (in-process `vllm.LLM`, backend `vllm`), an OpenAI-compatible server (`vllm serve`, backend
# `openai`) or the landmark-dynamics describer (backend `offline`, the default, no model).
# The prompt hash (template + model + sampling) is a param: a new prompt or model re-runs this
# stage only. Details: docs/captions.md.

from dfer.captions.settings import CaptionsConfig, vllm_python  # noqa: E402

CAPTIONS = CaptionsConfig.from_params(config.get("captions", {}))


def captions_command():
    """`python -m dfer`, run by the vLLM environment's python for the `vllm` backend.

    vLLM pins its own torch, so that backend runs in a separate env with dfer's src/ on
    PYTHONPATH (dfer is not installed there). With --use-conda the rule's env is activated
    and its own `python` is right; otherwise the configured / default vLLM venv is used.
    """
    if CAPTIONS.backend != "vllm":
        return PY
    src = os.path.join(workflow.basedir, "src")
    python = vllm_python(config.get("captions", {})) or "python"
    if any(m.name == "CONDA" for m in workflow.deployment_settings.deployment_method):
        python = "python"  # envs/vllm.yaml is active
    return f"PYTHONPATH={src} {python} -m dfer"


CAPTIONS_CMD = captions_command()


def captions_gpu(wildcards):
    """gpu=1 only for the in-process vLLM backend on a GPU (`device` not cpu)."""
    if CAPTIONS.backend != "vllm" or CAPTIONS.raw["device"] == "cpu":
        return 0
    return 1 if CAPTIONS.raw["device"] == "cuda" or gpu_may_be_used() else 0


rule captions:
    input:
        frames=f"{RESULTS}/{{dataset}}/frames/shard-{{shard}}.safetensors",
        index=f"{RESULTS}/{{dataset}}/frames/shard-{{shard}}.parquet",
        landmarks=f"{RESULTS}/{{dataset}}/landmarks/shard-{{shard}}.parquet",
    output:
        captions=f"{RESULTS}/{{dataset}}/captions/shard-{{shard}}.parquet",
        failures=f"{RESULTS}/{{dataset}}/captions/shard-{{shard}}.failures.parquet",
    params:
        cfg=section_json("captions"),
        prompt_hash=CAPTIONS.prompt_hash(),
    resources:
        gpu=captions_gpu,
    log:
        f"{RESULTS}/{{dataset}}/logs/captions/shard-{{shard}}.log",
    conda:
        "../../envs/vllm.yaml" if CAPTIONS.backend == "vllm" else "../../envs/dfer.yaml"
    shell:
        # the interpreter is not a param: moving the repo or the venv must not re-run captions
        CAPTIONS_CMD + " captions --frames {input.frames} --index {input.index}"
        " --landmarks {input.landmarks}"
        " --out {output.captions} --out-failures {output.failures}"
        " --params {params.cfg:q} 2> >(tee {log} >&2)"


CAPTIONS_TARGETS = shard_targets("{results}/{dataset}/captions/shard-{shard}.parquet")
TARGETS.extend(CAPTIONS_TARGETS)


rule captions_all:
    input:
        CAPTIONS_TARGETS,
