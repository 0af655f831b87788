"""Physical-property checks of a potential (issue 27): equation of state, elastic tensor, stress parity,
molecular vibrations and relative-energy parity, plus short PNG plots of the results.

Every function takes an ASE calculator object (duck-typed; normally :class:`mlip.calculator.MLIPCalculator`,
which this layer may not import) and returns a dataclass or dict holding the numbers *and* the settings that
produced them, with the wall-clock seconds the step took, so a report never shows a number without its setting.

Conventions:

* Stress follows ASE: Voigt order ``xx yy zz yz xz xy``, positive for a stretched (tensile) cell, i.e. the
  usual continuum sign ``sigma = (1/V) dE/d eps``. Hence ``C_ij = d sigma_i / d eps_j`` with ASE's stress as is;
  a stable crystal has ``C11 > 0``.
* Voigt strains 4-6 are engineering shears: ``gamma_yz = 2 eps_yz`` (likewise xz, xy).
* Strains deform the cell as ``cell -> cell @ (I + eps)`` with the atoms scaled along (fractional
  coordinates kept).
* Units: energies eV, lengths Angstrom, volumes A^3, moduli and stresses GPa, frequencies cm^-1.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms, units
from ase.eos import EquationOfState
from ase.optimize import BFGS

from mlip.files import atomic_write_bytes

__all__ = [
    "EOSResult", "ElasticResult", "VibrationResult", "equation_of_state", "elastic_tensor", "stress_parity",
    "elastic_constants_energy", "ENERGY_MODES",
    "vibrational_frequencies", "finite_difference_hessian", "relative_energy_parity", "reference_energy",
    "reference_stress", "plot_eos", "plot_parity", "png_bytes", "figure_grid", "hessian_to_frequencies",
    "is_linear", "voigt_strain", "voigt_reuss_hill",
]

VOIGT_PAIRS = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))
"""Voigt index -> Cartesian pair (xx yy zz yz xz xy)."""


# --------------------------------------------------------------------------------------------- helpers
def _with_calc(atoms: Atoms, calc: Any) -> Atoms:
    """A copy of ``atoms`` (constraints and info kept) with ``calc`` attached."""
    copy = atoms.copy()
    copy.calc = calc
    return copy


def _strained(atoms: Atoms, eps: np.ndarray) -> Atoms:
    """Copy of ``atoms`` with the cell deformed by the symmetric strain ``eps`` [3,3] (atoms scaled)."""
    out = atoms.copy()
    out.set_cell(atoms.cell.array @ (np.eye(3) + eps), scale_atoms=True)
    return out


def voigt_strain(index: int, value: float) -> np.ndarray:
    """Symmetric strain tensor [3,3] for Voigt component ``index`` (0-5) of size ``value``
    (engineering shear for 3-5: the two off-diagonal entries are ``value / 2``)."""
    eps = np.zeros((3, 3))
    i, j = VOIGT_PAIRS[index]
    if i == j:
        eps[i, i] = value
    else:
        eps[i, j] = eps[j, i] = value / 2
    return eps


# --------------------------------------------------------------------------------------------- EOS
@dataclass
class EOSResult:
    """Birch-Murnaghan fit of an isotropic volume scan.

    ``strains`` [n] are linear strains (cell scaled by ``1 + s``; volume by ``(1 + s)^3``);
    ``volumes`` [n] (A^3), ``energies`` [n] (eV); ``v0`` (A^3), ``e0`` (eV), ``b0_gpa`` (GPa);
    ``eos`` the ASE EOS name; ``n_atoms``; ``seconds`` wall time of the scan and fit.
    """

    strains: np.ndarray
    volumes: np.ndarray
    energies: np.ndarray
    v0: float
    e0: float
    b0_gpa: float
    eos: str
    n_atoms: int
    seconds: float


def equation_of_state(atoms: Atoms, calc: Any, strains: Any = np.linspace(-0.04, 0.04, 9)) -> EOSResult:
    """Energy of ``atoms`` isotropically scaled by ``1 + s`` for each linear strain ``s`` and the
    Birch-Murnaghan fit (``ase.eos.EquationOfState(..., eos="birchmurnaghan")``)."""
    start = time.perf_counter()
    strains = np.asarray(strains, dtype=float)
    volumes, energies = [], []
    for s in strains:
        scaled = _with_calc(_strained(atoms, s * np.eye(3)), calc)
        volumes.append(scaled.get_volume())
        energies.append(scaled.get_potential_energy())
    fit = EquationOfState(volumes, energies, eos="birchmurnaghan")
    v0, e0, b0 = fit.fit()
    return EOSResult(strains, np.array(volumes), np.array(energies), float(v0), float(e0), float(b0 / units.GPa),
                     "birchmurnaghan", len(atoms), time.perf_counter() - start)


# --------------------------------------------------------------------------------------------- elastic
@dataclass
class ElasticResult:
    """Elastic constants from stress-strain fits.

    ``c_gpa`` [6,6] raw fit ``C_ij = d sigma_i / d eps_j`` (GPa, Voigt order, engineering shears);
    ``c_sym_gpa`` its symmetric part (used for the moduli); ``s_inv_gpa`` = inverse of ``c_sym`` (1/GPa);
    ``stresses_gpa`` [6, n_strains, 6] the stresses behind the fit; bulk/shear moduli (GPa) by Voigt,
    Reuss and Hill; settings ``strains``, ``relax_ions``, ``fmax`` (eV/A), ``steps``; ``relax_steps`` [6, n]
    optimiser steps used, ``max_residual_force`` (eV/A) after relaxation; ``seconds``.
    """

    c_gpa: np.ndarray
    c_sym_gpa: np.ndarray
    s_inv_gpa: np.ndarray
    stresses_gpa: np.ndarray
    bulk_voigt: float
    bulk_reuss: float
    bulk_hill: float
    shear_voigt: float
    shear_reuss: float
    shear_hill: float
    strains: tuple[float, ...]
    relax_ions: bool
    fmax: float
    steps: int
    relax_steps: np.ndarray
    max_residual_force: float
    seconds: float


def _relaxed_at_fixed_cell(atoms: Atoms, calc: Any, relax: bool, fmax: float, steps: int) -> tuple[Atoms, int, float]:
    """Copy of ``atoms`` with ``calc`` after an optional fixed-cell BFGS relaxation (``fmax`` eV/A, at most
    ``steps``); optimiser steps used; max residual force (eV/A)."""
    work = _with_calc(atoms, calc)
    used = 0
    if relax and len(work) > 1:
        opt = BFGS(work, logfile=None)
        opt.run(fmax=fmax, steps=steps)
        used = int(opt.nsteps)
    return work, used, float(np.linalg.norm(work.get_forces(), axis=1).max())


def _relaxed_stress(atoms: Atoms, calc: Any, relax: bool, fmax: float, steps: int) -> tuple[np.ndarray, int, float]:
    """ASE Voigt stress (GPa) of ``atoms`` after an optional fixed-cell BFGS relaxation; steps used; max force."""
    work, used, force = _relaxed_at_fixed_cell(atoms, calc, relax, fmax, steps)
    return work.get_stress(voigt=True) / units.GPa, used, force


def voigt_reuss_hill(c: np.ndarray) -> dict[str, float]:
    """Bulk and shear moduli (units of ``c``) by Voigt (from C), Reuss (from S = C^-1) and Hill (mean)."""
    s = np.linalg.inv(c)
    bv = (c[0, 0] + c[1, 1] + c[2, 2] + 2 * (c[0, 1] + c[1, 2] + c[0, 2])) / 9
    gv = (c[0, 0] + c[1, 1] + c[2, 2] - (c[0, 1] + c[1, 2] + c[0, 2]) + 3 * (c[3, 3] + c[4, 4] + c[5, 5])) / 15
    br = 1 / (s[0, 0] + s[1, 1] + s[2, 2] + 2 * (s[0, 1] + s[1, 2] + s[0, 2]))
    gr = 15 / (4 * (s[0, 0] + s[1, 1] + s[2, 2]) - 4 * (s[0, 1] + s[1, 2] + s[0, 2])
               + 3 * (s[3, 3] + s[4, 4] + s[5, 5]))
    return {"bulk_voigt": float(bv), "bulk_reuss": float(br), "bulk_hill": float((bv + br) / 2),
            "shear_voigt": float(gv), "shear_reuss": float(gr), "shear_hill": float((gv + gr) / 2)}


def elastic_tensor(atoms: Atoms, calc: Any, strains: Any = (-0.01, -0.005, 0.005, 0.01), relax_ions: bool = True,
                   fmax: float = 1e-3, steps: int = 200) -> ElasticResult:
    """Elastic tensor ``C`` (GPa) of a periodic ``atoms`` by finite strains at fixed cell.

    For each Voigt component and strain the cell is deformed (atoms scaled), the ions optionally relaxed
    (BFGS, ``fmax`` eV/A, at most ``steps``), and the stress read; column ``j`` of ``C`` is the least-squares
    slope (with intercept, which absorbs any residual stress) of the stress against the strain ``j``.
    """
    start = time.perf_counter()
    strains = tuple(float(s) for s in strains)
    stresses = np.zeros((6, len(strains), 6))
    used = np.zeros((6, len(strains)), dtype=int)
    worst = 0.0
    for j in range(6):
        for k, value in enumerate(strains):
            stress, used[j, k], force = _relaxed_stress(_strained(atoms, voigt_strain(j, value)), calc, relax_ions,
                                                        fmax, steps)
            stresses[j, k] = stress
            worst = max(worst, force)
    design = np.stack([np.asarray(strains), np.ones(len(strains))], axis=1)
    c = np.zeros((6, 6))
    for j in range(6):
        coef, *_ = np.linalg.lstsq(design, stresses[j], rcond=None)
        c[:, j] = coef[0]
    c_sym = (c + c.T) / 2
    return ElasticResult(c, c_sym, np.linalg.inv(c_sym), stresses, **voigt_reuss_hill(c_sym), strains=strains,
                         relax_ions=relax_ions, fmax=fmax, steps=steps, relax_steps=used,
                         max_residual_force=worst, seconds=time.perf_counter() - start)


ENERGY_MODES = {"c11": ((0, 1.0),), "c11+c12": ((0, 1.0), (1, 1.0)), "c44": ((3, 1.0),)}
"""Energy-strain modes of a cubic crystal: name -> Voigt components strained by ``s`` (engineering shear for 3).
Their energies are ``E0 + V0/2 C11 s^2``, ``E0 + V0 (C11 + C12) s^2`` and ``E0 + V0/2 C44 s^2``."""


def _mode_strain(mode: str, value: float) -> np.ndarray:
    """Strain tensor [3,3] of energy mode ``mode`` (a key of :data:`ENERGY_MODES`) at strain ``value``."""
    return sum((weight * voigt_strain(index, value) for index, weight in ENERGY_MODES[mode]), np.zeros((3, 3)))


def _curvature(strains: np.ndarray, energies: np.ndarray, degree: int) -> float:
    """``d^2E/ds^2`` at ``s = 0`` (eV) of a least-squares polynomial of ``degree`` fitted to ``E(s)``."""
    coef = np.polynomial.polynomial.polyfit(strains, energies, degree)
    return float(2 * coef[2])


def elastic_constants_energy(atoms: Atoms, calc: Any, strains: Any = (-0.01, -0.005, 0.0, 0.005, 0.01),
                             relax_ions: bool = True, fmax: float = 1e-3, steps: int = 200,
                             degree: int = 3) -> dict[str, Any]:
    """Cubic elastic constants C11, C12, C44 (GPa) of ``atoms`` by the energy-strain route.

    For each mode of :data:`ENERGY_MODES` and strain ``s`` the cell is deformed (atoms scaled), the ions
    optionally relaxed at fixed cell (as :func:`elastic_tensor` does) and the energy read. A least-squares
    polynomial of ``degree`` (default 3) in ``s`` gives the curvature ``E''(0)``: the linear term absorbs a
    residual stress and the cubic one the third-order (asymmetric) anharmonicity; on 1% strains the quartic
    term changes ``E''`` by ~0.1%, so it is not fitted and one degree of freedom is left for noise.
    ``C11 = E''_c11 / V0``, ``C12 = E''_{c11+c12} / (2 V0) - C11``, ``C44 = E''_c44 / V0`` (eV/A^3 -> GPa).
    Only valid at the zero-stress cell (elsewhere the energy picks up pressure terms).

    Returns ``c11``, ``c12``, ``c44`` (GPa), ``strains``, ``energies`` ``{mode: [n] eV}``, ``v0`` (A^3),
    ``relax_steps`` ``{mode: [n]}``, ``max_residual_force`` (eV/A), ``settings`` and ``seconds``.
    """
    start = time.perf_counter()
    strains = tuple(float(s) for s in strains)
    if len(strains) <= degree:
        raise ValueError(f"a degree-{degree} fit needs more than {degree} strains, got {len(strains)}")
    v0 = float(atoms.get_volume())
    energies: dict[str, np.ndarray] = {}
    used: dict[str, np.ndarray] = {}
    worst = 0.0
    for mode in ENERGY_MODES:
        energies[mode], used[mode] = np.zeros(len(strains)), np.zeros(len(strains), dtype=int)
        for k, value in enumerate(strains):
            work, used[mode][k], force = _relaxed_at_fixed_cell(_strained(atoms, _mode_strain(mode, value)), calc,
                                                                relax_ions, fmax, steps)
            energies[mode][k] = work.get_potential_energy()
            worst = max(worst, force)
    curv = {mode: _curvature(np.asarray(strains), e, degree) / v0 / units.GPa for mode, e in energies.items()}
    c11 = curv["c11"]
    return {"c11": c11, "c12": curv["c11+c12"] / 2 - c11, "c44": curv["c44"], "strains": strains,
            "energies": energies, "v0": v0, "relax_steps": used, "max_residual_force": worst,
            "settings": {"relax_ions": relax_ions, "fmax": fmax, "steps": steps, "degree": degree,
                         "modes": {m: [f"voigt {i}" for i, _ in c] for m, c in ENERGY_MODES.items()}},
            "seconds": time.perf_counter() - start}


# --------------------------------------------------------------------------------------------- parity
def reference_stress(atoms: Atoms, key: str = "stress") -> np.ndarray:
    """Reference Voigt stress (eV/A^3, ASE sign) of a frame: ``atoms.info[key]`` (Voigt 6 or 3x3), else the
    attached (single-point) calculator's stored stress."""
    if key in atoms.info:
        value = np.asarray(atoms.info[key], dtype=float)
    elif atoms.calc is not None and "stress" in getattr(atoms.calc, "results", {}):
        value = np.asarray(atoms.calc.results["stress"], dtype=float)
    else:
        raise KeyError(f"frame has no reference stress (info[{key!r}] or a calculator result)")
    if value.size == 9:
        m = value.reshape(3, 3)
        value = np.array([m[i, j] for i, j in VOIGT_PAIRS])
    return value.reshape(6)


