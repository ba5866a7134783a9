"""A training run's settings, parsed from the run's JSON ``--params``: every block's
dataclass lives here, so one file says what a run can set.

A run (``train.runs.<name>`` in config.yaml) has a ``model`` block (``model.method`` picks
the method, default ``fineclipper``; the other keys are that method's config, checked by the
method registry), a ``data`` block (:class:`DataConfig`), ``optim`` (:class:`OptimConfig`) and
``trainer`` blocks, and bookkeeping keys (``dataset``, ``folds``, ``kind``, ``source``,
``eval``) used by the workflow. The ``data``, ``optim`` and ``trainer`` keys a run leaves out
take its method's defaults (:attr:`dfer.methods.registry.MethodSpec.data` etc.), then the
dataclasses' own (FineCLIPER's).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from dfer.core.devices import resolve_device
from dfer.core.strict_config import from_mapping
from dfer.methods.registry import MethodSpec, get_method, parse_model_block
from dfer.train.sampling import CROP_RULES, RANDOM_SAMPLERS, SAMPLERS, TEST_VIEWS
from dfer.train.shard_reader import DEFAULT_MAX_OPEN

_BOOKKEEPING = {"dataset", "datasets", "folds", "kind", "source", "eval", "device", "description"}


def _strict(cls: type, data: Mapping[str, Any] | None, where: str) -> Any:
    return from_mapping(cls, data, f"{where} key")


@dataclass
class DataConfig:
    """How clips are fed to the model."""

    num_frames: int | None = None  # frames per clip (uniform subsample); None = all stored
    mid_frames: int | None = None  # frames for parsing / landmark images; None = num_frames
    image_size: int | None = None  # resize to this; None = the backbone's input size
    batch_size: int = 8
    eval_batch_size: int | None = None
    num_workers: int = 2
    flip: bool = True  # random horizontal flip while training
    #: training only: a random stored frame inside each of the ``num_frames`` equal segments
    #: instead of the evenly spaced ones (evaluation keeps those). The paper is silent: off.
    #: Needs more stored frames than ``num_frames`` (decode ``num_frames``) to have an effect.
    temporal_jitter: bool = False
    #: landmark dots and outlines drawn on the face frame (paper) instead of on black
    landmarks_on_face: bool = True
    #: shards of each kind (frames / parsing handles, landmark points, captions) kept open per
    #: process (LRU); bounds the memory of a pass over the data, whatever the dataset size
    max_open_shards: int = DEFAULT_MAX_OPEN
    #: a fold whose training set has a class with no clips, or a class that lost more than
    #: ``max_class_loss`` of its training clips in the preprocessing stages: ``error`` refuses
    #: to train (naming the classes and the stages that dropped them), ``warn`` trains anyway
    class_loss: Literal["error", "warn"] = "error"
    max_class_loss: float = 0.5
    #: clips decoded from one source frame (the frame repeated ``T`` times): ``keep`` (trained
    #: and scored, counted in the logs and the report) or ``drop`` (lost at decode, counted so)
    one_frame_clips: Literal["keep", "drop"] = "keep"
    #: evaluation: a test clip that cannot be scored (no frames after a failed decode, or
    #: another artifact the model reads at prediction missing) counts as a wrong prediction
    #: (``wrong``: metrics over the whole official test split, as published figures are) or is
    #: left out (``exclude``: metrics over the scored clips). metrics.json holds both.
    unscored_clips: Literal["wrong", "exclude"] = "wrong"
    # --- frame samplers and augmentation (dfer.train.sampling; defaults: the method's) ----------
    #: how training picks ``num_frames`` of the stored frames: ``uniform``, ``jitter``,
    #: ``segment_random`` (DFER-CLIP), ``window_random`` (consecutive frames, S2D-style);
    #: None = ``jitter`` with ``temporal_jitter``, else ``uniform``
    train_sampler: str | None = None
    #: how evaluation and ``dfer predict`` pick them: ``uniform``, ``segment_centre`` (DFER-CLIP),
    #: ``window_centre``
    test_sampler: str = "uniform"
    #: colour jitter of the face frames while training (torchvision ``ColorJitter`` ranges)
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0
    rotation: float = 0.0  #: random rotation while training, degrees either way
    #: random resized crop while training: the share of the frame's area (null: no crop), the
    #: aspect ratio range, and whose rule draws the box (``group``: DFER-CLIP's, ``torchvision``)
    crop_scale: list[float] | None = None
    crop_ratio: list[float] = field(default_factory=lambda: [3 / 4, 4 / 3])
    crop_rule: str = "group"
    #: test-time views whose probabilities are averaged: ``identity``, ``hflip`` (frames only)
    test_views: list[str] = field(default_factory=lambda: ["identity"])

    @property
    def train_frames(self) -> str:
        """The training frame sampler (``train_sampler``, resolved)."""
        if self.train_sampler is not None:
            return self.train_sampler
        return "jitter" if self.temporal_jitter else "uniform"

    @property
    def augments(self) -> bool:
        """Whether any augmentation beyond the flip is on."""
        return bool(self.brightness or self.contrast or self.saturation or self.hue or self.rotation
                    or self.crop_scale is not None)

    @classmethod
    def for_method(cls, method: str | MethodSpec, data: Mapping[str, Any] | None,
                   overrides: Mapping[str, Any] | None = None) -> DataConfig:
        """A run's data block over its method's defaults (evaluation and ``dfer predict`` read
        the block a checkpoint stored the same way training did), then ``overrides``."""
        spec = method if isinstance(method, MethodSpec) else get_method(method)
        return cls.from_dict({**dict(spec.data), **dict(data or {}), **dict(overrides or {})})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> DataConfig:
        cfg = from_mapping(cls, data, "data config key")
        cfg._check_sampling()
        if cfg.class_loss not in ("error", "warn"):
            raise ValueError(f"data.class_loss must be 'error' or 'warn', got {cfg.class_loss!r}")
        if not 0 <= cfg.max_class_loss <= 1:
            raise ValueError(f"data.max_class_loss must be a share in 0..1, got {cfg.max_class_loss}")
        if cfg.one_frame_clips not in ("keep", "drop"):
            raise ValueError(f"data.one_frame_clips must be 'keep' or 'drop', got {cfg.one_frame_clips!r}")
        if cfg.unscored_clips not in ("wrong", "exclude"):
            raise ValueError(f"data.unscored_clips must be 'wrong' or 'exclude', got {cfg.unscored_clips!r}")
        if int(cfg.max_open_shards) < 1:
            raise ValueError(f"data.max_open_shards must be >= 1, got {cfg.max_open_shards}")
        return cfg

    def _check_sampling(self) -> None:
        """Refuse an unknown sampler, a random test sampler, bad ranges, naming the key."""
        if self.train_sampler is not None and self.train_sampler not in SAMPLERS:
            raise ValueError(f"data.train_sampler must be one of {list(SAMPLERS)}, got {self.train_sampler!r}")
        if self.temporal_jitter and self.train_sampler not in (None, "jitter"):
            raise ValueError(f"data.temporal_jitter: true asks for the jitter sampler but data.train_sampler "
                             f"is {self.train_sampler!r}; set one of them")
        if self.test_sampler not in SAMPLERS or self.test_sampler in RANDOM_SAMPLERS:
            allowed = [s for s in SAMPLERS if s not in RANDOM_SAMPLERS]
            raise ValueError(f"data.test_sampler must be one of {allowed} (evaluation draws nothing at "
                             f"random), got {self.test_sampler!r}")
        for key in ("brightness", "contrast", "saturation", "rotation"):
            if float(getattr(self, key)) < 0:
                raise ValueError(f"data.{key} must be >= 0, got {getattr(self, key)}")
        if not 0 <= float(self.hue) <= 0.5:
            raise ValueError(f"data.hue must be in 0..0.5, got {self.hue}")
        scale = self.crop_scale
        if scale is not None and (len(scale) != 2 or not 0 < float(scale[0]) <= float(scale[1]) <= 1):
            raise ValueError(f"data.crop_scale must be [low, high] with 0 < low <= high <= 1, got {scale}")
        if len(self.crop_ratio) != 2 or not 0 < float(self.crop_ratio[0]) <= float(self.crop_ratio[1]):
            raise ValueError(f"data.crop_ratio must be [low, high] with 0 < low <= high, got {self.crop_ratio}")
        if self.crop_rule not in CROP_RULES:
            raise ValueError(f"data.crop_rule must be one of {list(CROP_RULES)}, got {self.crop_rule!r}")
        bad = [v for v in self.test_views if v not in TEST_VIEWS]
        if not self.test_views or bad:
            raise ValueError(f"data.test_views must be a non-empty list of {list(TEST_VIEWS)}, got {self.test_views}")


@dataclass
class StageConfig:
    """One optimiser stage: which parameter groups train, with which optimiser and schedule.

    The top-level keys of a run's ``optim`` block are its single stage (FineCLIPER: AdamW over
    every tunable parameter, linear warm-up then cosine decay per step); ``optim.stages`` lists
    several (CLIPER: the descriptors first, then a new optimiser on the image tower), each
    overriding the top-level keys for its ``epochs``. dfer.train.optim builds them.
    """

    #: epochs of this stage; None: to the end of training (the last stage only)
    epochs: int | None = None
    #: the method's parameter groups (``MethodSpec.groups``) this stage trains; None: every group
    groups: list[str] | None = None
    optimizer: str = "adamw"  #: ``adamw`` | ``sgd``
    lr: float = 1e-3
    #: learning rate per parameter group (others: ``lr``); DFER-CLIP's three rates
    group_lr: dict[str, float] | None = None
    weight_decay: float = 0.05
    #: weight decay on 1-d parameters (biases, norms) too; FineCLIPER exempts them (false)
    decay_1d: bool = False
    momentum: float = 0.9  #: SGD only
    eps: float = 1e-8  #: AdamW only
    #: ``warmup_cosine`` (per step: linear warm-up over ``warmup_fraction`` of the stage's
    #: steps, then cosine to ``min_lr_ratio``), ``multistep`` (per epoch: x ``gamma`` at each
    #: of ``milestones``, counted from the stage's start), ``cosine_restarts`` (per epoch:
    #: ``CosineAnnealingWarmRestarts(t0, t_mult, eta_min)``) or ``constant``
    schedule: str = "warmup_cosine"
    warmup_fraction: float = 0.1
    min_lr_ratio: float = 0.01
    milestones: list[int] = field(default_factory=lambda: [30, 40])
    gamma: float = 0.1
    t0: int = 10
    t_mult: int = 1
    eta_min: float = 0.0

    def check(self, where: str = "optim") -> StageConfig:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"{where}.optimizer must be one of {list(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"{where}.schedule must be one of {list(SCHEDULES)}, got {self.schedule!r}")
        if self.epochs is not None and int(self.epochs) < 1:
            raise ValueError(f"{where}.epochs must be >= 1 (or null: to the end), got {self.epochs}")
        if self.groups is not None and not self.groups:
            raise ValueError(f"{where}.groups must name at least one parameter group (null: all)")
        if self.t0 < 1 or self.t_mult < 1:
            raise ValueError(f"{where}.t0 and t_mult must be >= 1")
        return self


OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("warmup_cosine", "multistep", "cosine_restarts", "constant")
_STAGE_KEYS = {f.name for f in dataclasses.fields(StageConfig)}


@dataclass
class OptimConfig(StageConfig):
    """The ``optim`` block: one stage (its own keys) or ``stages``, each a mapping of
    :class:`StageConfig` keys over the block's own."""

    stages: list[dict[str, Any]] | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> OptimConfig:
        cfg = from_mapping(cls, data, "optim config key")
        cfg.resolved_stages()  # checks every stage now, before any job runs
        return cfg

    def resolved_stages(self) -> list[StageConfig]:
        """The stages in order, each a complete :class:`StageConfig`; the last one runs to the
        end of training (its ``epochs`` is ignored)."""
        base = {k: getattr(self, k) for k in _STAGE_KEYS}
        if not self.stages:
            return [StageConfig(**{**base, "epochs": None}).check()]
        out = []
        for i, stage in enumerate(self.stages):
            where = f"optim.stages[{i}]"
            if not isinstance(stage, Mapping):
                raise ValueError(f"{where} must be a mapping of optim keys, got {stage!r}")
            unknown = sorted(set(stage) - _STAGE_KEYS)
            if unknown:
                raise ValueError(f"unknown {where} key(s) {unknown}; known: {', '.join(sorted(_STAGE_KEYS))}")
            last = i == len(self.stages) - 1
            parsed = from_mapping(StageConfig, {**base, "epochs": None, **stage}, f"{where} key").check(where)
            if not last and parsed.epochs is None:
                raise ValueError(f"{where}.epochs is needed: only the last stage runs to the end")
            out.append(parsed)
        return out


