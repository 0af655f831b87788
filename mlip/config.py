"""The training configuration: one typed, validated schema of the YAML file given to ``mlip-train``.

Every section is a dataclass; :func:`load_config` reads YAML, applies dotted command-line overrides
(``train.lr=0.005``), and validates every key against the dataclasses. Any problem (unknown key, wrong
type, missing file, bad choice) raises :class:`mlip.errors.ConfigError` with one line naming the dotted
key path and, for near misses, a suggestion. Relative file paths are resolved against the current
working directory. See docs/config.md for every key with its default.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import yaml

from mlip.config_coerce import build_section, hints_of, register_hints
from mlip.config_ranges import check_model_section, check_ranges, check_tea_finetune, normalise_e0s
from mlip.errors import ConfigError
from mlip.files import atomic_write_text
from mlip.nn.hparams import ModelHyperparameters

#: Fields of :class:`ModelHyperparameters` filled from training-set statistics, not from the config.
DATA_DERIVED_MODEL_FIELDS = ("atomic_numbers", "heads", "atomic_energies", "scale", "shift", "avg_num_neighbors")

_FILE = {"file": True}


def _files(default: Any = None) -> Any:
    """A field holding one file path or a list of file paths (checked to exist)."""
    if default is None:
        return field(default=None, metadata=_FILE)
    return field(default_factory=lambda: list(default), metadata=_FILE)


@dataclass
class TeaConfig:
    """Total Energy Alignment of one data set onto the target level (docs/multifidelity.md).

    Applied to every frame the head reads (train, valid, test, isolated atoms) before statistics."""

    source_atoms: str | dict[str, float] | None = None
    """Isolated-atom energies of the data's level: a file of single-atom frames, a JSON file, an inline
    ``H=-13.6,C=-1026.9`` string or a mapping."""
    target_atoms: str | dict[str, float] | None = None
    """Isolated-atom energies of the target level (same forms)."""
    scale: float | None = None
    """AEC scale a; ``1`` is ICEA. Fitted on ``pairs`` when null."""
    pairs: list[str] | None = None
    """Two files ``[source, target]`` with the same geometries at both levels (``file@:50`` selects frames)."""
    keep_forces: bool = False
    """Scale only the energies; keep forces and stress as computed."""


@dataclass
class HeadConfig:
    """One output head: its own files, label keys, E0s and loss weight.

    Keys left ``None`` inherit the value of the ``data`` section.
    """

    train: list[str] | None = _files()
    valid: list[str] | None = _files()
    valid_fraction: float | None = None
    test: list[str] | None = _files()
    energy_key: str | None = None
    forces_key: str | None = None
    stress_key: str | None = None
    virials_key: str | None = None
    e0s: str | dict[str, float] | None = None
    isolated_atoms: str | None = field(default=None, metadata=_FILE)
    weight: float = 1.0
    """Multiplies the loss of every frame of this head."""
    config_type_weights: dict[str, float] = field(default_factory=dict)
    tea: TeaConfig | None = None
    """Align this head's labels onto the target level (TEA/ICEA) as they are read."""
    head: str | None = None
    """Model head this data set is mapped to (default: its own name). Data sets mapped to one head are
    merged: the E0s, keys and statistics of the first of them apply, and each set's ``weight`` multiplies
    its frames' weights."""


@dataclass
class DataConfig:
    """Input files, label keys, heads, splits and E0s."""

    train: list[str] | None = _files()
    """Training file(s) (extended XYZ or anything ASE reads)."""
    valid: list[str] | None = _files()
    """Validation file(s); if absent, ``valid_fraction`` of the training frames are held out."""
    valid_fraction: float = 0.1
    test: list[str] = _files([])
    energy_key: str = "energy"
    forces_key: str = "forces"
    stress_key: str = "stress"
    virials_key: str = "virials"
    e0s: str | dict[str, float] = "fit"
    """``isolated`` (from ``isolated_atoms``), ``fit`` (least squares on the training energies; ``average``
    is mace-torch's name for the same fit), a path to an isolated-atoms structure file (same as
    ``isolated`` with that file), a path to a JSON/YAML mapping, or a mapping ``{element symbol or Z: eV}``."""
    isolated_atoms: str | None = field(default=None, metadata=_FILE)
    config_type_weights: dict[str, float] = field(default_factory=dict)
    heads: dict[str, HeadConfig] = field(default_factory=dict)
    """Multi-head training; empty means one head named ``Default`` built from the keys above."""
    split_seed: int | None = None
    """Seed of the random validation split (default: the top-level ``seed``)."""
    num_workers: int = 0
    """DataLoader worker processes for on-disk (``.h5``, from ``mlip-preprocess``) training data."""
    tea: TeaConfig | None = None
    """TEA block of the single ``Default`` head (with ``heads``, give it per head)."""