def reference_energy(atoms: Atoms, key: str = "energy") -> float:
    """Reference energy (eV) of a frame: ``atoms.info[key]``, else the attached calculator's stored energy."""
    if key in atoms.info:
        return float(atoms.info[key])
    if atoms.calc is not None and "energy" in getattr(atoms.calc, "results", {}):
        return float(atoms.calc.results["energy"])
    raise KeyError(f"frame has no reference energy (info[{key!r}] or a calculator result)")


def stress_parity(frames: list[Atoms], calc: Any, stress_key: str = "stress") -> dict[str, Any]:
    """Model vs reference stress per frame (GPa, Voigt ``xx yy zz yz xz xy``).

    Returns ``reference_gpa`` and ``model_gpa`` [n_frames, 6], ``rmse_gpa`` (all components),
    ``rmse_per_component_gpa`` [6], ``n_frames``, ``settings`` (key, order, sign) and ``seconds``.
    """
    start = time.perf_counter()
    ref = np.array([reference_stress(a, stress_key) for a in frames]) / units.GPa
    model = np.array([_with_calc(a, calc).get_stress(voigt=True) for a in frames]) / units.GPa
    diff = model - ref
    return {"reference_gpa": ref, "model_gpa": model, "rmse_gpa": float(np.sqrt(np.mean(diff ** 2))),
            "rmse_per_component_gpa": np.sqrt(np.mean(diff ** 2, axis=0)), "n_frames": len(frames),
            "settings": {"stress_key": stress_key, "voigt_order": "xx yy zz yz xz xy",
                         "sign": "ASE (tensile positive)"}, "seconds": time.perf_counter() - start}