#: The strategies a run may name: ``auto`` (one process, or DDP when ``devices`` x ``num_nodes``
#: is more than 1) and ``ddp`` (Lightning's DDP, one process per device, started by Lightning on
#: one machine or by ``srun`` / ``torchrun`` across nodes). Spawn / fork variants are left out:
#: they pickle the data module (memory-mapped shards, a side store on local disk).
STRATEGIES = ("auto", "ddp")


@dataclass
class TrainerConfig:
    max_epochs: int = 10
    seed: int = 0
    precision: str = "auto"  # auto: bf16-mixed / 16-mixed on any GPU, 32-true on CPU
    accelerator: str = "auto"  # auto | cpu | gpu
    gradient_clip_val: float | None = 1.0
    accumulate_grad_batches: int = 1
    log_every_n_steps: int = 10
    check_val_every_n_epoch: int = 1  # 0 = never validate during training
    limit_train_batches: int | float | None = None
    deterministic: bool = True
    #: where the run trains, not what it computes (RUN_EXECUTION_KEYS): processes per node (one per
    #: GPU, or CPU processes with ``accelerator: cpu``), the strategy, and nodes. Batches are
    #: global: ``data.batch_size`` clips per optimizer step however many processes share them.
    devices: int = 1
    strategy: str = "auto"
    num_nodes: int = 1

    def __post_init__(self) -> None:
        for key in ("devices", "num_nodes"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"trainer.{key} must be a whole number >= 1, got {value!r}")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"trainer.strategy must be one of {list(STRATEGIES)}, got {self.strategy!r}")
        if self.accelerator not in ("auto", "cpu", "gpu", "cuda"):
            raise ValueError(f"trainer.accelerator must be auto, cpu or gpu, got {self.accelerator!r}")

    @property
    def world_size(self) -> int:
        """Processes that train together: ``devices`` on each of ``num_nodes`` nodes."""
        return self.devices * self.num_nodes


