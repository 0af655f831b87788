"""Total Energy Alignment (TEA) of MACE-Osaka24 (Shiota et al. 2025, Eqs. 1-7).

Moves labels computed at a *source* level of theory onto the energy scale of a *target* level, so that
both can be merged into one training set.

With E0[Z] the isolated-atom energy of element Z at a level, and the atomization energy
``E_at = sum_i E0[Z_i] - E_tot`` (Eq. 1):

- ICEA (isolated-atom energy alignment, assumes ``E_at_target = E_at_source``)::

      E' = sum_i E0_target[Z_i] - E_at_source = E + sum_i (E0_target[Z_i] - E0_source[Z_i])

  a constant shift per composition; forces and stress unchanged.
- AEC (atomization-energy correction, assumes ``E_at_target = a * E_at_source``)::

      E'' = sum_i E0_target[Z_i] - a * E_at_source,   F'' = a F,   stress'' = a stress (virials too)

  ICEA is AEC with ``a = 1``. ``a`` is given, or fitted by least squares through the origin on paired
  frames (the same geometries at both levels): ``a = sum(x y) / sum(x x)`` with ``x = E_at_source`` and
  ``y = E_at_target``.

A dispersion correction can be removed from the source labels first (Osaka24: do so when the target has
none): energy, forces and stress of the correction are subtracted before the alignment (and added back
by the inverse).

All functions here are pure (numpy in, numpy out) except :func:`align_structures`/:func:`run_tea`, which
work on lists of :class:`ase.Atoms`. Units: eV, eV/A, eV/A^3.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols

from mlip.data.configuration import Configuration
from mlip.errors import ConfigError, DataError, frame_error
from mlip.fidelity.labels import (
    DEFAULT_KEYS,
    LabelKeys,
    e0_vector,
    element_counts,
    elements_of,
    get_energy,
    get_forces,
    get_tensor,
    with_labels,
)

# ----------------------------------------------------------------------------------------------------
# pure energy maps: energy [F] (eV), counts [F, S], e0_* [S] (eV, same element order as counts)


def atomization_energy(energy: np.ndarray, counts: np.ndarray, e0: np.ndarray) -> np.ndarray:
    """E_at = sum_i E0[Z_i] - E_tot (eV), shape [F]. Positive for bound systems."""
    return np.asarray(counts, float) @ np.asarray(e0, float) - np.asarray(energy, float)


def icea_energy(energy: np.ndarray, counts: np.ndarray, e0_source: np.ndarray, e0_target: np.ndarray) -> np.ndarray:
    """ICEA: E' = E + sum_i (E0_target[Z_i] - E0_source[Z_i]) (eV), shape [F]."""
    return np.asarray(energy, float) + np.asarray(counts, float) @ (np.asarray(e0_target, float) - np.asarray(e0_source, float))


def tea_energy(
    energy: np.ndarray, counts: np.ndarray, e0_source: np.ndarray, e0_target: np.ndarray, scale: float
) -> np.ndarray:
    """AEC (ICEA + scaling): E'' = sum_i E0_target[Z_i] - a * E_at_source (eV), shape [F]."""
    e_at_source = atomization_energy(energy, counts, e0_source)
    return np.asarray(counts, float) @ np.asarray(e0_target, float) - scale * e_at_source


def tea_inverse_energy(
    energy: np.ndarray, counts: np.ndarray, e0_source: np.ndarray, e0_target: np.ndarray, scale: float
) -> np.ndarray:
    """Inverse of :func:`tea_energy`: E = sum_i E0_source[Z_i] - E_at_target / a (eV), shape [F]."""
    if scale == 0:
        raise ConfigError("TEA scale a = 0 cannot be inverted")
    e_at_target = atomization_energy(energy, counts, e0_target)
    return np.asarray(counts, float) @ np.asarray(e0_source, float) - e_at_target / scale


def fit_scale(e_at_source: np.ndarray, e_at_target: np.ndarray) -> float:
    """Least squares through the origin of ``e_at_target = a * e_at_source``: a = sum(x y) / sum(x^2)."""
    x = np.asarray(e_at_source, float).ravel()
    y = np.asarray(e_at_target, float).ravel()
    if x.size == 0:
        raise DataError("TEA scale fit: no paired frames with energies")
    denom = float(x @ x)
    if denom == 0.0:
        raise DataError("TEA scale fit: all source atomization energies are zero")
    return float(x @ y) / denom


