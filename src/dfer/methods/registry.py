"""The method registry: ``model.method`` selects what a run builds, reads, samples and optimises.

Modelled on timm's registry (``timm/models/_registry.py``, ``_factory.py``): every method's
registration module (:mod:`dfer.methods.specs`, one file per method) registers its build
entrypoint with :func:`register_method` and carries its own defaults; one factory
(:func:`build_model`), one parser (:func:`parse_model_block`) and one listing
(:func:`list_methods`) serve all of them, and adding a method touches only its own files (its
registration module here, its ``nn.Module`` beside it). The trainer, evaluation, ``dfer
predict``, the gallery and the report ask the registry, never a method class.

Unlike timm's, a registration module must import no torch: the Snakefile asks the registry
which artifacts a run reads (:attr:`MethodSpec.needs`) while it is parsed, on every cluster
job too. So a registration names its config class and its model class by import path
(``"dfer.methods.dferclip:DFERCLIPConfig"``), imported only when a config is parsed or a model
built; a method whose config is torch-free (FineCLIPER's) defines it in the registration module.

What a :class:`MethodSpec` declares, and who reads it:

- ``build(cfg, labels)`` (the decorated function), ``config``, ``model``: :func:`build_model`;
- ``needs(block)``: which artifacts a run reads (``dfer.train.inputs.needs_for``: the rules'
  declared inputs, the default target's stages, the clip table);
- ``prediction_needs(cfg)``: what scoring a clip needs (evaluation, ``dfer predict``);
- ``inputs``: the batch keys its forward takes; ``pixels``: its pixel normalisation (the model
  applies it; declared for the docs, the listing and the tests);
- ``data`` / ``optim`` / ``trainer``: its defaults for the run's blocks (frame sampler,
  augmentation, optimiser, learning rates per parameter group, stage schedule, precision:
  :mod:`dfer.train.sampling`, :mod:`dfer.train.optim`); a run's own keys win, key by key;
- ``checkpoint``: ``tunable`` (the frozen backbone is re-created from its source) or ``full``
  (the whole state dict: the method tunes its backbone);
- ``zero_shot``: whether it can score classes it was not trained on (a text side that takes
  class names); ``test_views``: its default test-time views;
- ``groups(model)``: its parameter groups, the names the ``optim`` block's stages and learning
  rates refer to; ``enter_stage(model, stage, alone)``: what the model itself does when an
  optimiser stage starts (A3lign-DFER: its BAP stage's video feature), after the trainer has
  switched the groups' gradients; ``check_run(run_config)``: what it refuses in a run's blocks
  (A3lign-DFER: an optimiser stage that is not one of its BAP stages); ``shares_batch``: its forward / losses take a :class:`BatchShare` themselves
  (else the trainer gathers the per-clip ``loss_fields`` of the global batch under DDP);
  ``on_epoch(model, epoch)``: told the epoch at the start of each training epoch.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: the method a ``model`` block without ``method`` means (every run written before the registry)
DEFAULT_METHOD = "fineclipper"

#: pixel normalisations a method may declare
PIXELS = ("clip", "unit", "imagenet")
#: checkpoint policies
CHECKPOINT_POLICIES = ("tunable", "full")


def _import(ref: str) -> Any:
    """``"package.module:Name"`` -> the object."""
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def _default_groups(model: Any) -> dict[str, list[Any]]:
    return dict(model.parameter_groups())


def _frames_only(block: Mapping[str, Any]) -> Any:
    """The default ``needs``: frames only, no landmarks, parsing maps or captions."""
    from dfer.train.inputs import Needs  # torch-free

    return Needs()


@dataclass(frozen=True)
class MethodSpec:
    """One registered method (see the module docstring for who reads which field)."""

    name: str
    title: str
    #: where it comes from: paper and public code (shown by ``dfer compare`` and the docs)
    source: str
    build: Callable[..., Any]
    #: ``module:Class`` of its config dataclass (``from_dict`` / ``to_dict`` / ``validate``)
    config: str
    #: ``module:Class`` of the ``nn.Module`` that ``build`` returns
    model: str
    #: artifacts a run reads, from its raw ``model`` block (``method`` removed); torch-free
    needs: Callable[[Mapping[str, Any]], Any] = _frames_only
    #: ``(Needs, optional_captions)`` of scoring a clip, from the parsed config
    prediction_needs: Callable[[Any], tuple[Any, bool]] | None = None
    inputs: tuple[str, ...] = ("frames",)
    pixels: str = "clip"
    data: Mapping[str, Any] = field(default_factory=dict)
    optim: Mapping[str, Any] = field(default_factory=dict)
    trainer: Mapping[str, Any] = field(default_factory=dict)
    checkpoint: str = "tunable"
    zero_shot: bool = False
    test_views: tuple[str, ...] = ("identity",)
    groups: Callable[[Any], dict[str, list[Any]]] = _default_groups
    #: called as each optimiser stage starts, ``(model, StageConfig, alone)`` (``alone``: one
    #: training process); None: the stage changes only the optimiser and the gradients
    enter_stage: Callable[[Any, Any, bool], None] | None = None
    #: refuses a parsed run config (``RunConfig``) the method cannot train, before any job runs
    #: (the config check, ``RunConfig.from_dict``); None: nothing beyond its config class's checks
    check_run: Callable[[Any], None] | None = None
    shares_batch: bool = False
    #: per-clip fields of the forward output its loss reads (gathered under DDP)
    loss_fields: tuple[str, ...] = ("logits",)
    #: per-clip class loss ``[B]`` of ``(model, out, targets)`` (the validation loss); None:
    #: cross-entropy of the logits
    clip_loss: Callable[[Any, Any, Any], Any] | None = None
    #: values logged once per training epoch besides the losses, ``(model, out) -> {name: tensor}``
    extras: Callable[[Any, Any], dict[str, Any]] | None = None
    #: tunable parameter counts by part, ``model -> {part: count}`` (train.json, the report);
    #: None: per parameter group, plus ``tunable_total`` and ``frozen``
    counts: Callable[[Any], dict[str, int]] | None = None
    #: called with ``(model, 0-based epoch)`` at the start of every training epoch, for a loss
    #: that depends on the epoch (S2D's SDL weight); None: nothing
    on_epoch: Callable[[Any, int], None] | None = None

    def __post_init__(self) -> None:
        if self.pixels not in PIXELS:
            raise ValueError(f"method {self.name}: pixels must be one of {PIXELS}, got {self.pixels!r}")
        if self.checkpoint not in CHECKPOINT_POLICIES:
            raise ValueError(f"method {self.name}: checkpoint must be one of {CHECKPOINT_POLICIES}")

    def config_class(self) -> type:
        return _import(self.config)

    def model_class(self) -> type:
        return _import(self.model)

    def parse(self, block: Mapping[str, Any] | None) -> Any:
        """The method's config from a ``model`` block without ``method`` (its keys checked)."""
        try:
            return self.config_class().from_dict(dict(block or {}))
        except (TypeError, ValueError) as exc:
            text = str(exc)
            # name the block for the config check (dfer.config_check._run_key looks for it)
            raise type(exc)(text if text.startswith("model") else f"model (method {self.name}): {text}") from exc

    def is_config(self, cfg: Any) -> bool:
        """Whether ``cfg`` is an instance of this method's config class (no import needed)."""
        return f"{type(cfg).__module__}:{type(cfg).__qualname__}" == self.config

    def is_model(self, model: Any) -> bool:
        return any(f"{c.__module__}:{c.__qualname__}" == self.model for c in type(model).__mro__)


