"""``dfer.core.paths``: one layout that gives the library's paths and the rules' patterns alike."""

from __future__ import annotations

from pathlib import Path

from dfer.core import paths


def test_a_pattern_filled_in_is_the_concrete_path() -> None:
    pattern = paths.under("results", paths.shard_rel(paths.DATASET, "frames", paths.SHARD, ".safetensors"))
    assert pattern == "results/{dataset}/frames/shard-{shard}.safetensors"
    concrete = paths.shard_file("results", "demo", "frames", "001", ".safetensors")
    assert Path(pattern.format(dataset="demo", shard="001")) == concrete
    assert paths.manifest_file("results", "demo") == Path("results/demo/manifest/manifest.parquet")
    assert paths.stage_dir("results", "demo", "landmarks") == concrete.parent.parent / "landmarks"


def test_training_and_log_layout() -> None:
    w = (paths.DATASET, paths.RUN, paths.FOLD)
    assert paths.fold_file_rel(*w, paths.CHECKPOINT) == "{dataset}/train/{run}/fold-{fold}/checkpoint.safetensors"
    assert (paths.fold_file_rel(*w, paths.METRICS, source=paths.SOURCE)
            == "{dataset}/train/{run}/zeroshot-from-{source}/fold-{fold}/metrics.json")
    assert paths.run_summary_rel("demo", "tiny") == "demo/train/tiny/summary.json"
    assert paths.job_log_rel("demo", "train", "tiny", 2) == "demo/logs/train/tiny/fold-2.log"
    assert paths.job_log_rel("demo", "evaluate", "tiny") == "demo/logs/evaluate/tiny/summary.log"
    assert (paths.job_log_rel("demo", "evaluate", "tiny", 1, source="dfew")
            == "demo/logs/evaluate/tiny/zeroshot-from-dfew-fold-1.log")
    assert paths.shard_log_rel("demo", "decode", "000") == "demo/logs/decode/shard-000.log"
    assert paths.report_dir("results") == Path("results") / paths.REPORT


def test_the_results_text_is_kept_verbatim_in_patterns() -> None:
    """A storage plugin's prefix must survive: pathlib would turn ``s3://b`` into ``s3:/b``."""
    assert paths.under("s3://bucket/results", paths.manifest_rel("demo")) == "s3://bucket/results/demo/manifest/manifest.parquet"
