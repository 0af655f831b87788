"""One training run from a :class:`mlip.config.Config`: data, statistics, model, trainer, final files.

Run directory layout (``output_dir``): ``model.pt`` (EMA weights of the best epoch, safe model file),
``checkpoints/epoch-NNNNN.pt``, ``metrics.jsonl``, ``config.yaml`` (resolved config),
``learning_curve.png``, ``final_metrics.json``.
"""

from __future__ import annotations

import json
import math
import os
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlip.config import Config, HeadConfig, dump_config
from mlip.data.batch import collate, make_loader
from mlip.data.configuration import Configuration
from mlip.data.coverage import check_coverage, format_coverage_table
from mlip.data.ondisk import is_ondisk_config, make_ondisk_loader, ondisk_training_data
from mlip.data.graph import configuration_to_graph, graph_sizes
from mlip.data.io import is_isolated_atom, read_configurations
from mlip.data.splits import random_split
from mlip.errors import ConfigError, DataError
from mlip.nn.hparams import ModelHyperparameters
from mlip.train import statistics
from mlip.train.loss import PROPERTIES, LossWeights, WeightedLoss
from mlip.train.metrics import budget_chunks, format_table
from mlip.train.optim import build_ema, build_optimizer, build_scheduler
from mlip.train.trainer import EvalSource, Trainer, TrainerHooks

SPLITS = ("train", "valid", "test")


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu. Asking for cuda without one is a ConfigError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("config key 'device': cuda requested but no CUDA device is available")
    return torch.device(name)


def resolve_dtype(name: str) -> torch.dtype:
    return {"float32": torch.float32, "float64": torch.float64}[name]


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (the only global state a run touches)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def check_dtypes(model: torch.nn.Module, dtype: torch.dtype) -> None:
    """Refuse a model whose floating parameters or persistent buffers are not all ``dtype``."""
    found = {p.dtype for p in model.parameters() if p.is_floating_point()}
    # Persistent buffers only: exact constants kept in float64 on purpose (the convolution's coupling
    # coefficients, cast per call) are not part of the model's state.
    found |= {t.dtype for t in model.state_dict().values() if t.is_floating_point()}
    if found - {dtype}:
        names = ", ".join(sorted(str(d).replace("torch.", "") for d in found))
        want = str(dtype).replace("torch.", "")
        raise ConfigError(f"config key 'dtype': mixed dtypes: model holds {names} but the run uses {want}")


@dataclass
class HeadData:
    """The frames of one head, split into train/valid/test."""

    name: str
    spec: HeadConfig
    train: list[Configuration] = field(default_factory=list)
    valid: list[Configuration] = field(default_factory=list)
    test: list[Configuration] = field(default_factory=list)
    isolated: list[Configuration] = field(default_factory=list)


def _head_specs(cfg: Config) -> dict[str, HeadConfig]:
    """Heads with every key resolved (head value, else the data section's)."""
    d = cfg.data
    if not d.heads:
        raw = {"Default": HeadConfig(train=d.train, valid=d.valid, test=d.test)}
    else:
        raw = d.heads
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


def _read(files: Sequence[str] | None, spec: HeadConfig, head: str, align: Any = None) -> list[Configuration]:
    configs: list[Configuration] = []
    for path in files or []:
        part = read_configurations(
            path,
            energy_key=spec.energy_key or "energy",
            forces_key=spec.forces_key or "forces",
            stress_key=spec.stress_key or "stress",
            virials_key=spec.virials_key or "virials",
            head=head,
        )
        configs += align(part, path) if align is not None else part  # the head's tea: block
    for c in configs:
        if c.config_type in spec.config_type_weights:
            c.weight *= spec.config_type_weights[c.config_type]
    return configs


