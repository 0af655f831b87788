"""Molecular-dynamics stability checks (issue 27): a short NVT run with energy/temperature traces, the radial
distribution function of its last frames and a verdict on atoms that come unphysically close.

The calculator is an argument (duck-typed ASE calculator; normally :class:`mlip.calculator.MLIPCalculator`).
Results carry every setting (temperature, timestep, steps, friction, seed, thermostat, thresholds, RDF bins)
and the wall-clock seconds. Units: K, fs, eV, Angstrom.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms, units
from ase.md import velocitydistribution

from mlip.analysis.properties import figure_grid, png_bytes
from mlip.files import atomic_write_bytes

__all__ = ["MDResult", "closest_pair", "max_rdf_radius", "min_pair_distance", "nvt_md", "plot_md", "rdf"]


def closest_pair(atoms: Atoms) -> tuple[float, int, int]:
    """Smallest interatomic distance (A, minimum image along periodic directions) and its pair ``(i, j)``, i < j;
    ``(inf, -1, -1)`` for fewer than two atoms. O(N^2) memory: meant for checks of up to a few thousand atoms."""
    if len(atoms) < 2:
        return float("inf"), -1, -1
    d = atoms.get_all_distances(mic=bool(np.any(atoms.pbc)))
    d[np.tril_indices(len(atoms))] = np.inf
    i, j = np.unravel_index(int(np.argmin(d)), d.shape)
    return float(d[i, j]), int(i), int(j)


def min_pair_distance(frames: list[Atoms]) -> float:
    """Smallest interatomic distance (A) over all ``frames`` (e.g. a training set)."""
    return min(closest_pair(a)[0] for a in frames)


def max_rdf_radius(atoms: Atoms) -> float:
    """Largest radius (A) the minimum-image RDF counts completely: half the smallest perpendicular width of
    the cell along its periodic directions (``inf`` without periodic directions)."""
    widths = 1.0 / np.linalg.norm(atoms.cell.reciprocal(), axis=1) if np.any(atoms.pbc) else np.array([])
    periodic = widths[np.asarray(atoms.pbc)] if len(widths) else widths
    return float(periodic.min() / 2) if len(periodic) else float("inf")


def rdf(frames: list[Atoms], r_max: float = 5.0, bins: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Radial distribution function averaged over ``frames``: bin centres ``r`` [bins] (A) and ``g`` [bins].

    All pairs with the minimum image (periodic cells; ``r_max`` should stay below half the smallest cell
    width). Periodic: ``g = counts / (N rho 4 pi r^2 dr)`` with ``rho = N / V`` so ``g -> 1`` at large r.
    Open boundaries: no volume, so ``g`` is the pair density per atom ``counts / (N 4 pi r^2 dr)`` (A^-3).
    """
    if r_max > max_rdf_radius(frames[0]) + 1e-9:
        raise ValueError(f"rdf: r_max {r_max} A exceeds half the cell width ({max_rdf_radius(frames[0]):.3f} A)")
    edges = np.linspace(0.0, r_max, bins + 1)
    counts = np.zeros(bins)
    for atoms in frames:
        d = atoms.get_all_distances(mic=bool(np.any(atoms.pbc)))
        pairs = d[~np.eye(len(atoms), dtype=bool)]
        counts += np.histogram(pairs, bins=edges)[0]
    shell = 4 / 3 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    n = len(frames[0])
    density = n / frames[0].get_volume() if np.all(frames[0].pbc) else 1.0
    return (edges[1:] + edges[:-1]) / 2, counts / (len(frames) * n * density * shell)


@dataclass
class MDResult:
    """An NVT run and its checks.

    Settings: ``temperature_K``, ``timestep_fs``, ``steps``, ``friction_per_fs`` (Langevin; Bussi uses
    ``taut = 1 / friction`` fs), ``seed``, ``thermostat``, ``fraction``, ``min_training_distance`` (A),
    ``threshold`` (A, = fraction * min_training_distance), ``rdf_frames``, ``rdf_r_max`` (A, the radius used:
    the requested one capped at :func:`max_rdf_radius`).
    Traces [steps + 1] (step 0 = start): ``time_fs``, ``potential_energy`` and ``total_energy`` (eV),
    ``temperature`` (K), ``min_distance`` (A). ``rdf_r`` / ``rdf_g`` from the last ``rdf_frames`` frames.
    ``verdict``: ``"stable"`` or ``"unstable: atoms i,j at d A at step s"`` (first step below the threshold).
    ``seconds``: wall time of the run and checks.
    """

    temperature_K: float
    timestep_fs: float
    steps: int
    friction_per_fs: float
    seed: int
    thermostat: str
    fraction: float
    min_training_distance: float
    threshold: float
    rdf_frames: int
    rdf_r_max: float
    time_fs: np.ndarray
    potential_energy: np.ndarray
    total_energy: np.ndarray
    temperature: np.ndarray
    min_distance: np.ndarray
    rdf_r: np.ndarray
    rdf_g: np.ndarray
    verdict: str
    seconds: float


