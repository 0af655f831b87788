"""One training run from a :class:`mlip.config.Config`: data, statistics, model, trainer, final files.

Run directory layout (``output_dir``): ``model.pt`` (EMA weights of the best epoch, safe model file),
``checkpoints/epoch-NNNNN.pt``, ``metrics.jsonl``, ``config.yaml`` (resolved config),
``learning_curve.png``, ``final_metrics.json``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from mlip.config import Config, dump_config
from mlip.device import resolve_device, resolve_dtype, seed_everything
from mlip.errors import ConfigError
from mlip.files import atomic_write_text
from mlip.train.data_setup import SPLITS, TrainingData, eval_batches, prepare_data
from mlip.train.loss import LossWeights, WeightedLoss
from mlip.train.metrics import format_table
from mlip.train.optim import build_ema, build_optimizer, build_scheduler
from mlip.train.trainer import Trainer, TrainerHooks

__all__ = ["SPLITS", "check_dtypes", "eval_batches", "resolve_device", "resolve_dtype", "seed_everything", "train"]


def check_dtypes(model: torch.nn.Module, dtype: torch.dtype) -> None:
    """Refuse a model whose floating parameters or persistent buffers are not all ``dtype``."""
    found = {p.dtype for p in model.parameters() if p.is_floating_point()}
    # Persistent buffers only: exact constants kept in float64 on purpose (the convolution's coupling
    # coefficients, cast per call) are not part of the model's state.
    # The energy constants (E0s, scale, shift) are float64 in every model (docs/model.md, "Precision").
    exact = set(getattr(model, "FLOAT64_BUFFERS", ()))
    found |= {t.dtype for k, t in model.state_dict().items() if t.is_floating_point() and k not in exact}
    if found - {dtype}:
        names = ", ".join(sorted(str(d).replace("torch.", "") for d in found))
        want = str(dtype).replace("torch.", "")
        raise ConfigError(f"config key 'dtype': mixed dtypes: model holds {names} but the run uses {want}")


def _plot(run_dir: Path) -> None:
    from mlip.train.plot import plot_learning_curves

    try:
        plot_learning_curves(run_dir / "metrics.jsonl", run_dir / "learning_curve.png")
    except Exception as err:  # noqa: BLE001 - a plot must never fail a finished run
        print(f"warning: learning-curve plot failed: {err}")


def _prepare_run_dir(cfg: Config, resume: bool, hooks: TrainerHooks) -> Path:
    """Refuse to overwrite checkpoints without ``--resume``; the main rank writes ``config.yaml``."""
    run_dir = Path(cfg.output_dir)
    ckpt_dir = run_dir / "checkpoints"
    # checked on every rank (before any collective, so no rank can see another's new checkpoint): all stop
    if not resume and ckpt_dir.is_dir() and any(ckpt_dir.iterdir()):
        raise ConfigError(
            f"config key 'output_dir': {run_dir} already holds checkpoints; use --resume to continue "
            f"or choose another output_dir"
        )
    if hooks.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        dump_config(cfg, run_dir / "config.yaml")
        if not resume and (run_dir / "metrics.jsonl").exists():
            (run_dir / "metrics.jsonl").unlink()
    return run_dir


def _eval_source(cfg: Config, data: TrainingData, split: str, hooks: TrainerHooks, dtype: torch.dtype) -> Any:
    """This rank's share of ``split`` in deterministic batches (validation and final evaluation)."""
    t = cfg.train
    return eval_batches(hooks.shard(data.graphs[split]), hooks.shard(data.config_types[split]),
                        t.valid_batch_size or t.batch_size, dtype, t.max_atoms_per_batch, t.max_edges_per_batch)