def rmse(a: np.ndarray, b: np.ndarray) -> float:
    """Root-mean-square difference of two arrays (same units as the input)."""
    d = np.asarray(a, float) - np.asarray(b, float)
    return float(np.sqrt(np.mean(d * d))) if d.size else float("nan")


# ----------------------------------------------------------------------------------------------------
# dispersion correction hook


@dataclass(frozen=True)
class DispersionTerms:
    """One frame's dispersion correction: energy (eV), forces [N,3] (eV/A), stress [3,3] (eV/A^3) or None."""

    energy: float
    forces: np.ndarray
    stress: np.ndarray | None = None


Dispersion = Callable[[Atoms], DispersionTerms]


def d3_correction(functional: str = "pbe", damping: str = "bj") -> Dispersion:
    """A D3 dispersion hook from an optional dependency (torch-dftd, else simple-dftd3's ``dftd3``).

    Raises :class:`ConfigError` with one line when neither is installed; nothing is installed for you.
    """
    calc = None
    try:
        from torch_dftd.torch_dftd3_calculator import TorchDFTD3Calculator  # type: ignore

        calc = TorchDFTD3Calculator(xc=functional, damping=damping)
    except ImportError:
        try:
            from dftd3.ase import DFTD3  # type: ignore

            calc = DFTD3(method=functional, damping=f"d3{damping}" if not damping.startswith("d3") else damping)
        except ImportError:
            pass
    if calc is None:
        raise ConfigError(
            "dispersion correction requested but neither 'torch-dftd' nor 'dftd3' (simple-dftd3) is installed"
        )

    def correction(atoms: Atoms) -> DispersionTerms:
        probe = atoms.copy()
        probe.calc = calc
        energy = float(probe.get_potential_energy())
        forces = np.asarray(probe.get_forces(), float)
        stress = None
        if np.all(probe.pbc):
            from ase.stress import voigt_6_to_full_3x3_stress

            stress = voigt_6_to_full_3x3_stress(probe.get_stress())
        return DispersionTerms(energy, forces, stress)

    return correction


# ----------------------------------------------------------------------------------------------------
# structures


@dataclass
class Labels:
    """Labels of a list of frames; entries are None where a frame has no such label."""

    energy: list[float | None]
    forces: list[np.ndarray | None]
    stress: list[np.ndarray | None]
    virials: list[np.ndarray | None]


def read_labels(
    structures: Sequence[Atoms], keys: LabelKeys = DEFAULT_KEYS, dispersion: Dispersion | None = None
) -> Labels:
    """Labels of ``structures`` under ``keys``; with ``dispersion`` its terms are subtracted.

    The dispersion virial is ``-stress * volume`` (ASE sign convention).
    """
    labels = Labels([], [], [], [])
    for atoms in structures:
        e = get_energy(atoms, keys.energy)
        f = get_forces(atoms, keys.forces)
        s = get_tensor(atoms, keys.stress)
        v = get_tensor(atoms, keys.virials)
        if dispersion is not None:
            d = dispersion(atoms)
            e = None if e is None else e - d.energy
            f = None if f is None else f - d.forces
            if d.stress is not None:
                s = None if s is None else s - d.stress
                v = None if v is None else v + d.stress * atoms.get_volume()
        labels.energy.append(e)
        labels.forces.append(f)
        labels.stress.append(s)
        labels.virials.append(v)
    return labels


def _energies_and_mask(labels: Labels) -> tuple[np.ndarray, np.ndarray]:
    mask = np.array([e is not None for e in labels.energy], dtype=bool)
    energy = np.array([e if e is not None else 0.0 for e in labels.energy], dtype=float)
    return energy, mask


def _check_finite(labels: Labels, path: str, keys: LabelKeys) -> None:
    for f, e in enumerate(labels.energy):
        if e is not None and not np.isfinite(e):
            raise frame_error(path, f, keys.energy, "non-finite energy")
    for f, forces in enumerate(labels.forces):
        if forces is not None and not np.all(np.isfinite(forces)):
            raise frame_error(path, f, keys.forces, "non-finite forces")


def _configuration_labels(configs: Sequence[Configuration]) -> Labels:
    return Labels([c.energy for c in configs], [c.forces for c in configs], [c.stress for c in configs],
                  [c.virials for c in configs])


