#!/usr/bin/env python
"""Roofline of one mlip energy+forces call (issue 24): FLOPs, bytes and time of each block of the model.

The model is ``mp64`` (scripts/benchmark_inference_common.py: 64x0e + 64x1o, max_ell 3, correlation 3,
2 interactions, density-normalised interactions, ZBL, Agnesi transform) with the issue's settings
(``num_bessel`` 10, ``avg_num_neighbors`` 30, ``atomic_inter_scale`` 0.8) and random weights (seed 0),
evaluated by ``MLIPCalculator(compile=False)`` (eager) on a diamond Si cell of ``8 * cells**3`` atoms
(``--atoms-cells``, default 4: 512 atoms), one thread, for each of ``--dtypes``.

Every aten op of the call is seen by a ``TorchDispatchMode`` (:class:`OpRecorder`), which times it
(``time.perf_counter`` around the op), counts its FLOPs and bytes and gives them to a block of the model.
Blocks are module paths (:data:`MODEL_BLOCKS`); the op goes to the innermost block listed in
``ModuleTracker.parents`` (innermost: the one entered last, the deeper one on a tie), forward and backward
(``ModuleTracker.is_bw``) separately; ``other`` is whatever ran outside them: the model's glue (edge
vectors, node embedding, the interactions' own cutoff/density normalisation, the energy scatter) and
the calculator. In the backward ModuleTracker enters a module when the gradient of its output is ready
and leaves it only when the op that made its input runs, so a glue op of the backward goes to the block
entered last (attribution there is approximate; the forward's is exact).

Counting rules (a model of the work, not a hardware counter):

* FLOPs: matmul-family ops (mm, addmm, bmm, baddbmm, ...) by ``torch.utils.flop_counter``'s formulas
  (2 per multiply-add); element-wise ops (torch's ``pointwise`` tag) one FLOP per output element, pure
  copies (clone, casts, fills) none; reductions (``reduction`` tag) and accumulating scatters
  (index_add, scatter_add, index_put with accumulate) one FLOP per input (source) element; data
  movement (views, gathers, cat, slicing) none.
* bytes: the sum of the sizes of the distinct tensors an op reads and writes (its inputs and outputs;
  an expanded tensor counts its storage), views none. No cache model: it is each op's compulsory
  traffic, a lower bound of what an op moves when nothing stays cached between ops (an op re-reading
  data it evicted moves more; data still cached from the previous op is counted anyway).

Columns of the per-block tables:

* ``MFLOP``, ``MB``: FLOPs (1e6) and bytes (1e6) of the block's ops in that pass, by the rules above;
* ``ms``: the summed wall time of those ops (median over ``--repeats`` instrumented calls); ``time %``
  its share of the summed time of all ops of the call;
* ``GFLOP/s``: achieved rate, FLOPs / ms; ``FLOP/B``: arithmetic intensity, FLOPs / bytes;
* ``bound``: ``memory`` when the intensity is below the ridge point (matmul peak / copy bandwidth of
  the dtype), else ``compute``;
* ``% roof``: the achieved rate over the roofline's bound ``min(peak, intensity * bandwidth)``.

The peaks are measured on this core: GFLOP/s of an ``n x n`` matmul (``--peak-size``, median of 3) and
GB/s of a ``--copy-mib`` tensor copy (bytes read + written, median of 5). The call is also timed with
no dispatch mode (``plain``, median of ``--plain-repeats``), so the instrumentation's overhead shows.
FLOPs and bytes are deterministic; times are wall times, so a core shared with other work makes them
(and the peaks) noisy: use more ``--repeats`` there.

Example::

    OMP_NUM_THREADS=1 python scripts/roofline.py --dtypes float64 float32 --repeats 3 --markdown roofline.md
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import flop_registry
from torch.utils.module_tracker import ModuleTracker

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark_inference_common import MODEL_EXTRAS, MODELS, mace_hyperparameters  # noqa: E402

if TYPE_CHECKING:
    import ase

    from mlip.calculator import MLIPCalculator

ISSUE_SETTINGS: dict[str, Any] = {"num_bessel": 10, "avg_num_neighbors": 30.0, "atomic_inter_scale": 0.8}
"""Issue 24's mp64 settings, over those of benchmark_inference_common."""