def load_datasets(cfg: Config, log: Any = print) -> dict[str, HeadData]:
    """Read every head's train/valid/test frames; isolated atoms are set apart for E0s."""
    heads: dict[str, HeadData] = {}
    split_seed = cfg.data.split_seed if cfg.data.split_seed is not None else cfg.seed
    for name, spec in _head_specs(cfg).items():
        hd = HeadData(name=name, spec=spec)
        align = None
        if spec.tea is not None:
            from mlip.train.tea_block import TeaAligner

            align = TeaAligner(spec.tea, name, spec.energy_key or "energy", log)
        train = _read(spec.train, spec, name, align)
        if spec.e0s == "isolated":
            hd.isolated = [c for c in train if is_isolated_atom(c)]
            train = [c for c in train if not is_isolated_atom(c)]
            if spec.isolated_atoms:
                hd.isolated += _read([spec.isolated_atoms], spec, name, align)
        if spec.valid:
            hd.valid = _read(spec.valid, spec, name, align)
            hd.train = train
        else:
            hd.train, hd.valid = random_split(train, float(spec.valid_fraction or 0.0), split_seed)
        hd.test = _read(spec.test, spec, name, align)
        if not hd.train:
            raise DataError(f"head '{name}': no training frames in {', '.join(spec.train or [])}")
        heads[name] = hd
    if any(hd.spec.head for hd in heads.values()):
        from mlip.train.tea_block import merge_datasets

        heads = merge_datasets(heads, HeadData, log)
    return heads


def check_label_coverage(cfg: Config, heads: dict[str, HeadData], log: Any = print) -> None:
    """Print which labels each split and head carries (mlip.data.coverage); a property with a non-zero
    loss weight (either stage) that no frame of a head's train/valid split carries is an error."""
    weights = {p: getattr(cfg.loss, f"{p}_weight") for p in PROPERTIES}
    st = cfg.stage_two
    if st.start_epoch is not None:
        for p in PROPERTIES:
            v = getattr(st, f"{p}_weight")
            if v is not None and weights[p] == 0.0:
                weights[p] = v
    splits = {s: [c for hd in heads.values() for c in getattr(hd, s)] for s in SPLITS}
    log("label coverage (frames carrying each label):\n" + format_coverage_table(splits))
    check_coverage(splits, weights)


def data_summary(heads: dict[str, HeadData]) -> str:
    """A few lines describing the data (frames, atoms, elements per head and split)."""
    from ase.data import chemical_symbols

    lines = []
    for name, hd in heads.items():
        for split in SPLITS:
            configs = getattr(hd, split)
            if not configs:
                continue
            n_atoms = sum(c.n_atoms for c in configs)
            zs = sorted({int(z) for c in configs for z in c.numbers})
            types = sorted({c.config_type for c in configs})
            lines.append(
                f"head {name}: {split}: {len(configs)} frames, {n_atoms} atoms, elements "
                f"{' '.join(chemical_symbols[z] for z in zs)}, config types {', '.join(types[:6])}"
                + (" ..." if len(types) > 6 else "")
            )
    return "\n".join(lines)


def eval_batches(
    graphs: list[dict[str, Any]],
    config_types: list[str],
    batch_size: int,
    dtype: torch.dtype,
    max_atoms: int | None,
    max_edges: int | None,
) -> EvalSource:
    """Deterministic, in-order batches under the same budget rule as training."""
    sizes = graphs.graph_sizes() if hasattr(graphs, "graph_sizes") else [graph_sizes(g) for g in graphs]
    chunks = budget_chunks([a for a, _ in sizes], [e for _, e in sizes], batch_size, max_atoms, max_edges)

    def batches() -> Iterator[tuple[dict[str, torch.Tensor], list[str]]]:
        for idx in chunks:
            yield collate([graphs[i] for i in idx], dtype=dtype), [config_types[i] for i in idx]

    return EvalSource(name="", batches=batches)