@dataclass
class RunConfig:
    #: the method's config (FineCLIPER's ``ModelConfig``, ``DFERCLIPConfig``, ...)
    model: Any = None
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    device: str = "auto"  # auto | cpu | cuda: where training / evaluation runs
    raw: dict[str, Any] = field(default_factory=dict)
    #: ``model.method`` (the registry's name)
    method: str = "fineclipper"

    def __post_init__(self) -> None:
        if self.model is None:
            self.model = get_method(self.method).parse({})

    @property
    def spec(self) -> MethodSpec:
        """The run's method (dfer.methods.registry)."""
        return get_method(self.method)

    @classmethod
    def from_dict(cls, params: Mapping[str, Any] | None) -> RunConfig:
        params = dict(params or {})
        unknown = sorted(set(params) - {"model", "data", "optim", "trainer"} - _BOOKKEEPING)
        if unknown:
            raise ValueError(
                f"unknown run key(s) {unknown}; expected model, data, optim, trainer, "
                f"{', '.join(sorted(_BOOKKEEPING))}"
            )
        spec, model = parse_model_block(params.get("model"))
        return cls(
            model=model,
            data=DataConfig.for_method(spec, params.get("data")),
            optim=OptimConfig.from_dict({**dict(spec.optim), **dict(params.get("optim") or {})}),
            trainer=_strict(TrainerConfig, {**dict(spec.trainer), **dict(params.get("trainer") or {})}, "trainer"),
            device=str(params.get("device", "auto")),
            raw=params,
            method=spec.name,
        )._checked()

    def _checked(self) -> RunConfig:
        """Refuse a device setting that contradicts the process count, and what the method
        itself cannot train (``MethodSpec.check_run``), before any job runs."""
        if self.spec.check_run is not None:
            self.spec.check_run(self)
        if self.device.startswith("cuda:") and self.trainer.world_size > 1:
            raise ValueError(
                f"device {self.device!r} pins one GPU but trainer.devices x trainer.num_nodes is "
                f"{self.trainer.world_size}; use device: cuda (or auto) and let the job's "
                "CUDA_VISIBLE_DEVICES say which GPUs")
        if "hflip" in self.data.test_views:
            from dfer.train.inputs import needs_for

            needs = needs_for(self.model)
            if needs.landmarks or needs.parsing or needs.landmark_features:
                # refused here, before any fold trains, not by the evaluation job after training
                raise ValueError(
                    "data.test_views hflip mirrors the frames only, and this model also reads "
                    "rendered landmarks, parsing maps or landmark feature maps (they would stay "
                    "unmirrored); use test_views: [identity] (FineCLIPER: or switch the middle "
                    "levels off, model.use_landmarks / use_parsing: false)")
        return self

    def resolved_device(self) -> str:
        return resolve_device(self.device if self.trainer.accelerator == "auto" else
                              {"gpu": "cuda", "cuda": "cuda"}.get(self.trainer.accelerator, "cpu"))

    def resolved_precision(self) -> str:
        """``trainer.precision``, or for ``auto`` what evaluation uses on the same device: any
        GPU (``cuda`` or ``cuda:N``) trains in mixed precision, the CPU in float32."""
        if self.trainer.precision != "auto":
            return self.trainer.precision
        return auto_precision(self.resolved_device())