OTHER = "other"
MODEL_BLOCKS: tuple[tuple[str, str], ...] = (
    ("radial embedding", r"radial_embedding"),
    ("spherical harmonics", r"spherical_harmonics"),
    ("radial MLP", r"interactions\.\d+\.(radial|density)"),
    ("conv TP", r"interactions\.\d+\.conv"),
    ("interaction linears", r"interactions\.\d+\.(linear_up|linear|skip)"),
    ("symmetric contraction", r"products\.\d+"),
    ("readouts", r"readouts\.\d+"),
    ("ZBL", r"pair"),
)
"""(block, module path pattern): the pattern matches the end of a module's ModuleTracker name."""

aten = torch.ops.aten
COPIES = {aten.clone, aten._to_copy, aten.copy_, aten.fill_, aten.zero_}
ACCUMULATES = {aten.index_add: "source", aten.index_add_: "source", aten.scatter_add: "src",
               aten.scatter_add_: "src", aten.scatter_reduce: "src", aten.scatter_reduce_: "src",
               aten.index_put: "values", aten.index_put_: "values", aten._index_put_impl_: "values"}
"""Accumulating scatters and the argument whose elements each cost one FLOP."""
VIEWS = {aten._unsafe_view}
"""Views whose schema does not say so."""


# ------------------------------------------------------------------------------------------
# counting one op
# ------------------------------------------------------------------------------------------
@dataclass
class Cost:
    """FLOPs, bytes, seconds and number of ops of a (block, pass)."""

    flops: int = 0
    bytes: int = 0
    seconds: float = 0.0
    ops: int = 0


def _tensors(tree: Any) -> list[torch.Tensor]:
    return [t for t in tree_flatten(tree)[0] if isinstance(t, torch.Tensor)]


def _is_view(func: torch._ops.OpOverload) -> bool:
    returns = func._schema.returns
    return func.overloadpacket in VIEWS or any(r.alias_info is not None and not r.alias_info.is_write for r in returns)


def _argument(func: torch._ops.OpOverload, name: str, args: tuple, kwargs: dict) -> Any:
    names = [a.name for a in func._schema.arguments]
    return kwargs[name] if name in kwargs else (args[names.index(name)] if names.index(name) < len(args) else None)


def op_flops(func: torch._ops.OpOverload, args: tuple, kwargs: dict, out: Any) -> int:
    """FLOPs of one op by the module docstring's rules."""
    packet = func.overloadpacket
    if packet in flop_registry:
        return int(flop_registry[packet](*args, **kwargs, out_val=out))
    if packet in ACCUMULATES:
        if packet in (aten.index_put, aten.index_put_, aten._index_put_impl_) and not _argument(
            func, "accumulate", args, kwargs
        ):
            return 0
        return _argument(func, ACCUMULATES[packet], args, kwargs).numel()
    if torch.Tag.reduction in func.tags:
        return _tensors(args)[0].numel()
    if torch.Tag.pointwise in func.tags and packet not in COPIES:
        return sum(t.numel() for t in _tensors(out))
    return 0


def _nbytes(t: torch.Tensor) -> int:
    return min(t.numel() * t.element_size(), t.untyped_storage().nbytes())


def op_bytes(func: torch._ops.OpOverload, args: tuple, kwargs: dict, out: Any) -> int:
    """Bytes of the distinct tensors an op reads and writes (0 for a view)."""
    if _is_view(func):
        return 0
    distinct = {id(t): t for t in _tensors((args, kwargs)) + _tensors(out)}
    return sum(_nbytes(t) for t in distinct.values())