TRAINING_MODEL_DEFAULTS: dict[str, Any] = {"interaction_first": "plain"}
"""Where a new model's default differs from :class:`ModelHyperparameters`' (the defaults a model file
missing a field loads with, kept unchanged so that old files give the same outputs): the measured
recipe (docs/config.md, "Defaults")."""


def _model_section() -> type:
    """Dataclass with the architecture fields of :class:`ModelHyperparameters` plus ``scaling`` and
    ``shifting`` (how the data-derived per-head scale and shift are computed)."""
    hints = typing.get_type_hints(ModelHyperparameters)
    spec: list[tuple[str, Any, Any]] = []
    for f in fields(ModelHyperparameters):
        if f.name in DATA_DERIVED_MODEL_FIELDS:
            continue
        if f.name in TRAINING_MODEL_DEFAULTS:
            spec.append((f.name, hints[f.name], field(default=TRAINING_MODEL_DEFAULTS[f.name])))
        elif f.default is not MISSING:
            spec.append((f.name, hints[f.name], field(default=f.default)))
        else:
            spec.append((f.name, hints[f.name], field(default_factory=f.default_factory)))  # type: ignore[arg-type]
    spec.append(("scaling", Literal["rms_forces", "std", "none"], field(default="rms_forces")))
    spec.append(("shifting", Literal["mean", "none"], field(default="none")))
    return dataclasses.make_dataclass("ModelConfig", spec, namespace={"__doc__": "Architecture options."})


ModelConfig = _model_section()


@dataclass
class LossConfig:
    """Loss type and per-property weights (see mlip.train.loss)."""

    type: Literal["mse", "huber", "universal"] = "mse"
    energy_weight: float = 1.0
    forces_weight: float = 100.0
    stress_weight: float | None = None
    """``None``: :data:`AUTO_STRESS_WEIGHT` when any training frame carries stress or virials, else 0."""
    virials_weight: float = 0.0
    huber_delta: float = 0.01

    def resolved_stress_weight(self, data_has_stress: bool) -> float:
        """The stress weight of a run whose training data does (not) carry stress."""
        if self.stress_weight is not None:
            return self.stress_weight
        return AUTO_STRESS_WEIGHT if data_has_stress else 0.0


AUTO_STRESS_WEIGHT = 1000.0
"""Stress weight (eV/A^3 residuals) when ``loss.stress_weight`` is left unset and the data carry stress."""


@dataclass
class OptimiserConfig:
    name: Literal["adam", "adamw"] = "adam"
    amsgrad: bool = True
    weight_decay: float = 5.0e-7
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8


@dataclass
class ScheduleConfig:
    name: Literal["plateau", "exponential", "cosine", "none"] = "plateau"
    factor: float = 0.8
    """plateau: multiply the lr by this on a plateau."""
    patience: int = 50
    """plateau: evaluations without improvement before the lr is reduced."""
    gamma: float = 0.9993
    """exponential: lr multiplier per epoch."""
    min_lr: float = 0.0
    """plateau/cosine: lower bound of the lr."""


@dataclass
class EMAConfig:
    use: bool = True
    decay: float = 0.99


@dataclass
class StageTwoConfig:
    """From ``start_epoch`` on, switch to these loss weights and lr (``None`` keeps the current value).

    ``start_epoch`` >= 1 is an epoch number (1-based); ``-k`` means the last ``k`` epochs of
    ``train.max_epochs``; ``None`` turns stage two off. The defaults are mace-torch's stage-two (SWA)
    weights: energy 1000, forces 100, at lr 0.002.
    """

    start_epoch: int | None = -3
    lr: float | None = 0.002
    energy_weight: float | None = 1000.0
    forces_weight: float | None = None
    stress_weight: float | None = None
    virials_weight: float | None = None

    def first_epoch(self, max_epochs: int) -> int | None:
        """The 1-based epoch stage two starts at, or None (off)."""
        if self.start_epoch is None:
            return None
        return self.start_epoch if self.start_epoch > 0 else max(1, max_epochs + self.start_epoch + 1)