def _build_trainer(cfg: Config, data: TrainingData, run_dir: Path, device: torch.device, dtype: torch.dtype,
                   hooks: TrainerHooks, log: Any) -> tuple[Trainer, dict[str, Any]]:
    """Model (fine-tuning plan applied), loss, optimiser, schedule, EMA and the trainer; also the
    metadata every model file of the run carries."""
    from mlip.io.model_file import save_model
    from mlip.nn.model import build_model

    model = build_model(data.hparams, dtype=dtype).to(device)
    if data.finetune is not None:  # pretrained weights, new heads from the pretrained readout, frozen groups
        data.finetune.initialise(model)
    check_dtypes(model, dtype)
    valid = None
    if len(data.graphs["valid"]):
        valid = _eval_source(cfg, data, "valid", hooks, dtype)
        valid.name = "valid"
    stress_weight = cfg.loss.resolved_stress_weight(data.any_stress("train"))
    if cfg.loss.stress_weight is None and stress_weight and hooks.is_main:
        log(f"loss.stress_weight unset and the training data carry stress: stress weight {stress_weight:g}")
    lw = LossWeights(cfg.loss.energy_weight, cfg.loss.forces_weight, stress_weight, cfg.loss.virials_weight)
    loss_fn = WeightedLoss(cfg.loss.type, lw, cfg.loss.huber_delta, [hd.spec.weight for hd in data.heads.values()])
    optimizer = build_optimizer(model, cfg.optimiser, cfg.train.lr)
    scheduler = build_scheduler(optimizer, cfg.schedule, cfg.train.max_epochs)
    ema = build_ema(model, cfg.ema)
    metadata: dict[str, Any] = {"config": cfg.to_dict()}
    if data.finetune is not None:
        metadata["default_head"] = data.finetune.default_head

    def on_improve(m: torch.nn.Module, epoch: int) -> None:
        save_model(m, run_dir / "model.pt", metadata={**metadata, "epoch": epoch})

    trainer = Trainer(
        model=model, loss_fn=loss_fn, optimizer=optimizer, scheduler=scheduler, ema=ema,
        train_loader=data.loader, valid=valid, cfg=cfg, run_dir=run_dir, heads=data.head_names, device=device,
        hooks=hooks, extra_state={"hparams": data.hparams.to_dict()}, on_improve=on_improve, log=log,
        eval_stress=data.any_stress("valid"),
    )
    return trainer, metadata


def _final_errors(cfg: Config, data: TrainingData, trainer: Trainer, hooks: TrainerHooks,
                  dtype: torch.dtype) -> dict[str, Any]:
    """Errors of the trainer's (best) model on every split; every rank evaluates its shard and the
    errors are gathered (``hooks.reduce_eval``)."""
    from mlip.train.metrics import evaluate

    final: dict[str, Any] = {}
    for split in SPLITS:
        if not len(data.graphs[split]):
            continue
        src = _eval_source(cfg, data, split, hooks, dtype)
        stress = trainer.loss_fn.needs_stress() or data.any_stress(split)
        errors, _ = hooks.reduce_eval(*evaluate(trainer.model, src.batches, data.head_names, stress, None,
                                                trainer.device))
        final[split] = errors.grouped()
    return final


def _write_final(run_dir: Path, final: dict[str, Any], best_epoch: int, plot: bool, log: Any) -> None:
    """Error tables to the log, ``final_metrics.json`` (atomically) and the learning-curve plot."""
    for split in SPLITS:
        if split in final:
            log(format_table(final[split], f"final model (epoch {best_epoch}) on {split}:"))
    atomic_write_text(run_dir / "final_metrics.json", json.dumps(final, indent=1))
    if plot:
        _plot(run_dir)


def train(cfg: Config, resume: bool = False, hooks: TrainerHooks | None = None, log: Any = print) -> Path:
    """Run training as configured; return the path of the final model file."""
    from mlip.io.model_file import save_model

    hooks = hooks or TrainerHooks()
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype)
    run_dir = _prepare_run_dir(cfg, resume, hooks)
    seed_everything(cfg.seed)
    data = prepare_data(cfg, hooks, dtype, log)
    trainer, metadata = _build_trainer(cfg, data, run_dir, device, dtype, hooks, log)
    if resume:
        if not trainer.resume() and hooks.is_main:
            log(f"warning: --resume: no checkpoint in {run_dir / 'checkpoints'}; starting from scratch")
    state = trainer.fit()
    trainer.load_best()
    final_path = run_dir / "model.pt"
    best_loss = state.best_loss if math.isfinite(state.best_loss) else None  # inf: no validation set
    final: dict[str, Any] = {"best_epoch": state.best_epoch, "best_valid_loss": best_loss,
                             "n_skipped": state.n_skipped}
    final.update(_final_errors(cfg, data, trainer, hooks, dtype))
    if hooks.is_main:
        save_model(trainer.model, final_path, metadata={**metadata, "epoch": state.best_epoch})
        _write_final(run_dir, final, state.best_epoch, cfg.train.plot, log)
        log(f"model written to {final_path}")
    hooks.barrier()
    return final_path
