"""The files a training or evaluation job reads, decided once for the rules and the trainer.

Snakemake schedules a ``train`` / ``evaluate`` job from the files its rule declares; the job
must read exactly those, or the DAG and the data can disagree (a file read but never declared
is not waited for; a declared one that is skipped silently changes the model). So:

* :func:`needs_for` says which levels a model reads, :func:`stages_read` which stages' files
  that means, and :func:`declared_files` which files of a dataset those are. The rule file
  (``workflow/rules/common.smk``) builds the job's inputs with :func:`declared_files` and the
  library reads nothing else.
* :class:`DataInputs` is those files grouped by shard, built from the job's command line
  (:meth:`DataInputs.from_files`) or, for library callers, from a results folder
  (:meth:`DataInputs.from_results`). A declared file that is missing is an error naming it.

This module imports no torch: the rule file imports it while Snakemake parses the workflow.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dfer.core.integrity import require
from dfer.core.paths import (
    FAILURES,
    PARQUET,
    SAFETENSORS,
    manifest_file,
    manifest_rel,
    shard_file,
    shard_rel,
    under,
)
from dfer.core.sharding import shard_file_regex, shards_in

#: Kind of input (the ``dfer train`` option and the stage's results folder) -> (stage name in
#: provenance and failure records, the suffixes of one shard's files that training reads).
KINDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "frames": ("decode", (PARQUET, SAFETENSORS)),
    "landmarks": ("landmarks", (PARQUET,)),
    "parsing": ("parsing", (PARQUET, SAFETENSORS)),
    "captions": ("captions", (PARQUET,)),
    "landmark_features": ("landmark_features", (PARQUET, SAFETENSORS)),
}
#: The keys of :func:`declared_files`, which are also ``dfer train`` / ``dfer evaluate`` options.
INPUT_OPTIONS = ("manifest", *KINDS, "failures")


@dataclass(frozen=True)
class Needs:
    """Which upstream artifacts beyond the frames a model reads (its method decides).

    ``landmark_features`` is the kind of landmark feature map read
    (:data:`dfer.landmark_features.FEATURE_KINDS`, e.g. ``mobilefacenet_conv4``), or None: the
    kind, not a flag, so the reader can refuse a shard of another kind.
    """

    parsing: bool = False
    landmarks: bool = False
    captions: bool = False
    landmark_features: str | None = None


def needs_for(model_cfg: Any) -> Needs:
    """The artifacts a model reads, as its method declares (``MethodSpec.needs``): from a
    run's raw ``model`` block (``method`` picks the method, default FineCLIPER) or a parsed
    method config. A DFER-CLIP or CLIPER model reads frames only; FineCLIPER the levels its
    config enables.

    A raw block is parsed with the method config's own defaults, so the rule file and the
    trainer cannot disagree about a level that is left unset.
    """
    from dfer.methods.registry import spec_of_config, split_model_block

    if isinstance(model_cfg, Mapping) or model_cfg is None:
        spec, rest = split_model_block(model_cfg)
        return spec.needs(rest)
    return spec_of_config(model_cfg).needs(model_cfg.to_dict())


def kinds_read(needs: Needs) -> list[str]:
    """Input kinds a model with these levels reads. Parsing reads the landmarks too: its
    checkpoint records the landmark settings that ``dfer predict`` repeats before parsing."""
    kinds = ["frames"]
    if needs.landmarks or needs.parsing:
        kinds.append("landmarks")
    if needs.parsing:
        kinds.append("parsing")
    if needs.captions:
        kinds.append("captions")
    if needs.landmark_features:
        kinds.append("landmark_features")
    return kinds


def stages_read(landmarks: bool, parsing: bool, captions: bool, landmark_features: str | None = None) -> list[str]:
    """The stages whose artifacts feed a model with these levels (parsing reads landmarks)."""
    return [KINDS[k][0] for k in kinds_read(Needs(parsing=parsing, landmarks=landmarks, captions=captions,
                                                  landmark_features=landmark_features))]


def declared_files(results: str | Path, dataset: str, shards: Sequence[str], needs: Needs) -> dict[str, list[str]]:
    """Every file a job on ``dataset`` reads, by kind: ``manifest``, one list per kind read
    (see :func:`kinds_read`; empty lists for the others) and ``failures``.

    The one list of a job's inputs: the rules declare it, ``dfer train`` / ``dfer evaluate``
    receive it, :class:`DataInputs` reads it. Paths are text in the rules' layout
    (:func:`dfer.core.paths.under`), so they match the stage rules' outputs exactly.
    """
    out: dict[str, list[str]] = {"manifest": [under(results, manifest_rel(dataset))]}
    read = kinds_read(needs)
    for kind, (_, suffixes) in KINDS.items():
        out[kind] = ([under(results, shard_rel(dataset, kind, s, suf)) for s in shards for suf in suffixes]
                     if kind in read else [])
    out["failures"] = [under(results, shard_rel(dataset, kind, s, FAILURES)) for kind in read for s in shards]
    return out


@dataclass(frozen=True)
class DataInputs:
    """A dataset's declared input files: the manifest and, per kind, shard -> suffix -> path."""

    dataset: str
    manifest: Path
    shards: list[str]
    files: dict[str, dict[str, dict[str, Path]]] = field(default_factory=dict)
    #: (stage, path) of every failures table, in stage order
    failures: list[tuple[str, Path]] = field(default_factory=list)

    def has(self, kind: str) -> bool:
        """Whether files of this kind were declared."""
        return bool(self.files.get(kind))

    def path(self, kind: str, shard: str, suffix: str) -> Path:
        """One declared file; a KeyError naming what was not declared otherwise."""
        try:
            return self.files[kind][shard][suffix]
        except KeyError:
            raise KeyError(f"{self.dataset}: no {kind} file shard-{shard}{suffix} among the declared "
                           "inputs; the rule must declare every file the job reads") from None

    @classmethod
    def from_files(cls, dataset: str, manifest: str | Path, kinds: Mapping[str, Iterable[str | Path]],
                   failures: Iterable[str | Path] = ()) -> DataInputs:
        """Group a job's declared files by kind and shard, checking that each exists and that
        every kind covers the shards of the frames with all its files."""
        # lists first: the arguments may be iterators, and they are read twice (checked, grouped)
        kinds = {kind: [Path(p) for p in paths] for kind, paths in kinds.items()}
        failures = [Path(p) for p in failures]
        every = [Path(manifest), *(p for ps in kinds.values() for p in ps), *failures]
        require(every)  # missing or damaged: one line naming the file and its rebuild
        unknown = sorted(set(kinds) - set(KINDS))
        if unknown:
            raise ValueError(f"unknown input kind(s) {unknown}; expected {sorted(KINDS)}")
        files: dict[str, dict[str, dict[str, Path]]] = {}
        for kind, paths in kinds.items():
            grouped: dict[str, dict[str, Path]] = {}
            for p in map(Path, paths):
                suffix = next((s for s in KINDS[kind][1] if shard_file_regex(s).match(p.name)), None)
                if suffix is None:
                    raise ValueError(f"{p}: not a {kind} shard file (shard-NNN{' or '.join(KINDS[kind][1])})")
                shard = shard_file_regex(suffix).match(p.name).group(1)  # type: ignore[union-attr]
                grouped.setdefault(shard, {})[suffix] = p
            if grouped:
                files[kind] = grouped
        shards = sorted(files.get("frames", {}), key=lambda s: (int(s), s))
        if not shards:
            raise ValueError(f"{dataset}: no frames shards among the declared inputs")
        for kind, grouped in files.items():
            for shard in shards:
                lacking = [s for s in KINDS[kind][1] if s not in grouped.get(shard, {})]
                if lacking:
                    raise ValueError(f"{dataset}: {kind} of shard {shard} not declared "
                                     f"(shard-{shard}{', '.join(lacking)})")
        stage_of = {kind: stage for kind, (stage, _) in KINDS.items()}
        order = list(KINDS)
        fails = sorted(((stage_of.get(Path(p).parent.name, Path(p).parent.name), Path(p)) for p in failures),
                       key=lambda sp: (order.index(sp[1].parent.name) if sp[1].parent.name in order else 99,
                                       str(sp[1])))
        return cls(dataset, Path(manifest), shards, files, fails)

    @classmethod
    def from_results(cls, results: str | Path, dataset: str, needs: Needs,
                     shards: Sequence[str] | None = None) -> DataInputs:
        """The files :func:`declared_files` names for a results folder (library callers,
        tests, benchmarks). Shards default to the synced shard manifests; captions, which are
        optional, are left out when a shard has none (the rules always declare them)."""
        if shards is None:
            folder = manifest_file(results, dataset).parent
            shards = shards_in(folder, PARQUET)
            if not shards:
                raise FileNotFoundError(f"no shard manifests under {folder}; run the manifest stage first")
        if needs.captions and not all(shard_file(results, dataset, "captions", s, PARQUET).exists()
                                      for s in shards):
            needs = dataclasses.replace(needs, captions=False)
        declared = declared_files(results, dataset, list(shards), needs)
        failures = [p for p in declared.pop("failures") if Path(p).exists()]
        manifest = declared.pop("manifest")[0]
        return cls.from_files(dataset, manifest, {k: v for k, v in declared.items() if v}, failures)