def _scaled(value: np.ndarray | None, factor: float) -> np.ndarray | None:
    return None if value is None else factor * np.asarray(value)


def _with_dispersion(atoms: Atoms, dispersion: Dispersion, e, forces, stress, virials) -> tuple:
    """Add the dispersion terms back to target-level labels (the inverse of :func:`read_labels`)."""
    d = dispersion(atoms)
    e = None if e is None else e + d.energy
    forces = None if forces is None else forces + d.forces
    if d.stress is not None:
        stress = None if stress is None else stress + d.stress
        virials = None if virials is None else virials - d.stress * atoms.get_volume()
    return e, forces, stress, virials


def align_structures(
    structures: Sequence[Atoms] | Sequence[Configuration],
    e0_source: Mapping[int, float],
    e0_target: Mapping[int, float],
    scale: float = 1.0,
    keys: LabelKeys = DEFAULT_KEYS,
    dispersion: Dispersion | None = None,
    inverse: bool = False,
    path: str = "<data>",
    scale_forces: bool = True,
) -> list:
    """Apply TEA (ICEA when ``scale == 1``) to every frame: the one TEA front-end for frames.

    ``structures`` are ASE ``Atoms`` (returns new Atoms with labels in info/arrays under ``keys``) or
    :class:`~mlip.data.configuration.Configuration` objects (returns copies; weights, head and
    config_type kept; ``dispersion`` is not offered there: remove it on files with ``mlip-align tea``).
    ``inverse=True`` maps target-level labels back to the source level (and adds the dispersion back).
    Frames without an energy keep none; forces/stress/virials are scaled by ``a`` (``1/a`` inverse).
    ``scale_forces=False`` (not in Osaka24) scales the atomization energies only and keeps forces,
    stress and virials as they are.
    """
    if inverse and scale == 0:
        raise ConfigError("TEA scale a = 0 cannot be inverted")
    configs = len(structures) > 0 and all(isinstance(s, Configuration) for s in structures)
    if configs and dispersion is not None:
        raise ConfigError("TEA on configurations: dispersion removal works on files (mlip-align tea --d3)")
    elements = elements_of(structures)
    counts = element_counts(structures, elements, path)
    src = e0_vector(e0_source, elements, "source isolated atoms")
    tgt = e0_vector(e0_target, elements, "target isolated atoms")
    if configs:
        labels = _configuration_labels(structures)
    else:
        labels = read_labels(structures, keys, None if inverse else dispersion)
    _check_finite(labels, path, keys)
    energy, mask = _energies_and_mask(labels)
    new_energy = (tea_inverse_energy if inverse else tea_energy)(energy, counts, src, tgt, scale)
    factor = (1.0 / scale if inverse else scale) if scale_forces else 1.0
    out = []
    for f, item in enumerate(structures):
        e = float(new_energy[f]) if mask[f] else None
        forces, stress, virials = (_scaled(x[f], factor) for x in (labels.forces, labels.stress, labels.virials))
        if configs:
            out.append(dataclasses.replace(item, energy=e, forces=forces, stress=stress, virials=virials,
                                           property_weights=dict(item.property_weights)))
            continue
        if inverse and dispersion is not None:
            e, forces, stress, virials = _with_dispersion(item, dispersion, e, forces, stress, virials)
        out.append(with_labels(item, keys, e, forces, stress, virials))
    return out


def check_pairs(
    source: Sequence[Atoms],
    target: Sequence[Atoms],
    source_path: str = "<source pairs>",
    target_path: str = "<target pairs>",
    atol: float = 1e-4,
) -> None:
    """Verify that frame f of ``source`` and ``target`` is the same geometry (numbers, positions within
    ``atol`` A). Raises :class:`DataError` naming the first mismatching frame."""
    if len(source) != len(target):
        raise DataError(
            f"{source_path} has {len(source)} frames but {target_path} has {len(target)}: pairs must match frame by frame"
        )
    for f, (a, b) in enumerate(zip(source, target)):
        if len(a) != len(b) or not np.array_equal(np.asarray(a.numbers), np.asarray(b.numbers)):
            raise frame_error(target_path, f, "numbers", f"atoms differ from {source_path} frame {f}: not a pair")
        dev = float(np.max(np.abs(np.asarray(a.positions) - np.asarray(b.positions)))) if len(a) else 0.0
        if dev > atol:
            raise frame_error(
                target_path, f, "positions", f"differ from {source_path} frame {f} by {dev:.3g} A (> {atol:g}): not a pair"
            )


