"""The training loop: epochs, EMA, schedule, stage two, early stopping, checkpoints, non-finite losses.

The trainer is independent of how data was read: it takes a training loader (an iterable of batch dicts
with an optional ``set_epoch(epoch)``) and a validation batch source (see :func:`mlip.train.metrics.evaluate`).
Distributed training plugs in through :class:`TrainerHooks` (wrap the model, all-reduce metrics, write only
on rank 0); the defaults are the single-process behaviour.

Epoch ``k`` in files and logs is 1-based (the k-th finished epoch); a checkpoint ``epoch-0000k.pt`` holds
the state after k epochs, and resuming continues with epoch k + 1.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mlip.config import Config
from mlip.errors import MLIPError
from mlip.files import atomic_write_text
from mlip.train.checkpoint import get_rng_state, latest_checkpoint, load_checkpoint, save_checkpoint, set_rng_state
from mlip.train.compiled_step import CompiledStep
from mlip.train.loss import LossWeights, WeightedLoss
from mlip.train.metrics import FrameErrors, evaluate, format_table
from mlip.train.optim import set_lr
from mlip.train.progress import progress_bar, run_eta_line


class NonFiniteLossError(MLIPError):
    """The loss became NaN or infinite (``train.on_nonfinite: stop``)."""


def _identity(x: Any) -> Any:
    return x


def _noop() -> None:
    return None


def _call(fn: Callable[[], Any]) -> Any:
    return fn()


def _pair(errors: Any, loss: Any) -> tuple[Any, Any]:
    return errors, loss


def _default_set_epoch(loader: Any, epoch: int) -> None:
    if hasattr(loader, "set_epoch"):
        loader.set_epoch(epoch)


@dataclass
class TrainerHooks:
    """Seams for distributed training; defaults are single-process.

    - ``wrap_model(model)``: the module used for the training forward/backward (e.g. DDP);
    - ``all_reduce_sum(tensor)``: sum a tensor over processes (metrics, loss sums);
    - ``is_main``: only this process writes files and prints;
    - ``barrier()``: synchronise processes (around checkpoints);
    - ``set_epoch(loader, epoch)``: re-seed the sampler / loader for an epoch.
    """

    wrap_model: Callable[[torch.nn.Module], torch.nn.Module] = _identity
    all_reduce_sum: Callable[[torch.Tensor], torch.Tensor] = _identity
    is_main: bool = True
    barrier: Callable[[], None] = _noop
    set_epoch: Callable[[Any, int], None] = _default_set_epoch
    # data-parallel seams (mlip.train.distributed); single-process defaults
    rank: int = 0
    world_size: int = 1
    run_on_main: Callable[[Callable[[], Any]], Any] = _call
    """Run a function on rank 0 only and return its result on every rank (statistics)."""
    shard: Callable[[Sequence[Any]], Sequence[Any]] = _identity
    """This rank's share of a list of evaluation frames."""
    reduce_eval: Callable[[FrameErrors, float | None], tuple[FrameErrors, float | None]] = _pair
    """Merge the sharded evaluation results of all ranks (same result on every rank)."""
    all_true: Callable[[bool], bool] = _identity
    """Whether a flag holds on every rank (e.g. a finite loss, agreed before backward)."""


@dataclass
class TrainState:
    """Bookkeeping that goes into checkpoints."""

    epoch: int = 0
    best_loss: float = math.inf
    best_epoch: int = 0
    bad_evals: int = 0
    n_skipped: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    stopped_early: bool = False


@dataclass
class EvalSource:
    """A named evaluation split: ``batches()`` yields ``(batch, config_types)``."""

    name: str
    batches: Callable[[], Iterator[tuple[dict[str, torch.Tensor], Sequence[str]]]]


