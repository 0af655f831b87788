"""Optimiser, learning-rate schedule and EMA construction.

Weight decay is applied only to the weights of the interaction and product blocks (as mace-torch does):
biases, element embeddings, radial MLPs, readouts, per-element energies, scale/shift and single-number
parameters get none (two parameter groups).
"""

from __future__ import annotations

from typing import Any

import torch
from torch_ema import ExponentialMovingAverage

from mlip.config import EMAConfig, OptimiserConfig, ScheduleConfig

_NO_DECAY_NAMES = ("bias", "embedding", "radial", "readout", "atomic_energies", "scale", "shift", "alpha", "beta")


def no_decay(name: str, param: torch.Tensor) -> bool:
    """True if ``param`` (named ``name``) should get no weight decay."""
    if param.numel() == 1:
        return True
    leaf = name.lower()
    return any(token in leaf for token in _NO_DECAY_NAMES)


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two groups: ``decay`` (weight matrices) and ``no_decay`` (biases, embeddings, scalars)."""
    decay, rest = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (rest if no_decay(name, p) else decay).append(p)
    groups = [
        {"name": "decay", "params": decay, "weight_decay": weight_decay},
        {"name": "no_decay", "params": rest, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def build_optimizer(model: torch.nn.Module, cfg: OptimiserConfig, lr: float) -> torch.optim.Optimizer:
    """Adam or AdamW (optionally AMSGrad) over :func:`parameter_groups`."""
    groups = parameter_groups(model, cfg.weight_decay)
    kwargs = dict(lr=lr, betas=tuple(cfg.betas), eps=cfg.eps, amsgrad=cfg.amsgrad, foreach=False)
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, **kwargs)
    # Adam's weight_decay is L2 added to the gradient (per group)
    return torch.optim.Adam(groups, **kwargs)


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, max_epochs: int
) -> torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau | None:
    """The learning-rate schedule, stepped once per epoch (``plateau``: with the validation loss)."""
    if cfg.name == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=cfg.factor, patience=cfg.patience, min_lr=cfg.min_lr
        )
    if cfg.name == "exponential":
        return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=cfg.gamma)
    if cfg.name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, max_epochs), eta_min=cfg.min_lr)
    return None


def build_ema(model: torch.nn.Module, cfg: EMAConfig) -> ExponentialMovingAverage | None:
    """EMA of the trainable parameters (torch-ema), or None when disabled."""
    if not cfg.use:
        return None
    return ExponentialMovingAverage([p for p in model.parameters() if p.requires_grad], decay=cfg.decay)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the learning rate of every group (stage two)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
        if "initial_lr" in group:
            group["initial_lr"] = lr