def relative_energy_parity(frames: list[Atoms], calc: Any, energy_key: str = "energy") -> dict[str, Any]:
    """Per ``config_type`` (``atoms.info["config_type"]``, default ``"all"``): model and reference energies,
    both relative to the group's frame of lowest reference energy, and their RMSE per atom.

    Returns ``groups``: ``{config_type: {"indices", "n_atoms", "reference_ev", "model_ev" (relative, eV),
    "anchor" (index of the minimum frame), "rmse_mev_per_atom"}}``, ``settings`` and ``seconds``.
    """
    start = time.perf_counter()
    members: dict[str, list[int]] = {}
    for index, a in enumerate(frames):
        members.setdefault(str(a.info.get("config_type", "all")), []).append(index)
    groups = {}
    for name, indices in members.items():
        ref = np.array([reference_energy(frames[i], energy_key) for i in indices])
        model = np.array([_with_calc(frames[i], calc).get_potential_energy() for i in indices])
        n_atoms = np.array([len(frames[i]) for i in indices])
        anchor = int(np.argmin(ref))
        ref_rel, model_rel = ref - ref[anchor], model - model[anchor]
        rmse = float(np.sqrt(np.mean(((model_rel - ref_rel) / n_atoms) ** 2)) * 1000)
        groups[name] = {"indices": indices, "n_atoms": n_atoms, "reference_ev": ref_rel, "model_ev": model_rel,
                        "anchor": indices[anchor], "rmse_mev_per_atom": rmse}
    return {"groups": groups, "settings": {"energy_key": energy_key, "group_key": "config_type",
                                           "relative_to": "frame of lowest reference energy per group"},
            "seconds": time.perf_counter() - start}