@dataclass
class PairFit:
    """Result of comparing paired frames: the fitted or given scale and RMSEs (eV, eV/A)."""

    scale: float
    n_pairs: int
    rmse_raw: float
    rmse_icea: float
    rmse_tea: float
    force_rmse_raw: float | None
    force_rmse_icea: float | None
    force_rmse_tea: float | None


def fit_pairs(
    source: Sequence[Atoms],
    target: Sequence[Atoms],
    e0_source: Mapping[int, float],
    e0_target: Mapping[int, float],
    keys: LabelKeys = DEFAULT_KEYS,
    target_keys: LabelKeys | None = None,
    dispersion: Dispersion | None = None,
    scale: float | None = None,
    source_path: str = "<source pairs>",
    target_path: str = "<target pairs>",
) -> PairFit:
    """Fit ``a`` on paired frames (unless ``scale`` is given) and report total-energy RMSEs against the
    target labels: raw source energies, after ICEA, after ICEA+AEC (TEA). Forces: raw, after dispersion
    removal (ICEA leaves them unchanged otherwise) and ``a``-scaled.

    Only pairs where both frames carry an energy are used for energies (likewise forces).
    """
    check_pairs(source, target, source_path, target_path)
    target_keys = target_keys or keys
    elements = elements_of(source)
    counts = element_counts(source, elements, source_path)
    src = e0_vector(e0_source, elements, "source isolated atoms")
    tgt = e0_vector(e0_target, elements, "target isolated atoms")
    raw_labels = read_labels(source, keys)
    s_labels = read_labels(source, keys, dispersion) if dispersion is not None else raw_labels
    t_labels = read_labels(target, target_keys)
    _check_finite(s_labels, source_path, keys)
    _check_finite(t_labels, target_path, target_keys)
    e_raw, m_s = _energies_and_mask(raw_labels)
    e_s, _ = _energies_and_mask(s_labels)
    e_t, m_t = _energies_and_mask(t_labels)
    m = m_s & m_t
    if not np.any(m):
        raise DataError(f"{source_path} / {target_path}: no pair has an energy under '{keys.energy}'")
    n, e_raw, e_s, e_t = counts[m], e_raw[m], e_s[m], e_t[m]
    if scale is None:
        scale = fit_scale(atomization_energy(e_s, n, src), atomization_energy(e_t, n, tgt))
    f_pairs = [
        (fs, ft, fr)
        for fs, ft, fr in zip(s_labels.forces, t_labels.forces, raw_labels.forces)
        if fs is not None and ft is not None
    ]
    force_raw = force_icea = force_tea = None
    if f_pairs:
        fs = np.concatenate([p[0] for p in f_pairs])
        ft = np.concatenate([p[1] for p in f_pairs])
        fr = np.concatenate([p[2] for p in f_pairs])
        force_raw, force_icea, force_tea = rmse(fr, ft), rmse(fs, ft), rmse(scale * fs, ft)
    return PairFit(
        scale=float(scale),
        n_pairs=int(m.sum()),
        rmse_raw=rmse(e_raw, e_t),
        rmse_icea=rmse(icea_energy(e_s, n, src, tgt), e_t),
        rmse_tea=rmse(tea_energy(e_s, n, src, tgt, scale), e_t),
        force_rmse_raw=force_raw,
        force_rmse_icea=force_icea,
        force_rmse_tea=force_tea,
    )


def _symbols(e0: Mapping[int, float]) -> dict[str, float]:
    return {chemical_symbols[z]: float(v) for z, v in sorted(e0.items())}


