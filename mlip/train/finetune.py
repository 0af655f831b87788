"""Fine-tuning from a pretrained model file: the ``finetune:`` block of the training config.

Two modes (docs/multifidelity.md):

* ``multihead_replay`` (MACE-MP-0 App. C, MACE-MH-1): the new model has the pretrained architecture with
  one head per data head plus a *replay head* (the pretrained head). Every head starts from the
  pretrained head's readout, scale and shift. The replay head keeps the pretrained E0s and is trained on
  a replay set drawn from the pretraining data (element filter, ratio guard, random or farthest-point
  selection: :mod:`mlip.fidelity.replay`); new heads' E0s are re-estimated by least squares on the
  pretrained model's residuals (:func:`mlip.fidelity.replay.refit_e0s`, MACE-MH-1 Eqs. 20-25).
* ``naive``: one head, initialised from the pretrained head, E0s re-estimated the same way, no replay.

Optionally parameter groups (name prefixes) are frozen. :func:`prepare_finetune` builds the plan before
the model exists (it may add the replay head to the data); :meth:`FinetunePlan.initialise` copies the
pretrained weights into the freshly built model and freezes. Units: eV.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from ase.data import chemical_symbols

from mlip.config import Config, HeadConfig
from mlip.data.configuration import Configuration
from mlip.data.io import read_configurations, split_isolated
from mlip.data.splits import random_split
from mlip.errors import ConfigError, DataError
from mlip.nn.heads import select_head
from mlip.nn.hparams import ModelHyperparameters

#: Top-level parameter groups of :class:`mlip.nn.model.MACE` that ``freeze`` may name. ``radial_embedding``
#: (Bessel basis, envelope, Agnesi transform) holds only fixed buffers; as a freeze group it stands for the
#: learnable radial functions, the radial MLP of every interaction (``interactions.N.radial``).
PARAMETER_GROUPS = ("node_embedding", "radial_embedding", "interactions", "products", "readouts", "edge_readout")


@dataclass
class FinetunePlan:
    """What fine-tuning will do; built by :func:`prepare_finetune`."""

    hparams: ModelHyperparameters
    pretrained: torch.nn.Module
    source_head: int
    """Index of the pretrained head every new head starts from."""
    default_head: str
    freeze: list[str] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)
    e0_refit: dict[str, list[float]] = field(default_factory=dict)

    def initialise(self, model: torch.nn.Module) -> list[str]:
        """Copy the pretrained weights into ``model`` (built from :attr:`hparams`) and freeze the chosen
        groups; returns the names of the frozen parameters."""
        copy_pretrained_weights(self.pretrained, model, self.source_head)
        return freeze_parameters(model, self.freeze)


def _read_replay(cfg: Config, head: str) -> list[Configuration]:
    r, d = cfg.finetune.replay, cfg.data
    configs: list[Configuration] = []
    for path in r.data or []:
        configs += read_configurations(
            path, energy_key=r.energy_key or d.energy_key, forces_key=r.forces_key or d.forces_key,
            stress_key=r.stress_key or d.stress_key, virials_key=r.virials_key or d.virials_key, head=head,
        )
    return split_isolated(configs)[0]


def element_counts(configs: list[Configuration], zs: list[int]) -> np.ndarray:
    """Element-count matrix [F, S] over the atomic numbers ``zs``."""
    index = {z: k for k, z in enumerate(zs)}
    n = np.zeros((len(configs), len(zs)))
    for f, c in enumerate(configs):
        for z in np.asarray(c.numbers):
            n[f, index[int(z)]] += 1
    return n


def refit_head_e0s(pretrained: torch.nn.Module, head_index: int, configs: list[Configuration]) -> np.ndarray | None:
    """E0s [S] (eV) of a new head: the pretrained head's E0s plus the least-squares per-element fit of the
    residuals ``E_ref - E_pred`` of the pretrained model on ``configs`` (MACE-MH-1 Eqs. 20-25).
    ``None`` when no frame carries an energy."""
    from mlip.fidelity.descriptors import model_outputs
    from mlip.fidelity.replay import refit_e0s

    frames = [c for c in split_isolated(configs)[0] if c.energy is not None]
    if not frames:
        return None
    zs = list(pretrained.atomic_numbers)
    head = pretrained.heads[head_index]
    pred = model_outputs(pretrained, frames, head=head)["energy"]
    ref = np.array([c.energy for c in frames], dtype=float)
    e0_old = pretrained.atomic_energies[head_index].detach().cpu().double().numpy()
    return refit_e0s(ref, pred, element_counts(frames, zs), e0_old)


def composition_warning(name: str, configs: list[Configuration], zs: list[int], e0: Any) -> str | None:
    """The warning of ``e0s: fit`` (:func:`mlip.data.stats.underdetermined_e0s`) when the frames of head
    ``name`` (with energies, isolated atoms aside) do not determine the re-estimated E0s ``e0`` [S] of the
    elements they contain (one composition: one molecule's MD); ``None`` when they do."""
    from mlip.data.stats import underdetermined_e0s

    frames = [c for c in split_isolated(configs)[0] if c.energy is not None]
    counts = element_counts(frames, zs)
    present = [k for k in range(len(zs)) if counts[:, k].any()]
    rank = int(np.linalg.matrix_rank(counts[:, present])) if frames else 0
    if rank >= len(present):
        return None
    fitted = {zs[k]: float(e0[k]) for k in present}
    return (f"finetune: head '{name}': E0s re-estimated on the pretrained model's residuals: "
            f"{underdetermined_e0s(rank, fitted)}; add frames of other compositions to the head's training data "
            "to separate them")


def _format_e0(zs: list[int], e0: Any) -> str:
    return "{" + ", ".join(f"{chemical_symbols[z]}: {float(e):.4f}" for z, e in zip(zs, e0)) + "}"


def _load_pretrained(cfg: Config, heads: dict[str, Any]) -> tuple[torch.nn.Module, int]:
    """The pretrained model (float64) and the index of the head every new head starts from; refuses an
    edge-energy readout and data elements the model does not know."""
    from mlip.io.mace import load_model_or_mace

    ft = cfg.finetune
    pretrained = load_model_or_mace(ft.from_model, dtype=torch.float64)  # mlip model file or mace-torch .model
    p = select_head(pretrained.heads, ft.pretrained_head, key="config key 'finetune.pretrained_head'",
                    owner="the pretrained model")
    if pretrained.hparams.edge_energy_readout:
        raise ConfigError("config key 'finetune.from_model': fine-tuning an edge-energy-readout model is not supported")
    zs = list(pretrained.atomic_numbers)
    new_elements = {int(z) for hd in heads.values() for s in ("train", "valid", "test")
                    for c in getattr(hd, s) for z in c.numbers}
    unknown = sorted(new_elements - set(zs))
    if unknown:
        raise ConfigError(f"config key 'finetune.from_model': elements {[chemical_symbols[z] for z in unknown]} of "
                          f"the fine-tuning data are unknown to the pretrained model (elements "
                          f"{[chemical_symbols[z] for z in zs]})")
    return pretrained, p


def _data_head_e0s(pretrained: torch.nn.Module, p: int, heads: dict[str, Any], lines: list[str],
                   warnings: list[str]) -> tuple[list[list[float]], dict[str, list[float]]]:
    """E0s of every data head (refitted on the pretrained model's residuals, else the pretrained head's)
    and the refitted ones by head; the plan's lines are appended to ``lines``, a warning for E0s that the
    compositions do not determine to ``warnings``."""
    zs = list(pretrained.atomic_numbers)
    p_name = pretrained.heads[p]
    e0_p = pretrained.atomic_energies[p].detach().cpu().double().numpy()
    scale_p, shift_p = float(pretrained.scale[p]), float(pretrained.shift[p])
    e0s: list[list[float]] = []
    refits: dict[str, list[float]] = {}
    for name, hd in heads.items():
        e0 = refit_head_e0s(pretrained, p, hd.train)
        if e0 is None:
            e0 = e0_p
            lines.append(f"head {name}: E0s kept from pretrained head '{p_name}' (no energies to refit) "
                         f"{_format_e0(zs, e0)}")
        else:
            lines.append(f"head {name}: E0s re-estimated by least squares on the pretrained model's residuals "
                         f"over {sum(c.energy is not None for c in hd.train)} frames {_format_e0(zs, e0)}")
            refits[name] = [float(x) for x in e0]
            warning = composition_warning(name, hd.train, zs, e0)
            if warning:
                warnings.append(warning)
        e0s.append([float(x) for x in e0])
        lines.append(f"head {name}: readout, scale {scale_p:.4g} and shift {shift_p:.4g} from '{p_name}'; "
                     f"{len(hd.train)} train frames, loss weight {hd.spec.weight:g}")
    return e0s, refits


def _add_replay_head(cfg: Config, pretrained: torch.nn.Module, p: int, heads: dict[str, Any],
                     lines: list[str]) -> list[float]:
    """Select the replay set from the pretraining data and append the replay head to ``heads``; returns
    its E0s (the pretrained head's, kept fixed)."""
    from mlip.fidelity.descriptors import model_descriptors
    from mlip.fidelity.replay import select_replay

    ft, r, d = cfg.finetune, cfg.finetune.replay, cfg.data
    zs = list(pretrained.atomic_numbers)
    p_name = pretrained.heads[p]
    e0_p = pretrained.atomic_energies[p].detach().cpu().double().numpy()
    replay_name = ft.replay_head or (p_name if p_name not in heads else "pt_head")
    if replay_name in heads:
        raise ConfigError(f"config key 'finetune.replay_head': '{replay_name}' is also a data head")
    pool = _read_replay(cfg, replay_name)
    if not pool:
        raise ConfigError(f"config key 'finetune.replay.data': no pretraining frames in {', '.join(r.data)}")
    new_train = [c for hd in heads.values() for c in hd.train]
    method = "fps" if r.selection == "fps" else "random"
    descriptors = model_descriptors(pretrained, pool) if method == "fps" else None
    try:
        sel = select_replay(pool, new_train, r.size, method, descriptors, max_ratio=r.ratio, minimum=r.minimum,
                            seed=cfg.seed, filter_elements=r.selection != "random")
    except DataError as err:
        raise ConfigError(f"config key 'finetune.replay': {err}") from None
    chosen = [pool[int(i)] for i in sel.indices]
    split_seed = d.split_seed if d.split_seed is not None else cfg.seed
    train, valid = random_split(chosen, d.valid_fraction, split_seed)
    spec = HeadConfig(train=list(r.data), valid=None, valid_fraction=d.valid_fraction, test=[],
                      energy_key=r.energy_key or d.energy_key, forces_key=r.forces_key or d.forces_key,
                      stress_key=r.stress_key or d.stress_key, virials_key=r.virials_key or d.virials_key,
                      e0s={chemical_symbols[z]: float(e) for z, e in zip(zs, e0_p)}, weight=r.weight)
    heads[replay_name] = type(next(iter(heads.values())))(name=replay_name, spec=spec, train=train, valid=valid)
    lines.append(f"head {replay_name} (replay of '{p_name}'): E0s kept fixed from the pretrained model "
                 f"{_format_e0(zs, e0_p)}")
    lines.append(f"{sel.describe()} from {', '.join(r.data)} (selection {r.selection}, requested "
                 f"{r.size if r.size is not None else 'max'}, ratio guard {r.ratio:g} x {len(new_train)} new "
                 f"frames, minimum {r.minimum}); {len(train)} train + {len(valid)} valid; loss weight {r.weight:g}")
    return [float(x) for x in e0_p]


def prepare_finetune(cfg: Config, heads: dict[str, Any], log: Any = print) -> FinetunePlan:
    """Plan the fine-tuning run; in ``multihead_replay`` mode the replay head (a
    :class:`mlip.train.data_setup.HeadData`) is appended to ``heads`` (mutated). Prints the plan."""
    ft = cfg.finetune
    pretrained, p = _load_pretrained(cfg, heads)
    p_name = pretrained.heads[p]
    data_heads = list(heads)
    lines = [f"fine-tuning {ft.from_model} (mode {ft.mode}); architecture from the model file "
             f"(the 'model' section is ignored), start head '{p_name}'"]
    warnings: list[str] = []
    e0s, refits = _data_head_e0s(pretrained, p, heads, lines, warnings)
    if ft.mode == "multihead_replay":
        e0s.append(_add_replay_head(cfg, pretrained, p, heads, lines))
    else:
        lines.append("no replay (naive fine-tuning): the pretrained head is not kept")
    new_heads = list(heads)
    scale_p, shift_p = float(pretrained.scale[p]), float(pretrained.shift[p])
    hp_old: ModelHyperparameters = pretrained.hparams
    # not data_setup.hparams_from_records: the pretrained architecture, avg_num_neighbors and scale/shift are
    # kept so the pretrained weights load (docs/architecture.md, data path step 5)
    hp = dataclasses.replace(hp_old, heads=new_heads, atomic_energies=e0s,
                             scale=[scale_p] * len(new_heads), shift=[shift_p] * len(new_heads))
    default = ft.default_head or data_heads[0]
    if default not in new_heads:
        raise ConfigError(f"config key 'finetune.default_head': '{default}' is not one of the heads {new_heads}")
    for group in ft.freeze:
        _check_group(pretrained, group)
    lines.append("frozen: " + (", ".join(ft.freeze) if ft.freeze else "nothing (all parameters trained)"))
    lines.append(f"heads of the new model: {new_heads}; default head at inference: {default}")
    for line in lines:
        log(line)
    for line in warnings:  # one line each, like the warning of e0s: fit
        log(f"warning: {line}")
    return FinetunePlan(hparams=hp, pretrained=pretrained, source_head=p, default_head=default,
                        freeze=list(ft.freeze), summary=lines, e0_refit=refits)


def _matches(name: str, group: str) -> bool:
    return name == group or name.startswith(group + ".")


def _is_radial_mlp(name: str) -> bool:
    """``interactions.N.radial.*``: the learnable radial function of layer N."""
    parts = name.split(".")
    return len(parts) > 3 and parts[0] == "interactions" and parts[2] == "radial"


def group_parameters(model: torch.nn.Module, group: str) -> list[str]:
    """Names of the parameters that the freeze group ``group`` covers: those named ``group`` or starting
    with ``group.``; ``radial_embedding`` also covers every layer's radial MLP (see :data:`PARAMETER_GROUPS`)."""
    names = [n for n, _ in model.named_parameters()]
    return [n for n in names if _matches(n, group) or (group == "radial_embedding" and _is_radial_mlp(n))]


def _check_group(model: torch.nn.Module, group: str) -> None:
    """ConfigError when ``group`` covers no parameter; the hint never repeats the refused name."""
    if group_parameters(model, group):
        return
    names = [n for n, _ in model.named_parameters()]
    options = (set(PARAMETER_GROUPS) | {n.rsplit(".", 1)[0] for n in names}) - {group}
    close = difflib.get_close_matches(group, sorted(options), n=1, cutoff=0.6)
    valid = [g for g in PARAMETER_GROUPS if group_parameters(model, g)]
    if group in PARAMETER_GROUPS:  # a real group this model lacks (edge_readout): no look-alike guess
        hint = f" (it has no {group}); use one of {', '.join(valid)}"
    elif close and group_parameters(model, close[0]):
        hint = f" (did you mean '{close[0]}'?)"
    else:
        hint = f"; use one of {', '.join(valid)} or a finer prefix such as 'interactions.0'"
    raise ConfigError(f"config key 'finetune.freeze': '{group}' matches no parameter of the model{hint}")


def freeze_parameters(model: torch.nn.Module, groups: list[str]) -> list[str]:
    """Set ``requires_grad=False`` on every parameter of the groups (:func:`group_parameters`); returns
    their names in parameter order."""
    for group in groups:
        _check_group(model, group)
    chosen = {n for g in groups for n in group_parameters(model, g)}
    frozen = []
    for name, param in model.named_parameters():
        if name in chosen:
            param.requires_grad_(False)
            frozen.append(name)
    return frozen


def _head_map(n_new: int, source: int) -> torch.Tensor:
    return torch.full((n_new,), source, dtype=torch.long)


def _remap_linear(old: torch.nn.Module, new: torch.nn.Module, rows: torch.Tensor | None, cols: torch.Tensor | None) -> None:
    """Copy an e3nn ``o3.Linear`` with a single 0e->0e path: ``W_new = W_old[rows][:, cols]``, rescaled by
    the ratio of the path normalisations so that the selected outputs are unchanged."""
    if len(old.instructions) != 1 or len(new.instructions) != 1:
        raise ConfigError("fine-tuning: readouts with several paths are not supported")
    (io,), (inew,) = old.instructions, new.instructions
    w = old.weight.detach().reshape(io.path_shape)
    if rows is not None:
        w = w[rows]
    if cols is not None:
        w = w[:, cols]
    if tuple(w.shape) != tuple(inew.path_shape):
        raise ConfigError(f"fine-tuning: readout shapes {tuple(w.shape)} vs {tuple(inew.path_shape)} do not match")
    with torch.no_grad():
        new.weight.copy_((w * (io.path_weight / inew.path_weight)).reshape(-1).to(new.weight.dtype))


def copy_pretrained_weights(pretrained: torch.nn.Module, model: torch.nn.Module, source_head: int) -> None:
    """Backbone parameters copied as they are; every head of ``model`` gets the readout of
    ``pretrained``'s head ``source_head`` (E0s/scale/shift buffers come from the hyper-parameters)."""
    from mlip.nn.readout import LinearReadout, MLPReadout

    old_state = pretrained.state_dict()
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.startswith("readouts.") or name in ("atomic_energies", "scale", "shift"):
                continue
            if name not in old_state or old_state[name].shape != tensor.shape:
                raise ConfigError(f"fine-tuning: parameter '{name}' of the new model does not match the pretrained one")
            tensor.copy_(old_state[name].to(tensor.dtype))
    n_new = len(model.heads)
    cols = _head_map(n_new, source_head)
    for old_r, new_r in zip(pretrained.readouts, model.readouts):
        if isinstance(new_r, LinearReadout):
            _remap_linear(old_r.linear, new_r.linear, None, cols)
        elif isinstance(new_r, MLPReadout):
            block = old_r.hidden_dim // old_r.num_heads
            hidden = (cols[:, None] * block + torch.arange(block)[None, :]).reshape(-1)  # head-major blocks
            _remap_linear(old_r.linear_1, new_r.linear_1, None, hidden)
            _remap_linear(old_r.linear_2, new_r.linear_2, hidden, cols)
        else:  # pragma: no cover - every readout of the model is one of the two
            raise ConfigError(f"fine-tuning: unsupported readout {type(new_r).__name__}")