# --------------------------------------------------------------------------------------------- vibrations
@dataclass
class VibrationResult:
    """Harmonic vibrations of a molecule.

    ``frequencies_cm`` [3N] ascending by signed value (cm^-1; imaginary modes negative); ``modes`` [3N, 3N]
    mass-weighted eigenvectors (columns); ``rigid`` [3N] bool, the ``n_rigid`` modes of smallest |nu|
    flagged as translations/rotations (6, or 5 for a linear molecule; they are near zero only at a stationary
    point, so relax first); ``linear``; ``hessian_method``
    ("analytic" from ``calc.get_hessian`` or "finite difference"); ``chunk``, ``delta`` (A) settings; ``seconds``.
    """

    frequencies_cm: np.ndarray
    modes: np.ndarray
    rigid: np.ndarray
    n_rigid: int
    linear: bool
    hessian_method: str
    chunk: int
    delta: float
    seconds: float


def finite_difference_hessian(atoms: Atoms, calc: Any, delta: float = 1e-4) -> np.ndarray:
    """Hessian [3N, 3N] (eV/A^2, atom-major) by central differences of the forces, step ``delta`` (A)."""
    work = _with_calc(atoms, calc)
    base = work.positions.copy()
    rows = []
    for a in range(len(work)):
        for x in range(3):
            grads = []
            for sign in (1, -1):
                moved = base.copy()
                moved[a, x] += sign * delta
                work.positions = moved
                grads.append(-work.get_forces().reshape(-1))
            rows.append((grads[0] - grads[1]) / (2 * delta))
    work.positions = base
    h = np.array(rows)
    return (h + h.T) / 2


