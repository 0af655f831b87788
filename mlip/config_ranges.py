"""Numeric ranges and E0 forms of the training configuration, checked before any data is read.

:func:`check_ranges` walks :data:`RANGES` (dotted key -> allowed interval) over a validated
:class:`mlip.config.Config`; :func:`normalise_e0s` checks the ``e0s`` values of the data section and of
every head. Both raise :class:`mlip.errors.ConfigError` with one line naming the key as the user writes it
(``config key 'model.r_max': must be > 0, got -1.0``). :func:`check_model_section` runs the model's own
check on the ``model`` section, :func:`check_tea_finetune` the cross-field rules of the ``tea`` and
``finetune`` blocks. Used by :func:`mlip.config.config_from_dict`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from mlip.data.ondisk_read import is_ondisk_path
from mlip.errors import ConfigError

E0_WORDS = ("isolated", "fit", "average")
"""``e0s`` keywords: isolated-atom frames, least squares on the training energies (``fit``), and its
mace-torch name ``average`` (the same least-squares fit)."""

_MAPPING_SUFFIXES = (".json", ".yaml", ".yml")

# (dotted key, lower bound, lower inclusive, upper bound, upper inclusive); "*" walks a mapping or list
RANGES: tuple[tuple[str, float, bool, float, bool], ...] = (
    ("data.valid_fraction", 0.0, True, 1.0, False),
    ("data.num_workers", 0, True, math.inf, False),
    ("data.config_type_weights.*", 0.0, True, math.inf, False),
    ("data.heads.*.valid_fraction", 0.0, True, 1.0, False),
    ("data.heads.*.weight", 0.0, True, math.inf, False),
    ("data.heads.*.config_type_weights.*", 0.0, True, math.inf, False),
    ("data.tea.scale", 0.0, False, math.inf, False),
    ("data.heads.*.tea.scale", 0.0, False, math.inf, False),
    ("model.r_max", 0.0, False, math.inf, False),
    ("model.num_bessel", 1, True, math.inf, False),
    ("model.num_polynomial_cutoff", 1, True, math.inf, False),
    ("model.max_ell", 0, True, math.inf, False),
    ("model.num_interactions", 1, True, math.inf, False),
    ("model.correlation", 1, True, math.inf, False),
    ("model.correlation.*", 1, True, math.inf, False),
    ("model.radial_mlp.*", 1, True, math.inf, False),
    ("loss.energy_weight", 0.0, True, math.inf, False),
    ("loss.forces_weight", 0.0, True, math.inf, False),
    ("loss.stress_weight", 0.0, True, math.inf, False),
    ("loss.virials_weight", 0.0, True, math.inf, False),
    ("loss.huber_delta", 0.0, False, math.inf, False),
    ("optimiser.weight_decay", 0.0, True, math.inf, False),
    ("optimiser.betas.*", 0.0, True, 1.0, False),
    ("optimiser.eps", 0.0, False, math.inf, False),
    ("schedule.factor", 0.0, False, 1.0, False),
    ("schedule.patience", 0, True, math.inf, False),
    ("schedule.gamma", 0.0, False, 1.0, True),
    ("schedule.min_lr", 0.0, True, math.inf, False),
    ("ema.decay", 0.0, False, 1.0, False),
    ("stage_two.start_epoch", -math.inf, False, math.inf, False),
    ("stage_two.lr", 0.0, False, math.inf, False),
    ("stage_two.energy_weight", 0.0, True, math.inf, False),
    ("stage_two.forces_weight", 0.0, True, math.inf, False),
    ("stage_two.stress_weight", 0.0, True, math.inf, False),
    ("stage_two.virials_weight", 0.0, True, math.inf, False),
    ("train.max_epochs", 1, True, math.inf, False),
    ("train.batch_size", 1, True, math.inf, False),
    ("train.valid_batch_size", 1, True, math.inf, False),
    ("train.lr", 0.0, False, math.inf, False),
    ("train.max_atoms_per_batch", 1, True, math.inf, False),
    ("train.max_edges_per_batch", 1, True, math.inf, False),
    ("train.clip_grad", 0.0, False, math.inf, False),
    ("train.patience", 1, True, math.inf, False),
    ("train.eval_interval", 1, True, math.inf, False),
    ("checkpoint.interval", 1, True, math.inf, False),
    ("checkpoint.keep", 1, True, math.inf, False),
    ("finetune.replay.size", 1, True, math.inf, False),
    ("finetune.replay.ratio", 0.0, True, math.inf, False),
    ("finetune.replay.minimum", 0, True, math.inf, False),
    ("finetune.replay.weight", 0.0, True, math.inf, False),
)


def _interval(lo: float, lo_in: bool, hi: float, hi_in: bool) -> str:
    if hi == math.inf:
        return f">= {lo}" if lo_in else f"> {lo}"
    return f"in {'[' if lo_in else '('}{lo}, {hi}{']' if hi_in else ')'}"


def _values(node: Any, parts: list[str], path: str) -> list[tuple[str, Any]]:
    """(dotted path, value) of every value at ``parts`` below ``node`` (None and absent skipped)."""
    if node is None:
        return []
    if not parts:
        return [(path, node)]
    head, rest = parts[0], parts[1:]
    if head == "*":
        if isinstance(node, dict):
            items = [(f"{path}.{k}", v) for k, v in node.items()]
        elif isinstance(node, list):
            items = [(f"{path}[{i}]", v) for i, v in enumerate(node)]
        else:
            return []
        return [found for p, v in items for found in _values(v, rest, p)]
    child = node.get(head) if isinstance(node, dict) else getattr(node, head, None)
    return _values(child, rest, f"{path}.{head}" if path else head)


def check_ranges(cfg: Any) -> None:
    """Raise ConfigError for the first numeric value outside its range (see :data:`RANGES`)."""
    for key, lo, lo_in, hi, hi_in in RANGES:
        for path, value in _values(cfg, key.split("."), ""):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            ok = not math.isnan(value) and (value >= lo if lo_in else value > lo) and (
                value <= hi if hi_in else value < hi)
            if not ok:
                raise ConfigError(f"config key '{path}': must be {_interval(lo, lo_in, hi, hi_in)}, got {value}")


def normalise_e0s(section: Any, prefix: str) -> None:
    """Check ``section.e0s`` (the data section or one head) and turn a structure-file value into
    ``e0s: isolated`` with ``isolated_atoms`` set to that file (in place).

    Accepted: ``isolated``, ``fit``, ``average``, a mapping, a JSON/YAML mapping file, or a structure file
    (extended XYZ, ...) of isolated atoms."""
    e0s = section.e0s
    if not isinstance(e0s, str) or e0s in E0_WORDS:
        return
    where = f"config key '{prefix}.e0s'"
    if not Path(e0s).is_file():
        import difflib

        close = difflib.get_close_matches(e0s, E0_WORDS, n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(
            f"{where}: {e0s!r} is neither 'isolated', 'fit', 'average' nor an existing file{hint}; "
            "give isolated atoms as a file (e0s: isolated_atoms.xyz) or a mapping {H: -13.6, ...}"
        )
    if e0s.lower().endswith(_MAPPING_SUFFIXES):
        return
    iso = getattr(section, "isolated_atoms", None)
    if iso and Path(iso).resolve() != Path(e0s).resolve():
        raise ConfigError(
            f"{where}: {e0s} is read as isolated atoms, but '{prefix}.isolated_atoms' names another file "
            f"({iso}); give one of them"
        )
    section.e0s = "isolated"
    section.isolated_atoms = e0s


def check_model_section(cfg: Any) -> None:
    """Check the ``model`` section's non-numeric options (irreps strings, block kinds, backend) with the
    model's own validation, before any data is read; the message names ``model.<key>``."""
    if getattr(cfg, "finetune", None) is not None:
        return  # the architecture comes from the pretrained model file
    from mlip.nn.hparams import ModelHyperparameters
    from mlip.nn.model import validate_hparams

    hp = ModelHyperparameters(atomic_numbers=[1], atomic_energies=[[0.0]], **cfg.model_kwargs())
    try:
        validate_hparams(hp)
    except ConfigError as err:
        text = str(err)
        if text.startswith("model hyper-parameter '"):
            key, _, rest = text[len("model hyper-parameter '"):].partition("'")
            text = f"config key 'model.{key}'{rest}"
        raise ConfigError(text) from None