def _thermostat(atoms: Atoms, name: str, temperature_K: float, timestep_fs: float, friction: float, seed: int) -> Any:
    """The ASE NVT integrator ``name`` ("langevin" or "bussi") for ``atoms``."""
    rng = np.random.default_rng(seed)
    if name == "langevin":
        from ase.md.langevin import Langevin

        return Langevin(atoms, timestep_fs * units.fs, temperature_K=temperature_K, friction=friction / units.fs,
                        fixcm=False, rng=rng)
    if name == "bussi":
        from ase.md.bussi import Bussi

        return Bussi(atoms, timestep_fs * units.fs, temperature_K, (1.0 / friction) * units.fs, rng=rng)
    raise ValueError(f"thermostat must be 'langevin' or 'bussi', got {name!r}")


def _thermalize(atoms: Atoms, temperature_K: float, seed: int) -> None:
    """Maxwell-Boltzmann momenta at ``temperature_K`` (K) from ``seed``, centre of mass at rest
    (``thermalize_momenta`` of ASE >= 3.29, else ``MaxwellBoltzmannDistribution``)."""
    rng = np.random.default_rng(seed)
    if hasattr(velocitydistribution, "thermalize_momenta"):
        velocitydistribution.thermalize_momenta(atoms, temperature_K, rng=rng)
    else:
        velocitydistribution.MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K, rng=rng)
    velocitydistribution.Stationary(atoms)


def _verdict(closest: list[tuple[float, int, int]], threshold: float) -> str:
    """``"stable"`` or the first step whose closest pair is below ``threshold`` (A)."""
    for step, (d, i, j) in enumerate(closest):
        if d < threshold:
            return f"unstable: atoms {i},{j} at {d:.3f} A at step {step}"
    return "stable"


def nvt_md(atoms: Atoms, calc: Any, temperature_K: float = 300.0, timestep_fs: float = 1.0, steps: int = 200,
           friction: float = 0.01, seed: int = 0, thermostat: str = "langevin", fraction: float = 0.5,
           min_training_distance: float | None = None, rdf_frames: int = 10, rdf_r_max: float = 5.0,
           rdf_bins: int = 100) -> MDResult:
    """NVT MD of a copy of ``atoms`` (velocities Maxwell-Boltzmann at ``temperature_K`` from ``seed``, centre of
    mass at rest), recording traces every step, the RDF of the last frames, and the stability verdict.

    ``friction`` is in 1/fs. ``min_training_distance`` (A; see :func:`min_pair_distance`) defaults to the
    closest pair of the start structure.
    """
    start = time.perf_counter()
    work = atoms.copy()
    work.calc = calc
    _thermalize(work, temperature_K, seed)
    reference = min_pair_distance([atoms]) if min_training_distance is None else float(min_training_distance)
    dyn = _thermostat(work, thermostat, temperature_K, timestep_fs, friction, seed)
    epot, etot, temp, closest, last = [], [], [], [], []
    for step in range(steps + 1):
        if step:
            dyn.run(1)
        e = work.get_potential_energy()
        epot.append(e)
        etot.append(e + work.get_kinetic_energy())
        temp.append(work.get_temperature())
        closest.append(closest_pair(work))
        last = (last + [work.copy()])[-rdf_frames:]
    rdf_r_max = min(rdf_r_max, max_rdf_radius(work))
    r, g = rdf(last, rdf_r_max, rdf_bins)
    return MDResult(temperature_K, timestep_fs, steps, friction, seed, thermostat, fraction, reference,
                    fraction * reference, len(last), rdf_r_max, np.arange(steps + 1) * timestep_fs, np.array(epot),
                    np.array(etot), np.array(temp), np.array([c[0] for c in closest]), r, g,
                    _verdict(closest, fraction * reference), time.perf_counter() - start)


def plot_md(result: MDResult, path: str | Path) -> Path:
    """Energy and temperature traces and the RDF of an :class:`MDResult`, with the settings in the titles (PNG)."""
    fig, axes = figure_grid(3)
    ax_e, ax_t, ax_g = axes[0]
    ax_e.plot(result.time_fs, result.total_energy, label="total")
    ax_e.plot(result.time_fs, result.potential_energy, label="potential")
    ax_e.set(xlabel="time (fs)", ylabel="energy (eV)",
             title=f"{result.thermostat} {result.temperature_K:g} K, dt {result.timestep_fs:g} fs")
    ax_e.legend(fontsize=8)
    ax_t.plot(result.time_fs, result.temperature)
    ax_t.axhline(result.temperature_K, color="grey", ls=":")
    ax_t.set(xlabel="time (fs)", ylabel="temperature (K)", title=f"{result.steps} steps, seed {result.seed}")
    ax_g.plot(result.rdf_r, result.rdf_g)
    ax_g.axvline(result.threshold, color="red", ls=":", label=f"{result.fraction:g} x d_min(train)")
    ax_g.set(xlabel="r (A)", ylabel="g(r)", title=f"RDF, last {result.rdf_frames} frames; {result.verdict}")
    ax_g.legend(fontsize=8)
    atomic_write_bytes(path, png_bytes(fig))
    return Path(path)