def is_linear(atoms: Atoms, tol: float = 1e-6) -> bool:
    """Whether the atoms lie on a line (smallest principal moment of inertia ~ 0; amu A^2)."""
    if len(atoms) < 3:
        return True
    moments = atoms.get_moments_of_inertia()
    return bool(moments.min() < tol * max(moments.max(), 1e-12))


def hessian_to_frequencies(hessian: np.ndarray, masses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies (cm^-1, imaginary as negative) and mass-weighted modes of a Hessian [3N,3N] (eV/A^2) with
    ``masses`` [N] (amu): ``omega^2`` = eigenvalues of ``M^-1/2 H M^-1/2`` in eV/(A^2 amu), converted to s^-2
    with ``ase.units._e``, ``_amu``, then ``nu = omega / (2 pi c)``."""
    inv_sqrt_m = np.repeat(1 / np.sqrt(masses), 3)
    weighted = hessian * inv_sqrt_m[:, None] * inv_sqrt_m[None, :]
    eigval, eigvec = np.linalg.eigh((weighted + weighted.T) / 2)
    to_si = units._e / (1e-20 * units._amu)  # eV/(A^2 amu) -> s^-2
    omega = np.sign(eigval) * np.sqrt(np.abs(eigval) * to_si)
    return omega / (2 * np.pi * units._c * 100), eigvec


def vibrational_frequencies(atoms: Atoms, calc: Any, chunk: int = 16, delta: float = 1e-4) -> VibrationResult:
    """Harmonic frequencies of a molecule from ``calc.get_hessian(atoms, chunk)`` (analytic; eV/A^2), or, for a
    calculator without ``get_hessian``, from :func:`finite_difference_hessian` with step ``delta`` (A)."""
    start = time.perf_counter()
    if hasattr(calc, "get_hessian"):
        hessian, method = np.asarray(calc.get_hessian(atoms, chunk), dtype=float), "analytic"
    else:
        hessian, method = finite_difference_hessian(atoms, calc, delta), "finite difference"
    freqs, modes = hessian_to_frequencies(hessian, atoms.get_masses())
    linear = is_linear(atoms)
    n_rigid = min(len(freqs), 5 if linear else 6) if len(atoms) > 1 else 3
    rigid = np.zeros(len(freqs), dtype=bool)
    rigid[np.argsort(np.abs(freqs))[:n_rigid]] = True
    return VibrationResult(freqs, modes, rigid, n_rigid, linear, method, chunk, delta, time.perf_counter() - start)


# --------------------------------------------------------------------------------------------- plots
def png_bytes(fig: Any) -> bytes:
    """PNG bytes of a matplotlib figure (which is closed)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def figure_grid(ncols: int = 1) -> tuple[Any, Any]:
    """A matplotlib (Agg backend) figure with one row of ``ncols`` axes: ``(fig, axes[1, ncols])``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(1, ncols, figsize=(4.5 * ncols, 3.6), squeeze=False)


def plot_eos(result: EOSResult, path: str | Path) -> Path:
    """Energy per atom vs volume per atom with the fit values and the strain range in the title; PNG at ``path``."""
    fig, axes = figure_grid()
    ax, n = axes[0, 0], result.n_atoms
    ax.plot(result.volumes / n, result.energies / n, "o", label="calculated")
    ax.axvline(result.v0 / n, color="grey", ls=":", label=f"V0 = {result.v0 / n:.3f} A^3/atom")
    ax.set(xlabel="volume (A^3/atom)", ylabel="energy (eV/atom)",
           title=f"B0 = {result.b0_gpa:.1f} GPa ({result.eos}; strains {result.strains.min():+.3f}.."
                 f"{result.strains.max():+.3f})")
    ax.legend(fontsize=8)
    atomic_write_bytes(path, png_bytes(fig))
    return Path(path)


def plot_parity(parity: dict[str, Any], path: str | Path) -> Path:
    """Model vs reference relative energies (meV/atom) per config_type, from :func:`relative_energy_parity`."""
    fig, axes = figure_grid()
    ax = axes[0, 0]
    for name, group in parity["groups"].items():
        ref, model = 1000 * group["reference_ev"] / group["n_atoms"], 1000 * group["model_ev"] / group["n_atoms"]
        ax.plot(ref, model, "o", ms=4, label=f"{name}: RMSE {group['rmse_mev_per_atom']:.2f} meV/atom")
    lims = ax.get_xlim()
    ax.plot(lims, lims, "k--", lw=0.8)
    ax.set(xlabel="reference E - E_min (meV/atom)", ylabel="model E - E_min (meV/atom)",
           title=f"relative energies ({parity['settings']['energy_key']})")
    ax.legend(fontsize=7)
    atomic_write_bytes(path, png_bytes(fig))
    return Path(path)