_METHODS: dict[str, MethodSpec] = {}
_LOADED = False


def register_method(**fields: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator of a method's build entrypoint ``build(cfg, labels) -> nn.Module``: registers a
    :class:`MethodSpec` with ``fields`` (timm's ``@register_model``, with the defaults given
    here instead of a separate ``default_cfgs`` table)."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        spec = MethodSpec(build=fn, **fields)
        if spec.name in _METHODS and _METHODS[spec.name].build is not fn:
            raise ValueError(f"method {spec.name!r} is registered twice "
                             f"({_METHODS[spec.name].build.__module__} and {fn.__module__})")
        _METHODS[spec.name] = spec
        return fn

    return decorate


def _load() -> None:
    """Import every registration module of :mod:`dfer.methods.specs` (torch-free)."""
    global _LOADED
    if _LOADED:
        return
    from dfer.methods import specs

    for info in sorted(pkgutil.iter_modules(specs.__path__), key=lambda m: m.name):
        importlib.import_module(f"{specs.__name__}.{info.name}")
    _LOADED = True


def list_methods() -> list[str]:
    """Registered method names, sorted."""
    _load()
    return sorted(_METHODS)


def get_method(name: str) -> MethodSpec:
    """The spec of ``name``; an error listing the registered ones otherwise."""
    _load()
    if name not in _METHODS:
        raise ValueError(f"model.method {name!r} is not a registered method (known: {', '.join(sorted(_METHODS))})")
    return _METHODS[name]


def split_model_block(block: Mapping[str, Any] | None) -> tuple[MethodSpec, dict[str, Any]]:
    """``(spec, the block without method)`` of a run's raw ``model`` block."""
    rest = dict(block or {})
    name = rest.pop("method", DEFAULT_METHOD)
    if not isinstance(name, str):
        raise ValueError(f"model.method must be a string, got {name!r}")
    return get_method(name), rest


def parse_model_block(block: Mapping[str, Any] | None) -> tuple[MethodSpec, Any]:
    """``(spec, config)`` of a run's raw ``model`` block (unknown keys refused)."""
    spec, rest = split_model_block(block)
    return spec, spec.parse(rest)


def spec_of_config(cfg: Any) -> MethodSpec:
    """The method whose config class ``cfg`` is an instance of."""
    _load()
    for spec in _METHODS.values():
        if spec.is_config(cfg):
            return spec
    raise ValueError(f"{type(cfg).__name__} is not the config of a registered method")


def spec_of_model(model: Any) -> MethodSpec:
    """The method that builds models of ``model``'s class."""
    _load()
    for spec in _METHODS.values():
        if spec.is_model(model):
            return spec
    raise ValueError(f"{type(model).__name__} is not the model of a registered method")


def build_model(method: str | MethodSpec, cfg: Any, labels: Sequence[str], **parts: Any) -> Any:
    """The one factory: the method's model for ``cfg`` (its config, or a ``model`` block
    without ``method``) and class names ``labels``. ``parts`` reach the method's constructor
    (a CLIP-based method takes an already built ``clip`` and ``tokenizer``: tests share one,
    parameter counts use one on PyTorch's meta device)."""
    spec = method if isinstance(method, MethodSpec) else get_method(method)
    if isinstance(cfg, Mapping):
        block = dict(cfg)
        named = block.pop("method", spec.name)
        if named != spec.name:
            raise ValueError(f"a model block of method {named!r} given to build {spec.name!r}")
        cfg = spec.parse(block)
    elif not spec.is_config(cfg):
        raise ValueError(f"{type(cfg).__name__} is not the config of method {spec.name!r}")
    return spec.build(cfg, list(labels), **parts)
