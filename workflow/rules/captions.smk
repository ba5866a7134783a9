# Stage 5: captions. One text per clip describing its facial movements: an MLLM through vLLM
# (in-process `vllm.LLM`, backend `vllm`), an OpenAI-compatible server (`vllm serve`, backend
# `openai`) or the landmark-dynamics describer (backend `offline`, the default, no model).
# The prompt hash (template + model + sampling) is a param: a new prompt or model re-runs this
# stage only. The `vllm` backend runs in its own environment (captions_command in common.smk).
# Details: docs/captions.md.


rule captions:
    input:
        frames=shard_path(FRAMES_DIR, paths.SAFETENSORS),
        index=shard_path(FRAMES_DIR, paths.PARQUET),
        landmarks=shard_path(LANDMARKS_DIR, paths.PARQUET),
    output:
        captions=shard_path(CAPTIONS_DIR, paths.PARQUET),
        failures=shard_path(CAPTIONS_DIR, paths.FAILURES),
    params:
        result=stage_result("captions"),  # tracked: what changes the text (not servers, batch size, device)
        prompt_hash=CAPTIONS.prompt_hash(),
        settings=stage_settings("captions"),  # the section as the job reads it
        # the interpreter is not a tracked param: moving the repo or the venv must not re-run captions
        dfer=captions_command(),
    resources:
        gpu=captions_gpu,
    threads: captions_threads
    log:
        shard_log("captions"),
    conda:
        "../../envs/vllm.yaml" if CAPTIONS.backend == "vllm" else "../../envs/dfer.yaml"
    shell:
        "{params.dfer} captions --frames {input.frames:q} --index {input.index:q}"
        " --landmarks {input.landmarks:q}"
        " --out {output.captions:q} --out-failures {output.failures:q}"
        " --params {params.settings:q} 2> >(tee {log:q} >&2)"


rule captions_all:
    input:
        captions_targets(),