def auto_precision(device: str) -> str:
    """Lightning precision for ``auto`` (training and evaluation alike): bf16 (or fp16) mixed
    precision on a GPU, full float32 on the CPU, where exact repeats are checked."""
    if device.startswith("cuda"):
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


def lightning_devices(device: str, devices: int = 1) -> tuple[str, int | list[int]]:
    """Lightning's ``(accelerator, devices)`` for a resolved device and a process count.

    ``cuda:N`` is the N-th visible GPU (Lightning reads ``devices=1`` as "the first GPU", so
    the index must be passed as a list); ``cuda`` / ``cpu`` take ``devices`` processes, on the
    GPUs the job can see (``CUDA_VISIBLE_DEVICES``, set per job by the workflow).
    """
    if device.startswith("cuda:"):
        if devices != 1:
            raise ValueError(f"device {device!r} pins one GPU; it cannot run {devices} processes")
        return "gpu", [int(device.split(":", 1)[1])]
    return ("gpu" if device.startswith("cuda") else "cpu"), devices


def result_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """A run's params without the keys that decide where or how fast it trains or how its
    folds are scored (:data:`dfer.train.execution.RUN_EXECUTION_KEYS` and ``RUN_SCORING_KEYS``):
    what a fold's training result depends on. Changing one must not change the result beyond
    floating-point reduction order: ``devices`` / ``num_nodes`` split each global batch over
    processes and gather what is computed over the batch (dfer.train.distributed); workers, open
    shards and the validation batch size only change speed and memory. One list serves the
    workflow's params (docs/cluster.md) and the resume digest (dfer.train.resume), so a fold
    resumes across exactly the changes that re-run nothing."""
    from dfer.train.execution import without_execution_keys

    return without_execution_keys(params)