def is_ondisk_paths(d: Any) -> bool:
    """True when any training file of the data section ``d`` (or of its heads) is an on-disk ``.h5`` file."""
    files = list(d.train or []) + [f for h in d.heads.values() for f in (h.train or [])]
    return any(is_ondisk_path(f) for f in files)


def check_tea_finetune(cfg: Any) -> None:
    """Checks of the ``tea`` blocks and the ``finetune`` block (cross-field, no data read)."""
    d = cfg.data
    blocks = [("data.tea", d.tea)] + [(f"data.heads.{n}.tea", h.tea) for n, h in d.heads.items()]
    for where, tea in blocks:
        if tea is None:
            continue
        if tea.source_atoms is None or tea.target_atoms is None:
            raise ConfigError(f"config key '{where}': needs both 'source_atoms' and 'target_atoms'")
        if tea.scale is None and not tea.pairs:
            raise ConfigError(f"config key '{where}': needs 'scale' (1 = ICEA) or 'pairs' to fit it")
        if tea.pairs is not None and len(tea.pairs) != 2:
            raise ConfigError(f"config key '{where}.pairs': expected two files [source, target]")
    if d.tea is not None and d.heads:
        raise ConfigError("config key 'data.tea': with 'data.heads' give the tea block per head")
    ft = cfg.finetune
    if ft is None:
        return
    if not ft.from_model:
        raise ConfigError("config key 'finetune.from_model': no pretrained model file given")
    r = ft.replay
    if ft.mode == "multihead_replay" and not r.data:
        raise ConfigError(
            "config key 'finetune.replay.data': multihead_replay needs the pretraining data to draw the "
            "replay set from (or set finetune.mode: naive for fine-tuning without replay)"
        )
    if ft.mode == "naive" and r.data:
        raise ConfigError("config key 'finetune.replay.data': naive fine-tuning uses no replay; remove it "
                          "or set finetune.mode: multihead_replay")
    if ft.mode == "naive" and len(d.heads) > 1:
        raise ConfigError("config key 'finetune.mode': naive fine-tuning trains a single head; "
                          "declare at most one data head")
    if r.size is not None and r.size < 1:
        raise ConfigError(f"config key 'finetune.replay.size': must be >= 1, got {r.size}")
    if r.ratio < 0 or r.minimum < 0 or r.weight < 0:
        raise ConfigError("config key 'finetune.replay': ratio, minimum and weight must be >= 0")
    if is_ondisk_paths(d):
        raise ConfigError("config key 'finetune': fine-tuning reads extended XYZ data, not on-disk .h5 files")