def build_hparams(cfg: Config, heads: dict[str, HeadData], log: Any = print) -> ModelHyperparameters:
    """Model hyper-parameters from the config plus training-set statistics."""
    names = list(heads)
    train_all = [c for hd in heads.values() for c in hd.train]
    zs = sorted({int(z) for hd in heads.values() for split in SPLITS for c in getattr(hd, split) for z in c.numbers})
    zs = sorted(set(zs) | {int(z) for hd in heads.values() for c in hd.isolated for z in c.numbers})
    e0s = []
    for name, hd in heads.items():
        where = f"data.heads.{name}.e0s" if cfg.data.heads else "data.e0s"
        e0 = statistics.atomic_energies(hd.spec.e0s, hd.train, hd.isolated, zs, head=name, where=where)
        e0s.append([float(e0[z]) for z in zs])
    r_max = float(cfg.model.r_max)
    avg_nn = statistics.avg_num_neighbors(train_all, r_max)
    scale, shift = [], []
    for i, (name, hd) in enumerate(heads.items()):
        e0_map = dict(zip(zs, e0s[i]))
        sc, sh = statistics.scale_shift(hd.train, e0_map, cfg.model.scaling)
        scale.append(sc)
        shift.append(sh)
    hp = ModelHyperparameters(
        atomic_numbers=zs,
        heads=names,
        atomic_energies=e0s,
        scale=scale,
        shift=shift,
        avg_num_neighbors=avg_nn,
        **cfg.model_kwargs(),
    )
    from ase.data import chemical_symbols

    for i, name in enumerate(names):
        pretty = ", ".join(f"{chemical_symbols[z]}: {e:.4f}" for z, e in zip(zs, e0s[i]))
        log(f"head {name}: E0s (eV) {{{pretty}}}; scale {scale[i]:.4g}, shift {shift[i]:.4g} eV/atom")
    log(f"average number of neighbours: {avg_nn:.4f}")
    return hp


def _plot(run_dir: Path) -> None:
    from mlip.train.plot import plot_learning_curves

    try:
        plot_learning_curves(run_dir / "metrics.jsonl", run_dir / "learning_curve.png")
    except Exception as err:  # noqa: BLE001 - a plot must never fail a finished run
        print(f"warning: learning-curve plot failed: {err}")