@dataclass
class TrainConfig:
    max_epochs: int = 100
    batch_size: int = 3
    valid_batch_size: int | None = None
    lr: float = 0.02
    max_atoms_per_batch: int | None = None
    max_edges_per_batch: int | None = None
    clip_grad: float | None = 10.0
    patience: int | None = None
    """Early stopping: evaluations without improvement of the validation loss before stopping."""
    eval_interval: int = 1
    on_nonfinite: Literal["stop", "skip"] = "stop"
    progress: bool = True
    """Show a progress bar per epoch."""
    plot: bool = True
    """Write learning_curve.png at the end."""
    compile: bool = False
    """torch.compile the training step (forward, forces/stress by autograd, loss, backward); dynamic shapes."""


@dataclass
class CheckpointConfig:
    interval: int = 1
    """Write a checkpoint every this many epochs (and at the end)."""
    keep: int = 2
    """Number of most recent checkpoints kept on disk."""


@dataclass
class ReplayConfig:
    """Replay set for the pretraining head (multi-head fine-tuning, MACE-MP-0 App. C / MACE-MH-1)."""

    data: list[str] | None = _files()
    """Pretraining data file(s) the replay frames are drawn from (labels of the pretraining level)."""
    selection: Literal["random", "elements", "fps"] = "elements"
    """``random`` (any frame), ``elements`` (frames sharing >= 2 elements with the new data, then random),
    ``fps`` (element filter, then farthest-point sampling on the pretrained model's descriptors)."""
    size: int | None = None
    """Requested number of replay frames (null: as many as the ratio guard allows)."""
    ratio: float = 1.0
    """Ratio guard: at most ``max(minimum, floor(ratio * n_new_train))`` replay frames."""
    minimum: int = 16
    weight: float = 1.0
    """Loss weight of the pretraining (replay) head."""
    energy_key: str | None = None
    forces_key: str | None = None
    stress_key: str | None = None
    virials_key: str | None = None


@dataclass
class FinetuneConfig:
    """Fine-tuning from a pretrained model file (mlip.train.finetune, docs/multifidelity.md)."""

    from_model: str | None = field(default=None, metadata=_FILE)
    """The pretrained model file; its architecture replaces the ``model`` section."""
    mode: Literal["multihead_replay", "naive"] = "multihead_replay"
    pretrained_head: str | None = None
    """Head of the pretrained model to start from (default: its only head, or ``Default``)."""
    replay_head: str | None = None
    """Name of the replay head in the new model (default: ``pretrained_head``, or ``pt_head`` when a data
    head has that name)."""
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    freeze: list[str] = field(default_factory=list)
    """Parameter groups (name prefixes) to freeze: ``node_embedding``, ``radial_embedding`` (every layer's
    radial MLP), ``interactions``, ``products``, ``readouts`` or a finer prefix such as ``interactions.0``."""
    default_head: str | None = None
    """Head used at inference when none is asked for (default: the first data head)."""


