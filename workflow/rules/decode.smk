# Stage 2: decode. PyAV samples T frames per clip, dlib finds the face, frames are cropped
# and resized; uint8 safetensors shard + Parquet index + per-clip failures table.


rule decode:
    input:
        manifest=shard_path(MANIFEST_DIR, paths.PARQUET),
    output:
        frames=shard_path(FRAMES_DIR, paths.SAFETENSORS),
        index=shard_path(FRAMES_DIR, paths.PARQUET),
        failures=shard_path(FRAMES_DIR, paths.FAILURES),
    params:
        cfg=section_json("decode"),  # every decode key changes the frames
        dfer=dfer_command(),
    log:
        shard_log("decode"),
    # one thread per job: Snakemake runs one decode job per core, and FFmpeg's own threads
    # would only compete with the other jobs (benchmarks/results/decode.md, "Two jobs at
    # once"). Snakemake hands a job its threads as OMP_NUM_THREADS, which `dfer decode`
    # follows (the shell command stays as it was, so no finished shard is re-run for this);
    # `--set-threads decode=N` gives each job N threads
    threads: 1
    conda:
        "../../envs/dfer.yaml"
    shell:
        "{params.dfer} decode --manifest {input.manifest:q} --out-frames {output.frames:q}"
        " --out-index {output.index:q} --out-failures {output.failures:q}"
        " --params {params.cfg:q} 2> >(tee {log:q} >&2)"


rule decode_all:
    input:
        decode_targets(),
