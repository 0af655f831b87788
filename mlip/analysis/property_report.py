"""The property report of a trained model (``mlip-report``): sections computed through the Python API, one page.

Periodic structure (periodic in all three directions): ``eos``, ``elastic``, ``phonons``, ``md``. Anything else
(a molecule): ``vibrations``, ``md`` and, with reference frames, ``parity``. Each section is computed by
:mod:`mlip.analysis.properties`, :mod:`mlip.analysis.phonons` or :mod:`mlip.analysis.md_checks` and becomes a
:class:`~mlip.analysis.report_page.Section` (figure, table, settings, seconds). ``calc`` is any ASE calculator
with ``get_hessian`` (:class:`mlip.calculator.MLIPCalculator`); this module never imports the calculator.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from mlip.analysis.report_page import Section
from mlip.errors import ConfigError

__all__ = ["MOLECULE_SECTIONS", "PERIODIC_SECTIONS", "ReportSettings", "build_sections", "sections_for"]

PERIODIC_SECTIONS = ("eos", "elastic", "phonons", "md")
MOLECULE_SECTIONS = ("vibrations", "md", "parity")


@dataclass
class ReportSettings:
    """Every setting a report number depends on (shown beside it). Lengths in A, strains fractional."""

    eos_strains: tuple[float, ...] = tuple(float(x) for x in np.round(np.linspace(-0.04, 0.04, 9), 4))
    elastic_strains: tuple[float, ...] = (-0.01, -0.005, 0.005, 0.01)
    relax_ions: bool = True
    relax_fmax: float = 1e-3
    supercell: tuple[int, int, int] = (2, 2, 2)
    displacement: float = 0.01
    dos_mesh: tuple[int, int, int] = (12, 12, 12)
    md_steps: int = 2000
    md_temperature_K: float = 300.0
    md_timestep_fs: float = 1.0
    md_thermostat: str = "langevin"
    md_fraction: float = 0.5
    hessian_chunk: int = 16


def sections_for(structure: Atoms, only: list[str] | None, has_data: bool) -> list[str]:
    """The sections to run for ``structure`` (``--only`` names checked against what applies)."""
    periodic = bool(np.all(structure.pbc))
    allowed = PERIODIC_SECTIONS if periodic else MOLECULE_SECTIONS
    if only is None:
        return [s for s in allowed if s != "parity" or has_data]
    unknown = [s for s in only if s not in allowed]
    if unknown:
        kind = "a periodic structure" if periodic else "a molecule (not periodic in all directions)"
        raise ConfigError(f"--only {','.join(unknown)}: not a section for {kind}; choose from {','.join(allowed)}")
    if "parity" in only and not has_data:
        raise ConfigError("--only parity: needs --data with reference energies")
    return list(only)


def _eos(structure: Atoms, calc: Any, s: ReportSettings, folder: Path, data: list[Atoms]) -> Section:
    from mlip.analysis.properties import equation_of_state, plot_eos

    r = equation_of_state(structure, calc, np.asarray(s.eos_strains))
    plot_eos(r, folder / "eos.png")
    rows = [["V0 (A^3)", "V0 per atom (A^3)", "E0 (eV)", "B0 (GPa)"], [r.v0, r.v0 / r.n_atoms, r.e0, r.b0_gpa]]
    return Section("Equation of state", rows, {"linear strains": list(s.eos_strains), "fit": r.eos,
                                               "atoms": r.n_atoms}, r.seconds, image="eos.png")


def _elastic(structure: Atoms, calc: Any, s: ReportSettings, folder: Path, data: list[Atoms]) -> Section:
    from mlip.analysis.properties import elastic_tensor, reference_stress, stress_parity

    r = elastic_tensor(structure, calc, s.elastic_strains, relax_ions=s.relax_ions, fmax=s.relax_fmax)
    labels = ["xx", "yy", "zz", "yz", "xz", "xy"]
    rows: list[list[Any]] = [["C (GPa)", *labels]] + [[labels[i], *r.c_sym_gpa[i]] for i in range(6)]
    rows += [["", "B (GPa)", "G (GPa)", "", "", "", ""],
             ["Voigt", r.bulk_voigt, r.shear_voigt, "", "", "", ""], ["Reuss", r.bulk_reuss, r.shear_reuss, "", "", "", ""],
             ["Hill", r.bulk_hill, r.shear_hill, "", "", "", ""]]
    notes, seconds = [], r.seconds
    strained = [a for a in data if _has_stress(a, reference_stress)]
    elastic = [a for a in strained if "lastic" in str(a.info.get("config_type", ""))] or strained
    if elastic:
        parity = stress_parity(elastic, calc)
        seconds += parity["seconds"]
        notes.append(f"Model stress against the reference on {parity['n_frames']} strained frames of --data: "
                     f"RMSE {parity['rmse_gpa']:.4g} GPa over all six components")
    settings = {"strains": list(s.elastic_strains), "ions relaxed": s.relax_ions, "fmax (eV/A)": s.relax_fmax,
                "shear": "engineering (gamma = 2 eps)", "max residual force (eV/A)": f"{r.max_residual_force:.2g}"}
    return Section("Elastic tensor (stress-strain)", rows, settings, seconds, notes=notes)


def _has_stress(atoms: Atoms, reader: Callable[[Atoms], Any]) -> bool:
    try:
        reader(atoms)
    except Exception:  # noqa: BLE001 - a frame without a stress label
        return False
    return True


def _phonons(structure: Atoms, calc: Any, s: ReportSettings, folder: Path, data: list[Atoms]) -> Section:
    from mlip.analysis import phonons as ph

    start = time.perf_counter()
    phonon, info = ph.force_constants_analytic(calc, structure, s.supercell, chunk=s.hessian_chunk)
    band = ph.band_structure(phonon, structure)
    density = ph.dos(phonon, s.dos_mesh)
    ph.plot_phonons(band, density, folder / "phonons.png")
    check = ph.force_constants_displacement(calc, structure, s.supercell, distance=s.displacement)
    special = [band["qpoints"][int(np.argmin(np.abs(band["distances"] - x)))] for x in band["label_positions"]]
    check.run_qpoints(np.asarray(special))
    difference = float(np.abs(np.sort(check.qpoints.frequencies, axis=1)
                              - np.sort(_frequencies_at(phonon, special), axis=1)).max())
    rows = [["q-point", "(fractional)", "lowest (THz)", "highest (THz)"]]
    for label, q in zip(band["labels"], special):
        f = _frequencies_at(phonon, [q])[0]
        rows.append([label, np.round(q, 4).tolist(), float(f.min()), float(f.max())])
    flagged = ph.imaginary_modes(band["frequencies"], band["qpoints"])
    notes = [f"imaginary modes at {len(flagged)} of {len(band['qpoints'])} q-points of the path"
             + (" (the first 10 below)" if len(flagged) > 10 else "") if flagged else "no imaginary modes on the path"]
    notes += [f"imaginary mode at q = {np.round(m['qpoint'], 4).tolist()}: {min(m['frequencies']):.3f} THz"
              for m in flagged[:10]]
    notes.append(f"analytic-Hessian force constants against phonopy's finite displacements: largest frequency "
                 f"difference {difference:.2e} THz at the special points")
    settings = {"supercell": list(s.supercell), "force constants": "analytic Hessian (check: displacements of "
                f"{s.displacement} A)", "DOS mesh": list(s.dos_mesh), "imaginary if below (THz)": -ph.IMAGINARY_TOLERANCE,
                "path": band.get("path", "ASE standard")}
    return Section("Phonons (phonopy)", rows, settings, time.perf_counter() - start, image="phonons.png", notes=notes)


def _frequencies_at(phonon: Any, qpoints: Any) -> np.ndarray:
    phonon.run_qpoints(np.asarray(qpoints))
    return np.asarray(phonon.qpoints.frequencies)


def _md(structure: Atoms, calc: Any, s: ReportSettings, folder: Path, data: list[Atoms]) -> Section:
    from mlip.analysis.md_checks import min_pair_distance, nvt_md, plot_md

    atoms = structure.repeat(s.supercell) if np.all(structure.pbc) else structure.copy()
    reference = min_pair_distance(data) if data else None
    r = nvt_md(atoms, calc, s.md_temperature_K, s.md_timestep_fs, s.md_steps, thermostat=s.md_thermostat,
               fraction=s.md_fraction, min_training_distance=reference)
    plot_md(r, folder / "md.png")
    rows = [["verdict", "closest pair (A)", "threshold (A)", "mean T (K)", "E_pot drift (eV)"],
            [r.verdict, float(np.min(r.min_distance)), r.threshold, float(np.mean(r.temperature[1:])),
             float(r.potential_energy[-1] - r.potential_energy[0])]]
    settings = {"thermostat": r.thermostat, "T (K)": r.temperature_K, "timestep (fs)": r.timestep_fs,
                "steps": r.steps, "length (ps)": r.steps * r.timestep_fs / 1000, "atoms": len(atoms),
                "threshold": f"{r.fraction} x closest pair of " + ("--data" if data else "the start structure")}
    return Section("Short MD (NVT)", rows, settings, r.seconds, image="md.png")


def _vibrations(structure: Atoms, calc: Any, s: ReportSettings, folder: Path, data: list[Atoms]) -> Section:
    from mlip.analysis.properties import vibrational_frequencies

    r = vibrational_frequencies(structure, calc, chunk=s.hessian_chunk)
    rows = [["mode", "frequency (cm^-1)", "rigid-body"]]
    rows += [[i, float(f), bool(rigid)] for i, (f, rigid) in enumerate(zip(r.frequencies_cm, r.rigid))]
    imaginary = [float(f) for f, rigid in zip(r.frequencies_cm, r.rigid) if f < 0 and not rigid]
    notes = [f"{len(imaginary)} imaginary mode(s): {', '.join(f'{f:.1f}' for f in imaginary)} cm^-1 (relax first?)"
             if imaginary else "no imaginary modes besides the rigid-body ones"]
    return Section("Vibrational frequencies", rows, {"Hessian": r.hessian_method, "rigid-body modes": r.n_rigid,
                                                      "structure": "as given (not relaxed)"}, r.seconds, notes=notes)


def _parity(structure: Atoms, calc: Any, s: ReportSettings, folder: Path, data: list[Atoms]) -> Section:
    from mlip.analysis.properties import plot_parity, relative_energy_parity

    r = relative_energy_parity(data, calc)
    plot_parity(r, folder / "parity.png")
    rows = [["config_type", "frames", "RMSE of relative energies (meV/atom)"]]
    rows += [[name, len(g["indices"]), g["rmse_mev_per_atom"]] for name, g in r["groups"].items()]
    return Section("Relative energies against --data", rows, {"reference": "each config_type's lowest frame"},
                   r["seconds"], image="parity.png")


_BUILDERS = {"eos": _eos, "elastic": _elastic, "phonons": _phonons, "md": _md, "vibrations": _vibrations,
             "parity": _parity}


def build_sections(
    structure: Atoms, calc: Any, folder: str | Path, names: list[str], data: list[Atoms] | None = None,
    settings: ReportSettings | None = None, log: Callable[[str], None] = print,
) -> list[Section]:
    """Run the sections ``names`` (see :func:`sections_for`), write their figures into ``folder``, return them."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    settings = settings or ReportSettings()
    sections = []
    for name in names:
        log(f"mlip-report: {name} ...")
        section = _BUILDERS[name](structure, calc, settings, folder, list(data or []))
        log(f"mlip-report: {name} done in {section.seconds:.1f} s")
        sections.append(section)
    return sections


def settings_dict(settings: ReportSettings) -> dict[str, Any]:
    """The settings as plain values (for the page header and JSON)."""
    return asdict(settings)