@dataclass
class Trainer:
    """Runs epochs of training on ``model`` and keeps the best EMA weights by validation loss."""

    model: torch.nn.Module
    loss_fn: WeightedLoss
    optimizer: torch.optim.Optimizer
    scheduler: Any
    ema: Any
    train_loader: Iterable[dict[str, torch.Tensor]]
    valid: EvalSource | None
    cfg: Config
    run_dir: Path
    heads: list[str]
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    hooks: TrainerHooks = field(default_factory=TrainerHooks)
    extra_state: dict[str, Any] = field(default_factory=dict)
    """Saved with every checkpoint (e.g. model hyper-parameters)."""
    on_improve: Callable[[torch.nn.Module, int], None] | None = None
    """Called (main process only) with the model holding the EMA weights whenever validation improves."""
    log: Callable[[str], None] = print
    eval_stress: bool = False
    """Also predict stress during validation (the validation set carries stress/virial labels)."""
    state: TrainState = field(default_factory=TrainState)

    def __post_init__(self) -> None:
        self.run_dir = Path(self.run_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self.train_module = self.hooks.wrap_model(self.model)
        self.base_weights = copy.copy(self.loss_fn.weights)
        self.compute_stress = self.loss_fn.needs_stress()
        self.compiled_step: CompiledStep | None = None
        """``train.compile``: the forward half of the step (model, forces, loss) under torch.compile."""
        if self.cfg.train.compile:
            self.compiled_step = CompiledStep(self.train_module, self.loss_fn, log=self.log if self.hooks.is_main else None)

    # ----------------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        s = self.state
        return {
            "format": "mlip-checkpoint-1",
            "epoch": s.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "rng": get_rng_state(),
            "best_loss": s.best_loss,
            "best_epoch": s.best_epoch,
            "bad_evals": s.bad_evals,
            "n_skipped": s.n_skipped,
            "best_state": s.best_state,
            **self.extra_state,
        }

    def load_state_dict(self, ckpt: dict[str, Any]) -> None:
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.scheduler is not None and ckpt.get("scheduler") is not None:
            self.scheduler.load_state_dict(ckpt["scheduler"])
        if self.ema is not None and ckpt.get("ema") is not None:
            self.ema.load_state_dict(ckpt["ema"])
        set_rng_state(ckpt["rng"])
        s = self.state
        s.epoch = int(ckpt["epoch"])
        s.best_loss = float(ckpt["best_loss"])
        s.best_epoch = int(ckpt["best_epoch"])
        s.bad_evals = int(ckpt["bad_evals"])
        s.n_skipped = int(ckpt["n_skipped"])
        s.best_state = ckpt.get("best_state")

    def resume(self) -> bool:
        """Load the newest checkpoint of the run directory; False if there is none."""
        path = latest_checkpoint(self.ckpt_dir)
        if path is None:
            return False
        self.load_state_dict(load_checkpoint(path, map_location=self.device))
        if self.hooks.is_main and self.metrics_path.is_file():
            # drop records of epochs after the checkpoint (the run was killed before checkpointing them)
            lines = self.metrics_path.read_text().splitlines()
            kept = [ln for ln in lines if ln.strip() and json.loads(ln).get("epoch", 0) <= self.state.epoch]
            atomic_write_text(self.metrics_path, "".join(ln + "\n" for ln in kept))
        if self.hooks.is_main:
            self.log(f"resumed from {path} (epoch {self.state.epoch} done)")
        return True

    def save(self) -> Path | None:
        self.hooks.barrier()
        path = None
        if self.hooks.is_main:
            path = save_checkpoint(self.state_dict(), self.ckpt_dir, self.state.epoch, self.cfg.checkpoint.keep)
        self.hooks.barrier()
        return path

    # ----------------------------------------------------------------------------------- helpers
    def _stage_two_active(self, epoch: int) -> bool:
        start = self.cfg.stage_two.first_epoch(self.cfg.train.max_epochs)
        return start is not None and epoch >= start

    def _apply_stage(self, epoch: int) -> None:
        """Set the loss weights of the current stage; switch lr when stage two begins (1-based epoch)."""
        st = self.cfg.stage_two
        if not self._stage_two_active(epoch):
            self.loss_fn.weights = copy.copy(self.base_weights)
            return
        w = LossWeights(
            energy=st.energy_weight if st.energy_weight is not None else self.base_weights.energy,
            forces=st.forces_weight if st.forces_weight is not None else self.base_weights.forces,
            stress=st.stress_weight if st.stress_weight is not None else self.base_weights.stress,
            virials=st.virials_weight if st.virials_weight is not None else self.base_weights.virials,
        )
        self.loss_fn.weights = w
        self.compute_stress = self.loss_fn.needs_stress() or self.base_compute_stress
        if epoch == st.first_epoch(self.cfg.train.max_epochs):
            if st.lr is not None:
                set_lr(self.optimizer, st.lr)
            # the validation loss changes meaning with the weights: the best model restarts
            self.state.best_loss = math.inf
            self.state.bad_evals = 0
            if self.hooks.is_main:
                weights = ", ".join(f"{k} {getattr(w, k):g}" for k in ("energy", "forces", "stress", "virials"))
                self.log(f"stage two from epoch {epoch}: loss weights {weights}; lr {self.lr:g}")

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def _to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {k: (v.to(self.device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}

    def _write_metrics(self, record: dict[str, Any]) -> None:
        if not self.hooks.is_main:
            return
        self.metrics_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.metrics_path, "a") as fh:
            fh.write(json.dumps(record) + "\n")

    # ----------------------------------------------------------------------------------- epochs
    def train_epoch(self, epoch: int) -> float:
        """One pass over the training loader; returns the mean training loss."""
        self.hooks.set_epoch(self.train_loader, epoch)
        self.train_module.train()
        cfg = self.cfg.train
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        n_batches = torch.zeros((), dtype=torch.float64, device=self.device)
        # a bar on a terminal, plain lines with an ETA every 10 % or minute otherwise (mlip.train.progress)
        bar = progress_bar(self.train_loader, f"epoch {epoch}/{cfg.max_epochs}",
                           enabled=cfg.progress and self.hooks.is_main, log=self.log)
        for i, batch in enumerate(bar, start=1):
            batch = self._to_device(batch)
            self.optimizer.zero_grad(set_to_none=True)
            loss, _terms = self._forward_loss(batch)
            finite = self.hooks.all_true(bool(torch.isfinite(loss)))
            grad_norm = None
            if finite:
                loss.backward()
                if self.compiled_step is not None:
                    self.compiled_step.first_step_done()  # logs the compilation time, once
                if cfg.clip_grad is not None:
                    grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_grad)
                    finite = bool(torch.isfinite(grad_norm))
            if not finite:
                what = "loss" if grad_norm is None else "gradient norm"
                if cfg.on_nonfinite == "skip":
                    self.state.n_skipped += 1
                    self.optimizer.zero_grad(set_to_none=True)
                    continue
                last = latest_checkpoint(self.ckpt_dir)
                keep = f"last good checkpoint kept: {last}" if last else "no checkpoint written yet"
                raise NonFiniteLossError(
                    f"non-finite {what} ({float(loss.detach())}) at epoch {epoch}, batch {i}; {keep} "
                    f"(set train.on_nonfinite=skip to skip such batches)"
                )
            self.optimizer.step()
            if self.ema is not None:
                self.ema.update()
            loss_sum += loss.detach().double()
            n_batches += 1
            if cfg.progress and self.hooks.is_main:
                bar.set_postfix(loss=f"{float(loss.detach()):.4g}", refresh=False)
            del loss, _terms  # free the graph before the next batch is built
        bar.close()
        totals = self.hooks.all_reduce_sum(torch.stack([loss_sum, n_batches])).cpu()
        return float(totals[0] / totals[1]) if float(totals[1]) > 0 else math.nan

    def _forward_loss(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Model with forces (and stress) by autograd, ``create_graph``, and the loss; compiled or eager."""
        if self.compiled_step is not None:
            return self.compiled_step(batch, self.compute_stress)
        out = self.train_module(batch, compute_forces=True, compute_stress=self.compute_stress, training=True)
        return self.loss_fn(batch, out)

    def evaluate_split(self, source: EvalSource) -> tuple[FrameErrors, float | None]:
        """Errors and mean loss on ``source`` with the EMA weights."""
        stress = self.compute_stress or self.eval_stress
        if self.ema is not None:
            with self.ema.average_parameters():
                result = evaluate(self.model, source.batches, self.heads, stress, self.loss_fn, self.device)
        else:
            result = evaluate(self.model, source.batches, self.heads, stress, self.loss_fn, self.device)
        return self.hooks.reduce_eval(*result)

    def _ema_state(self) -> dict[str, torch.Tensor]:
        if self.ema is not None:
            with self.ema.average_parameters():
                return {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def fit(self) -> TrainState:
        """Train from ``state.epoch + 1`` to ``train.max_epochs`` (or early stop)."""
        cfg = self.cfg
        s = self.state
        self.base_compute_stress = self.compute_stress
        epoch_times: list[float] = []
        for epoch in range(s.epoch + 1, cfg.train.max_epochs + 1):
            self._apply_stage(epoch)
            t0 = time.perf_counter()
            train_loss = self.train_epoch(epoch)
            record: dict[str, Any] = {
                "epoch": epoch,
                "lr": self.lr,
                "train_loss": train_loss,
                "epoch_time_s": None,
                "n_skipped": s.n_skipped,
            }
            last = epoch == cfg.train.max_epochs
            stop = False
            if self.valid is not None and (epoch % cfg.train.eval_interval == 0 or last):
                errors, valid_loss = self.evaluate_split(self.valid)
                record["valid_loss"] = valid_loss
                record["valid"] = errors.grouped()
                if self.scheduler is not None and isinstance(
                    self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau
                ):
                    self.scheduler.step(valid_loss)
                improved = valid_loss is not None and valid_loss < s.best_loss
                if improved:
                    s.best_loss = float(valid_loss)
                    s.best_epoch = epoch
                    s.bad_evals = 0
                    s.best_state = self._ema_state()
                    if self.on_improve is not None and self.hooks.is_main:
                        self._call_on_improve(s.best_state, epoch)
                else:
                    s.bad_evals += 1
                if self.hooks.is_main:
                    mark = " *" if improved else ""
                    self.log(
                        format_table(
                            record["valid"],
                            f"epoch {epoch}: train loss {train_loss:.5g}, valid loss {valid_loss:.5g}{mark}, "
                            f"lr {self.lr:.3g}",
                        )
                    )
                if cfg.train.patience is not None and s.bad_evals >= cfg.train.patience:
                    stop = True
            elif self.hooks.is_main:
                self.log(f"epoch {epoch}: train loss {train_loss:.5g}, lr {self.lr:.3g}")
            if self.scheduler is not None and not isinstance(
                self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau
            ):
                self.scheduler.step()
            if self.valid is None:
                s.best_epoch = epoch
                s.best_state = self._ema_state()
            record["epoch_time_s"] = time.perf_counter() - t0
            epoch_times.append(record["epoch_time_s"])
            if cfg.train.progress and self.hooks.is_main:
                self.log(run_eta_line(epoch, cfg.train.max_epochs, epoch_times))
            s.epoch = epoch
            self._write_metrics(record)
            if epoch % cfg.checkpoint.interval == 0 or last or stop:
                self.save()
            if stop:
                s.stopped_early = True
                if self.hooks.is_main:
                    self.log(f"early stopping at epoch {epoch}: no improvement for {s.bad_evals} evaluations")
                break
        return s

    def _call_on_improve(self, state: dict[str, torch.Tensor], epoch: int) -> None:
        current = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.model.load_state_dict(state)
        try:
            assert self.on_improve is not None
            self.on_improve(self.model, epoch)
        finally:
            self.model.load_state_dict(current)

    def load_best(self) -> None:
        """Put the best (EMA) weights into ``model``."""
        if self.state.best_state is not None:
            self.model.load_state_dict(self.state.best_state)