def run_tea(
    data: Sequence[Atoms],
    e0_source: Mapping[int, float],
    e0_target: Mapping[int, float],
    scale: float | None = None,
    pairs: tuple[Sequence[Atoms], Sequence[Atoms]] | None = None,
    keys: LabelKeys = DEFAULT_KEYS,
    dispersion: Dispersion | None = None,
    dispersion_name: str | None = None,
    data_path: str = "<data>",
    pair_paths: tuple[str, str] = ("<source pairs>", "<target pairs>"),
    scale_forces: bool = True,
) -> tuple[list[Atoms], dict]:
    """Align ``data`` (source level) to the target level; returns the aligned frames and a JSON record.

    Exactly one of ``scale`` (given a) and ``pairs`` (fit a) is needed; both may be given, then ``a`` is
    the given one and the pairs only report RMSEs. Record keys: ``scale``, ``scale_source``
    ("given"/"fitted"), ``n_pairs``, ``rmse_raw``, ``rmse_icea``, ``rmse_tea`` (eV; null without pairs),
    ``force_rmse_raw``, ``force_rmse_icea``, ``force_rmse_tea`` (eV/A, of the forces as written; null
    without pairs/forces), ``scale_forces``, ``e0_source``, ``e0_target`` (eV, by symbol), ``dispersion``,
    ``n_frames``, ``keys``.
    """
    if scale is None and pairs is None:
        raise ConfigError("TEA needs either a scale a or paired frames to fit it")
    if scale is not None and not np.isfinite(scale):
        raise ConfigError(f"TEA scale a = {scale} is not finite")
    fit = None
    if pairs is not None:
        fit = fit_pairs(
            pairs[0], pairs[1], e0_source, e0_target, keys, None, dispersion, scale, pair_paths[0], pair_paths[1]
        )
    a = float(scale) if scale is not None else fit.scale  # type: ignore[union-attr]
    aligned = align_structures(data, e0_source, e0_target, a, keys, dispersion, path=data_path, scale_forces=scale_forces)
    force_tea = (fit.force_rmse_tea if scale_forces else fit.force_rmse_icea) if fit else None
    record = {
        "method": "tea" if a != 1.0 else "icea",
        "scale": a,
        "scale_source": "given" if scale is not None else "fitted",
        "n_pairs": fit.n_pairs if fit else 0,
        "rmse_raw": fit.rmse_raw if fit else None,
        "rmse_icea": fit.rmse_icea if fit else None,
        "rmse_tea": fit.rmse_tea if fit else None,
        "force_rmse_raw": fit.force_rmse_raw if fit else None,
        "force_rmse_icea": fit.force_rmse_icea if fit else None,
        "force_rmse_tea": force_tea,
        "scale_forces": bool(scale_forces),
        "e0_source": _symbols(e0_source),
        "e0_target": _symbols(e0_target),
        "dispersion": dispersion_name,
        "n_frames": len(aligned),
        "keys": {"energy": keys.energy, "forces": keys.forces, "stress": keys.stress, "virials": keys.virials},
        "units": {"energy": "eV", "forces": "eV/A"},
    }
    return aligned, record


# ----------------------------------------------------------------------------------------------------
# hooks for the training pipeline (Configuration lists, a ``tea:`` block per data set)


def resolve_tea(
    source_atoms,
    target_atoms,
    scale: float | None = None,
    pairs: tuple[str, str] | None = None,
    energy_key: str = "energy",
) -> tuple[dict[int, float], dict[int, float], float, dict]:
    """Resolve a ``tea:`` block: isolated-atom energies (files, JSON, inline or mappings), a given scale
    or paired files to fit it. Returns (E0_source, E0_target, a, record) with the RMSE record of
    :func:`run_tea` (null RMSEs without pairs)."""
    from mlip.fidelity.labels import load_isolated_energies, read_structures

    e0_src = load_isolated_energies(source_atoms, energy_key)
    e0_tgt = load_isolated_energies(target_atoms, energy_key)
    keys = LabelKeys(energy=energy_key)
    if pairs is not None:
        fit = fit_pairs(read_structures(pairs[0]), read_structures(pairs[1]), e0_src, e0_tgt, keys, None, None,
                        scale, pairs[0], pairs[1])
        a = fit.scale
        record = {"scale": a, "n_pairs": fit.n_pairs, "rmse_raw": fit.rmse_raw, "rmse_icea": fit.rmse_icea,
                  "rmse_tea": fit.rmse_tea}
    elif scale is not None:
        a = float(scale)
        record = {"scale": a, "n_pairs": 0, "rmse_raw": None, "rmse_icea": None, "rmse_tea": None}
    else:
        raise ConfigError("tea: needs 'scale' or 'pairs'")
    return e0_src, e0_tgt, a, record
