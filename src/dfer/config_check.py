"""The whole pipeline config checked when the Snakefile is parsed, before any job starts.

Snakemake deletes a job's old outputs before running it, so a setting that is only checked
inside the job (a misspelt ``trainer`` key, ``lr: 1e-3`` read as text) costs the previous
result. Every section is therefore built here with the same strict dataclasses the jobs use
(:mod:`dfer.core.strict_config`), runs included, and the first problem is reported as one line
naming the key, the config file that sets it and the allowed values: not as Snakemake's
dump of the whole schema.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

KeyPath = tuple[Any, ...]


class ConfigError(ValueError):
    """A config problem, worded for the person who edits the config file."""


def _dotted(path: Sequence[Any]) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def _load(path: str | Path) -> Mapping[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, Mapping) else {}


def _sets(data: Any, path: Sequence[Any]) -> bool:
    for key in path:
        in_mapping = isinstance(data, Mapping) and key in data
        in_list = isinstance(data, list) and isinstance(key, int) and 0 <= key < len(data)
        if not (in_mapping or in_list):
            return False
        data = data[key]
    return True


def source_file(path: Sequence[Any], configfiles: Sequence[str | Path]) -> str | None:
    """The config file whose value of ``path`` wins (files in merge order, last wins)."""
    for file in reversed(list(configfiles)):
        if _sets(_load(file), path):
            return str(file)
    return None


def _schema_line(error: Any) -> tuple[KeyPath, str]:
    """One ``jsonschema`` error as (key path, short message with the allowed values)."""
    path = tuple(error.absolute_path)
    kind, value, schema = error.validator, error.instance, error.schema
    if kind == "additionalProperties" and isinstance(value, Mapping):
        known = sorted(schema.get("properties", {}))
        extra = sorted(set(value) - set(known))
        if extra and known:
            return (*path, extra[0]), f"unknown key(s) {extra}; allowed: {', '.join(known)}"
    if kind == "enum":
        allowed = ", ".join(repr(v) for v in error.validator_value)
        return path, f"{value!r} is not allowed; allowed: {allowed}"
    if kind == "type":
        want = error.validator_value
        want = " or ".join(want) if isinstance(want, list) else want
        return path, f"must be of type {want}, got {value!r}"
    if kind == "required":
        return path, error.message
    if kind == "pattern" and schema.get("description"):
        if "propertyNames" in error.schema_path:  # a key of a mapping (a run name)
            return (*path, value), f"the name {value!r} is not allowed: {schema['description']}"
        return path, f"{value!r} is not allowed: {schema['description']}"
    return path, error.message


def schema_problem(config: Mapping[str, Any], schema_file: str | Path) -> tuple[KeyPath, str] | None:
    """The most telling schema violation of ``config``, or None when it conforms."""
    import jsonschema

    schema = yaml.safe_load(Path(schema_file).read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    return None if error is None else _schema_line(error)


def _section_builders() -> dict[str, Callable[[Any], Any]]:
    from dfer.captions.config import CaptionsConfig
    from dfer.landmark_features.config import LandmarkFeaturesConfig
    from dfer.landmarks.config import LandmarksConfig
    from dfer.parsing.config import ParsingConfig
    from dfer.video.config import DecodeConfig

    return {
        "decode": DecodeConfig.from_params,
        "landmarks": LandmarksConfig.from_dict,
        "parsing": ParsingConfig.from_dict,
        "landmark_features": LandmarkFeaturesConfig.from_dict,
        "captions": CaptionsConfig.from_params,
    }


def _run_key(run: str, params: Mapping[str, Any], message: str) -> KeyPath:
    """The deepest key of run ``run`` that ``message`` names (``'max_epoch'``, ``trainer``)."""
    base: KeyPath = ("train", "runs", run)
    message = message.split("; known")[0]  # not the list of known keys
    for block in ("model", "data", "optim", "trainer"):
        section = params.get(block)
        if not isinstance(section, Mapping) or block not in message:
            continue
        for key in section:
            if f"'{key}'" in message or f"{block}.{key}" in message:
                return (*base, block, str(key))
        return (*base, block)
    return base


def _section_problems(config: Mapping[str, Any]) -> Iterator[tuple[KeyPath, str]]:
    """What each stage's and each run's own dataclass refuses, in config order."""
    for section, build in _section_builders().items():
        try:
            build(config.get(section) or {})
        except (TypeError, ValueError) as exc:
            yield (section,), str(exc)
    defs = config.get("dataset_defs") or {}
    for name in config.get("datasets") or []:
        if name not in defs:
            yield ("datasets",), (f"dataset {name!r} has no entry in dataset_defs "
                                  f"(known: {', '.join(sorted(defs))})")
    train = config.get("train") or {}
    runs = train.get("runs") or {}
    if runs:
        from dfer.train.config import RunConfig  # imports torch: only when there are runs

        for run, params in runs.items():
            for ds in (params or {}).get("datasets") or []:
                if ds not in defs:
                    yield ("train", "runs", run, "datasets"), (
                        f"dataset {ds!r} has no entry in dataset_defs "
                        f"(known: {', '.join(sorted(defs))})")
            try:
                RunConfig.from_dict(params)
            except (TypeError, ValueError) as exc:
                yield _run_key(run, params or {}, str(exc)), str(exc)
    for i, zs in enumerate(train.get("zero_shot") or []):
        if zs.get("run") and zs["run"] not in runs:
            yield ("train", "zero_shot", i, "run"), (
                f"run {zs['run']!r} is not a key of train.runs (known: {', '.join(sorted(runs))})")
        elif zs.get("run"):
            spec = _run_method(runs[zs["run"]])
            if spec is not None and not spec.zero_shot:
                yield ("train", "zero_shot", i, "run"), (
                    f"run {zs['run']!r} trains {spec.title} (model.method {spec.name}), which cannot "
                    "score classes it was not trained on: zero-shot needs a method whose text side "
                    "takes class names (docs/methods.md)")
    yield from _landmark_feature_problems(config, runs)

    reference = (config.get("report") or {}).get("reference")
    if reference is not None and reference not in runs:
        # checked before any job: the report job would otherwise fail after every fold trained
        yield ("report", "reference"), (
            f"run {reference!r} is not a key of train.runs (known: {', '.join(sorted(runs))})")


def _landmark_feature_problems(config: Mapping[str, Any], runs: Mapping[str, Any]) -> Iterator[tuple[KeyPath, str]]:
    """A run reading landmark features of another kind than ``landmark_features.backend``
    writes, and a ``model.static_from`` (S2D's static stage) that names no static run the
    workflow trains on that dataset: refused before any job runs (the video run would otherwise
    fail after the static run trained, or wait for a checkpoint no rule makes)."""
    from dfer.landmark_features.config import LandmarkFeaturesConfig
    from dfer.train.inputs import needs_for

    try:
        written = LandmarkFeaturesConfig.from_dict(config.get("landmark_features") or {}).kind
    except (TypeError, ValueError):
        return  # reported with the section itself
    datasets = list(config.get("datasets") or [])
    for run, params in runs.items():
        model = (params or {}).get("model") or {}
        try:
            kind = needs_for(model).landmark_features
        except (TypeError, ValueError):
            continue  # reported with the run's own block
        if kind and kind != written.name:
            yield ("train", "runs", run, "model", "landmark_kind"), (
                f"run {run!r} reads landmark features of kind {kind!r}, but landmark_features.backend "
                f"{written.backend!r} writes {written.name!r}: set landmark_features.backend to the "
                f"kind's backend, or the run's model.landmark_kind to {written.name!r}")
        src = model.get("static_from")
        if not isinstance(src, Mapping):
            continue
        key: KeyPath = ("train", "runs", run, "model", "static_from")
        static, ds = src.get("run"), src.get("dataset")
        if model.get("pretrained") is not None:
            yield (*key[:-1], "pretrained"), (
                "set model.static_from or model.pretrained, not both: static_from makes the "
                "workflow pass the static run's checkpoint as pretrained")
        elif static not in runs or static == run:
            yield (*key, "run"), (f"run {static!r} is not another key of train.runs "
                                  f"(known: {', '.join(sorted(r for r in runs if r != run))})")
        elif _run_method(runs[static]) is None or _run_method(runs[static]).name != "s2d" or \
                ((runs[static] or {}).get("model") or {}).get("temporal", True) is not False:
            yield (*key, "run"), (f"run {static!r} is not an S2D static run (model.method: s2d, "
                                  "temporal: false): static_from reads its checkpoint as the backbone")
        elif ds not in datasets or ds not in ((runs[static] or {}).get("datasets") or datasets):
            yield (*key, "dataset"), (f"run {static!r} does not train on dataset {ds!r} here "
                                      f"(datasets: {', '.join(datasets)}; its datasets: "
                                      f"{(runs[static] or {}).get('datasets') or 'all'})")


def _run_method(params: Mapping[str, Any] | None) -> Any:
    """The registry's spec of a run's ``model.method``, or None when it names no known method
    (that problem is reported with the run's own block)."""
    from dfer.methods.registry import split_model_block  # torch-free

    try:
        return split_model_block((params or {}).get("model"))[0]
    except (TypeError, ValueError):
        return None


def config_problem(config: Mapping[str, Any], schema_file: str | Path,
                   configfiles: Sequence[str | Path] = ()) -> str | None:
    """The first problem of the merged ``config`` as one line, or None when it is valid.

    ``configfiles`` are the files merged into ``config``, in merge order (the last wins);
    the message names the one that sets the offending key.
    """
    found = schema_problem(config, schema_file)
    if found is None:
        found = next(_section_problems(config), None)
    if found is None:
        return None
    path, message = found
    file = source_file(path, configfiles) or source_file(path[:-1], configfiles) if path else None
    where = f" (set in {file})" if file else ""
    return f"config error at {_dotted(path)}{where}: {message}"


def snakemake_configfiles(workflow: Any) -> list[str]:
    """The config files Snakemake merged, in merge order: the Snakefile's, then ``--configfile``."""
    cli = [str(f) for f in (workflow.overwrite_configfiles or [])]
    every = [str(f) for f in workflow.configfiles]
    return [f for f in every if f not in cli] + cli