def train(cfg: Config, resume: bool = False, hooks: TrainerHooks | None = None, log: Any = print) -> Path:
    """Run training as configured; return the path of the final model file."""
    from mlip.io.model_file import save_model
    from mlip.nn.model import build_model

    hooks = hooks or TrainerHooks()
    run_dir = Path(cfg.output_dir)
    ckpt_dir = run_dir / "checkpoints"
    # checked on every rank (before any collective, so no rank can see another's new checkpoint): all stop
    if not resume and ckpt_dir.is_dir() and any(ckpt_dir.iterdir()):
        raise ConfigError(
            f"config key 'output_dir': {run_dir} already holds checkpoints; use --resume to continue "
            f"or choose another output_dir"
        )
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype)
    seed_everything(cfg.seed)
    if hooks.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        dump_config(cfg, run_dir / "config.yaml")
        if not resume and (run_dir / "metrics.jsonl").exists():
            (run_dir / "metrics.jsonl").unlink()

    t = cfg.train
    quiet = log if hooks.is_main else (lambda s: None)
    finetune = None
    if is_ondisk_config(cfg):  # HDF5 files from mlip-preprocess: lazy graphs, stored statistics
        heads, hp, graphs, ctypes = ondisk_training_data(cfg, hooks.run_on_main, quiet)
        head_names = list(heads)
        loader = make_ondisk_loader(
            graphs["train"], t.batch_size, shuffle=True, seed=cfg.seed, dtype=dtype,
            max_atoms=t.max_atoms_per_batch, max_edges=t.max_edges_per_batch, num_workers=cfg.data.num_workers,
            num_replicas=hooks.world_size, rank=hooks.rank,
        )
    else:
        heads = load_datasets(cfg, log)
        if cfg.finetune is not None:  # may add the replay head; hyper-parameters from the pretrained model
            from mlip.train.finetune import prepare_finetune

            finetune = prepare_finetune(cfg, heads, quiet)
        if hooks.is_main:
            log(data_summary(heads))
        check_label_coverage(cfg, heads, quiet)
        if finetune is not None:
            hp = finetune.hparams
        else:
            hp = hooks.run_on_main(lambda: build_hparams(cfg, heads, quiet))

        head_names = list(heads)
        graphs = {s: [] for s in SPLITS}
        ctypes = {s: [] for s in SPLITS}
        for hd in heads.values():
            for split in SPLITS:
                for c in getattr(hd, split):
                    graphs[split].append(configuration_to_graph(c, hp.r_max, head_names))
                    ctypes[split].append(c.config_type)
        loader = make_loader(
            graphs["train"], t.batch_size, shuffle=True, seed=cfg.seed, dtype=dtype,
            max_atoms=t.max_atoms_per_batch, max_edges=t.max_edges_per_batch,
            num_replicas=hooks.world_size, rank=hooks.rank,
        )
    model = build_model(hp, dtype=dtype).to(device)
    if finetune is not None:  # pretrained weights, new heads from the pretrained readout, frozen groups
        finetune.initialise(model)
    check_dtypes(model, dtype)

    vbs = t.valid_batch_size or t.batch_size
    valid = None
    if len(graphs["valid"]):
        valid = eval_batches(hooks.shard(graphs["valid"]), hooks.shard(ctypes["valid"]), vbs, dtype,
                             t.max_atoms_per_batch, t.max_edges_per_batch)
        valid.name = "valid"

    lw = LossWeights(cfg.loss.energy_weight, cfg.loss.forces_weight, cfg.loss.stress_weight, cfg.loss.virials_weight)
    loss_fn = WeightedLoss(cfg.loss.type, lw, cfg.loss.huber_delta, [hd.spec.weight for hd in heads.values()])
    optimizer = build_optimizer(model, cfg.optimiser, t.lr)
    scheduler = build_scheduler(optimizer, cfg.schedule, t.max_epochs)
    ema = build_ema(model, cfg.ema)

    metadata = {"config": cfg.to_dict()}
    if finetune is not None:
        metadata["default_head"] = finetune.default_head

    def on_improve(m: torch.nn.Module, epoch: int) -> None:
        save_model(m, run_dir / "model.pt", metadata={**metadata, "epoch": epoch})

    trainer = Trainer(
        model=model, loss_fn=loss_fn, optimizer=optimizer, scheduler=scheduler, ema=ema,
        train_loader=loader, valid=valid, cfg=cfg, run_dir=run_dir, heads=head_names, device=device,
        hooks=hooks, extra_state={"hparams": hp.to_dict()}, on_improve=on_improve, log=log,
        eval_stress=_any_stress(heads, "valid") or bool(getattr(graphs["valid"], "has_stress", False)),
    )
    if resume:
        if not trainer.resume() and hooks.is_main:
            log(f"--resume: no checkpoint in {ckpt_dir}; starting from scratch")
    state = trainer.fit()
    trainer.load_best()
    final_path = run_dir / "model.pt"
    best_loss = state.best_loss if math.isfinite(state.best_loss) else None  # inf: no validation set
    final: dict[str, Any] = {"best_epoch": state.best_epoch, "best_valid_loss": best_loss,
                             "n_skipped": state.n_skipped}
    for split in SPLITS:  # every rank evaluates its shard; the errors are gathered (hooks.reduce_eval)
        if not len(graphs[split]):
            continue
        src = eval_batches(hooks.shard(graphs[split]), hooks.shard(ctypes[split]), vbs, dtype,
                           t.max_atoms_per_batch, t.max_edges_per_batch)
        from mlip.train.metrics import evaluate

        stress = loss_fn.needs_stress() or _any_stress(heads, split) or bool(getattr(graphs[split], "has_stress", False))
        errors, _ = hooks.reduce_eval(*evaluate(model, src.batches, head_names, stress, None, device))
        final[split] = errors.grouped()
    if hooks.is_main:
        save_model(model, final_path, metadata={**metadata, "epoch": state.best_epoch})
        for split in SPLITS:
            if split in final:
                log(format_table(final[split], f"final model (epoch {state.best_epoch}) on {split}:"))
        tmp = run_dir / ".final_metrics.json.tmp"
        tmp.write_text(json.dumps(final, indent=1))
        os.replace(tmp, run_dir / "final_metrics.json")
        if t.plot:
            _plot(run_dir)
        log(f"model written to {final_path}")
    hooks.barrier()
    return final_path


def _any_stress(heads: dict[str, HeadData], split: str) -> bool:
    return any(c.has("stress") or c.has("virials") for hd in heads.values() for c in getattr(hd, split))