# ------------------------------------------------------------------------------------------
# the dispatch mode
# ------------------------------------------------------------------------------------------
class OpRecorder(TorchDispatchMode):
    """Time, FLOPs and bytes of every aten op, summed by ``(block, "fwd" | "bwd")``."""

    def __init__(self, tracker: ModuleTracker, blocks: Sequence[tuple[str, str]] = MODEL_BLOCKS) -> None:
        super().__init__()
        self.tracker = tracker
        self.patterns = [(name, re.compile(r"(^|\.)(" + pattern + r")$")) for name, pattern in blocks]
        self.costs: dict[tuple[str, str], Cost] = {}
        self._entered: dict[str, int] = {}
        self._tick = 0
        self._block_of: dict[str, str | None] = {}

    def _module_block(self, name: str) -> str | None:
        if name not in self._block_of:
            self._block_of[name] = next((b for b, pattern in self.patterns if pattern.search(name)), None)
        return self._block_of[name]

    def block(self) -> str:
        """The innermost listed block among the tracker's parents (entered last; deeper on a tie)."""
        parents = self.tracker.parents
        self._tick += 1
        for name in [n for n in self._entered if n not in parents]:
            del self._entered[name]
        best: tuple[int, int, str] | None = None
        for name in parents:
            entered = self._entered.setdefault(name, self._tick)
            block = self._module_block(name)
            if block is not None and (best is None or (entered, name.count(".")) > best[:2]):
                best = (entered, name.count("."), block)
        return OTHER if best is None else best[2]

    def __torch_dispatch__(self, func: torch._ops.OpOverload, types: Any, args: tuple = (),
                           kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        start = time.perf_counter()
        out = func(*args, **kwargs)
        seconds = time.perf_counter() - start
        key = (self.block(), "bwd" if self.tracker.is_bw else "fwd")
        cost = self.costs.setdefault(key, Cost())
        cost.flops += op_flops(func, args, kwargs, out)
        cost.bytes += op_bytes(func, args, kwargs, out)
        cost.seconds += seconds
        cost.ops += 1
        return out


def profile_call(
    call: Callable[[], Any], blocks: Sequence[tuple[str, str]] = MODEL_BLOCKS
) -> tuple[dict[tuple[str, str], Cost], float]:
    """``(costs by (block, pass), wall seconds)`` of one instrumented ``call()``."""
    with ModuleTracker() as tracker, OpRecorder(tracker, blocks) as recorder:
        start = time.perf_counter()
        call()
        wall = time.perf_counter() - start
    return recorder.costs, wall


def median_costs(runs: list[dict[tuple[str, str], Cost]]) -> dict[tuple[str, str], Cost]:
    """Per key: the FLOPs/bytes/ops of the last run, the median seconds over the runs."""
    out = {}
    for key, last in runs[-1].items():
        seconds = statistics.median(run[key].seconds if key in run else 0.0 for run in runs)
        out[key] = Cost(last.flops, last.bytes, seconds, last.ops)
    return out


# ------------------------------------------------------------------------------------------
# the core's peaks
# ------------------------------------------------------------------------------------------
def _median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_peak(dtype: torch.dtype, n: int, repeats: int = 3) -> float:
    """GFLOP/s of an ``n x n`` matmul (2 n^3 FLOPs), median of ``repeats``."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    c = torch.empty(n, n, dtype=dtype)
    return 2 * n**3 / _median_seconds(lambda: torch.mm(a, b, out=c), repeats) / 1e9


def copy_bandwidth(mib: int, repeats: int = 5) -> float:
    """GB/s of a ``mib`` MiB tensor copy (bytes read + written), median of ``repeats``."""
    src = torch.ones(mib * 2**20 // 8, dtype=torch.float64)
    dst = torch.empty_like(src)
    return 2 * src.nbytes / _median_seconds(lambda: dst.copy_(src), repeats) / 1e9


# ------------------------------------------------------------------------------------------
# the model and the call
# ------------------------------------------------------------------------------------------
def make_calculator(dtype: str, settings: dict[str, Any] | None = None) -> MLIPCalculator:
    """``MLIPCalculator`` (eager) of mp64 with the issue's settings, random weights (seed 0)."""
    from mlip.calculator import MLIPCalculator
    from mlip.io.mace import hparams_from_mace
    from mlip.nn.model import build_model

    hparams = {**mace_hyperparameters(MODELS["mp64"], MODEL_EXTRAS["mp64"]), **ISSUE_SETTINGS, **(settings or {})}
    torch.manual_seed(0)
    model = build_model(hparams_from_mace(hparams, {}), dtype=torch.float64)
    return MLIPCalculator(model, dtype=dtype, compile=False)


def silicon(cells: int) -> ase.Atoms:
    """Diamond Si, the 8-atom cubic cell (a = 5.43 A) repeated ``cells`` times per side."""
    import ase.build

    return ase.build.bulk("Si", "diamond", a=5.43, cubic=True) * (cells, cells, cells)


@dataclass
class Measurement:
    """Everything the tables of one dtype need."""

    dtype: str
    atoms: int
    edges: int
    costs: dict[tuple[str, str], Cost]
    plain_s: float
    instrumented_s: float
    peak_gflops: float
    bandwidth_gbs: float

    @property
    def ridge(self) -> float:
        return self.peak_gflops / self.bandwidth_gbs


def measure(dtype: str, args: argparse.Namespace, bandwidth: float) -> Measurement:
    """Plain and instrumented energy+forces calls of one dtype, and its matmul peak."""
    calc = make_calculator(dtype)
    atoms = silicon(args.atoms_cells)
    batch = calc.make_batch(atoms)

    def call() -> None:
        calc.evaluate(batch)

    plain = _median_seconds(call, args.plain_repeats)  # its first call is the warm-up
    runs = [profile_call(call) for _ in range(args.repeats)]
    peak = matmul_peak(getattr(torch, dtype), args.peak_size)
    return Measurement(dtype, len(atoms), int(batch["edge_index"].shape[1]), median_costs([c for c, _ in runs]),
                       plain, statistics.median(w for _, w in runs), peak, bandwidth)


# ------------------------------------------------------------------------------------------
# tables
# ------------------------------------------------------------------------------------------
def _fmt(value: float, digits: int = 2) -> str:
    return f"{value:,.{digits}f}"


def block_row(label: str, cost: Cost, total_s: float, m: Measurement) -> str:
    """One markdown row of the per-block table."""
    rate = cost.flops / cost.seconds / 1e9 if cost.seconds > 0 else 0.0
    intensity = cost.flops / cost.bytes if cost.bytes else float("nan")
    roof = min(m.peak_gflops, intensity * m.bandwidth_gbs) if cost.bytes else m.peak_gflops
    bound = "memory" if intensity < m.ridge else "compute"
    cells = [label, _fmt(cost.flops / 1e6, 1), _fmt(cost.bytes / 1e6, 1), _fmt(1e3 * cost.seconds),
             _fmt(100 * cost.seconds / total_s, 1), _fmt(rate), _fmt(intensity), bound,
             _fmt(100 * rate / roof, 1) if roof > 0 else "-"]
    return "| " + " | ".join(cells) + " |"


def block_table(m: Measurement) -> list[str]:
    """The per-block table of one dtype (rows: block and pass), with its caption and a total line."""
    total = Cost()
    for cost in m.costs.values():
        total = Cost(total.flops + cost.flops, total.bytes + cost.bytes, total.seconds + cost.seconds,
                     total.ops + cost.ops)
    lines = [
        f"**mp64, {m.atoms} atoms, {m.edges} edges, {m.dtype}, eager, 1 thread: one energy+forces call.** "
        "FLOPs: matmul-family ops by torch.utils.flop_counter, element-wise ops 1 per output element, "
        "reductions and scatter-adds 1 per input element, copies and data movement 0. Bytes: sum of each "
        "op's distinct input and output tensors (a lower bound of traffic, no cache model). ms: summed op "
        f"wall time. Ridge {_fmt(m.ridge)} FLOP/B = {_fmt(m.peak_gflops)} GFLOP/s matmul peak / "
        f"{_fmt(m.bandwidth_gbs)} GB/s copy bandwidth.",
        "",
        "| block (pass) | MFLOP | MB | ms | time % | GFLOP/s | FLOP/B | bound | % roof |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for block in [name for name, _ in MODEL_BLOCKS] + [OTHER]:
        for phase in ("fwd", "bwd"):
            if (block, phase) in m.costs:
                lines.append(block_row(f"{block} ({phase})", m.costs[block, phase], total.seconds, m))
    lines.append(block_row("**all ops**", total, total.seconds, m))
    return lines + ["", total_line(m, total), ""]


def total_line(m: Measurement, total: Cost) -> str:
    """The whole call: FLOPs, achieved GFLOP/s (plain timing) and fraction of the matmul peak."""
    rate = total.flops / m.plain_s / 1e9
    return (
        f"Total: {_fmt(total.flops / 1e9, 3)} GFLOP, {_fmt(total.bytes / 1e9, 3)} GB in {total.ops} ops; "
        f"plain call {_fmt(1e3 * m.plain_s, 1)} ms -> {_fmt(rate)} GFLOP/s = "
        f"{_fmt(100 * rate / m.peak_gflops, 1)} % of the {m.dtype} matmul peak. Instrumented call "
        f"{_fmt(1e3 * m.instrumented_s, 1)} ms, of which {_fmt(1e3 * total.seconds, 1)} ms inside ops "
        f"(instrumented - plain: {_fmt(1e3 * (m.instrumented_s - m.plain_s), 1)} ms; the difference is the "
        "instrumentation's overhead when the core is quiet)."
    )


def peak_table(measurements: list[Measurement], args: argparse.Namespace) -> list[str]:
    """The core's measured peaks and ridge points."""
    lines = [
        f"**Core peaks (1 thread).** matmul: {args.peak_size}x{args.peak_size} mm, median of 3; "
        f"bandwidth: copy of a {args.copy_mib} MiB tensor (bytes read + written), median of 5.",
        "",
        "| dtype | matmul GFLOP/s | copy GB/s | ridge FLOP/B |",
        "|---|---:|---:|---:|",
    ]
    for m in measurements:
        lines.append(f"| {m.dtype} | {_fmt(m.peak_gflops)} | {_fmt(m.bandwidth_gbs)} | {_fmt(m.ridge)} |")
    return lines + [""]


# ------------------------------------------------------------------------------------------
# main
# ------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dtypes", nargs="+", default=["float64", "float32"], choices=["float64", "float32"])
    parser.add_argument("--atoms-cells", type=int, default=4, help="8-atom cubic cells per side (4: 512 atoms)")
    parser.add_argument("--repeats", type=int, default=3, help="instrumented calls (median)")
    parser.add_argument("--plain-repeats", type=int, default=3, help="plain calls after one warm-up (median)")
    parser.add_argument("--peak-size", type=int, default=2048, help="n of the n x n peak matmul")
    parser.add_argument("--copy-mib", type=int, default=256, help="MiB of the bandwidth copy")
    parser.add_argument("--markdown", type=Path, help="also write the tables to this file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[str]:
    args = parse_args(argv)
    torch.set_num_threads(1)
    bandwidth = copy_bandwidth(args.copy_mib)
    measurements = [measure(dtype, args, bandwidth) for dtype in args.dtypes]
    lines = peak_table(measurements, args)
    for m in measurements:
        lines += block_table(m)
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    return lines


if __name__ == "__main__":
    main()