@dataclass
class Config:
    """The whole training configuration."""

    data: DataConfig = field(default_factory=DataConfig)
    model: Any = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optimiser: OptimiserConfig = field(default_factory=OptimiserConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    ema: EMAConfig = field(default_factory=EMAConfig)
    stage_two: StageTwoConfig = field(default_factory=StageTwoConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    output_dir: str = "run"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["float32", "float64"] = "float32"
    seed: int = 1
    distributed: bool = False
    """Data-parallel training with torch.distributed (implied under torchrun; see docs/scale-out.md)."""
    finetune: FinetuneConfig | None = None
    """Fine-tune a pretrained model file (multi-head replay or naive); see docs/multifidelity.md."""

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (YAML/JSON serialisable)."""
        return asdict(self)

    def model_kwargs(self) -> dict[str, Any]:
        """The ``model`` section as keyword arguments of :class:`ModelHyperparameters`."""
        out = asdict(self.model)
        out.pop("scaling")
        out.pop("shifting")
        return out


def _hints(cls: type) -> dict[str, Any]:
    """Field types of a config section (``Config.model`` is the run-time built :data:`ModelConfig`)."""
    return hints_of(cls)


register_hints(Config, {**typing.get_type_hints(Config), "model": ModelConfig})


def _validate(cfg: Config) -> None:
    """Cross-field checks that types alone cannot express."""
    d = cfg.data
    if not d.train and not d.heads:
        raise ConfigError("config key 'data.train': no training file given")
    if not 0.0 <= d.valid_fraction < 1.0:
        raise ConfigError(f"config key 'data.valid_fraction': must be in [0, 1), got {d.valid_fraction}")
    for name, head in d.heads.items():
        if not head.train:
            raise ConfigError(f"config key 'data.heads.{name}.train': no training file given")
    for prefix, section in [("data", d)] + [(f"data.heads.{n}", h) for n, h in d.heads.items()]:
        normalise_e0s(section, prefix)  # e0s: file.xyz -> isolated with that file
    check_tea_finetune(cfg)
    check_ranges(cfg)  # every numeric range, before any data is read
    check_model_section(cfg)
    if len(cfg.optimiser.betas) != 2:
        raise ConfigError(f"config key 'optimiser.betas': expected two numbers, got {cfg.optimiser.betas}")


def resolve_heads(cfg: Config) -> dict[str, HeadConfig]:
    """Every data head with each key resolved (the head's value, else the ``data`` section's).

    Without ``data.heads`` there is one head, ``Default``, holding the data section's files. This is the
    one place the per-head settings are resolved; data/ helpers get the resolved values as plain arguments.
    """
    d = cfg.data
    raw = d.heads or {"Default": HeadConfig(train=d.train, valid=d.valid, test=d.test)}
    out = {}
    for name, h in raw.items():
        out[name] = HeadConfig(
            train=h.train,
            valid=h.valid,
            valid_fraction=h.valid_fraction if h.valid_fraction is not None else d.valid_fraction,
            test=h.test if h.test is not None else ([] if d.heads else d.test),
            energy_key=h.energy_key or d.energy_key,
            forces_key=h.forces_key or d.forces_key,
            stress_key=h.stress_key or d.stress_key,
            virials_key=h.virials_key or d.virials_key,
            e0s=h.e0s if h.e0s is not None else d.e0s,
            isolated_atoms=h.isolated_atoms or d.isolated_atoms,
            weight=h.weight,
            config_type_weights={**d.config_type_weights, **h.config_type_weights},
            tea=h.tea if h.tea is not None else (None if d.heads else d.tea),
            head=h.head,
        )
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b.c=value`` into (``["a", "b", "c"]``, YAML-parsed value)."""
    if "=" not in text:
        raise ConfigError(f"override '{text}': expected key.sub=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override '{text}': empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: typing.Sequence[str]) -> dict[str, Any]:
    """Apply dotted ``key.sub=value`` overrides to the raw nested dict (in place; returned)."""
    for text in overrides:
        parts, value = parse_override(text)
        node = data
        for i, part in enumerate(parts[:-1]):
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"override '{text}': '{'.'.join(parts[: i + 1])}' is not a section")
            node = nxt
        node[parts[-1]] = value
    return data


def config_from_dict(data: dict[str, Any]) -> Config:
    """Validate a raw nested dict into a :class:`Config` (raises ConfigError)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config: expected a mapping at the top level, got {type(data).__name__}")
    cfg = build_section(Config, data)
    _validate(cfg)
    return cfg


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML file into a dict (raises ConfigError with the file name)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{p}:{where}: invalid YAML: {getattr(err, 'problem', err)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level")
    return data


def load_config(path: str | os.PathLike | None, overrides: typing.Sequence[str] = ()) -> Config:
    """Read, override and validate a configuration file."""
    data = read_yaml(path) if path is not None else {}
    apply_overrides(data, overrides)
    return config_from_dict(data)


def dump_config(cfg: Config, path: str | os.PathLike) -> None:
    """Write the resolved configuration as YAML, atomically."""
    atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
