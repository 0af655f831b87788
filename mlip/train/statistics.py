"""Training-set statistics that become model hyper-parameters (thin adapter over :mod:`mlip.data.stats`).

- E0s (eV per element) from ``isolated`` atoms, a least-squares ``fit``/``average``, a mapping, a JSON/YAML
  file or an isolated-atoms structure file (parsed by :mod:`mlip.data.elements`);
- the mean neighbour count within ``r_max`` (normalisation of the convolution);
- scale (RMS of the force components, eV/A, or std of the interaction energy per atom) and shift (mean
  interaction energy per atom, eV/atom).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from mlip.data import elements, stats
from mlip.data.configuration import Configuration
from mlip.data.io import split_isolated


def _files_of(configs: Sequence[Configuration]) -> list[str]:
    """The files (in order of first appearance) the frames came from (``source`` is ``file:frame``)."""
    out: list[str] = []
    for c in configs:
        name = c.source.rsplit(":", 1)[0] if c.source else ""
        if name and name not in out:
            out.append(name)
    return out


def _files_with(configs: Sequence[Configuration], zs: Sequence[int]) -> list[str]:
    """The files (in order of first appearance) holding a frame with any of the atomic numbers ``zs``."""
    wanted = {int(z) for z in zs}
    out: list[str] = []
    for c in configs:
        name = c.source.rsplit(":", 1)[0] if c.source else ""
        if name and name not in out and wanted & {int(z) for z in c.numbers}:
            out.append(name)
    return out


def atomic_energies(
    spec: str | Mapping[str, float],
    train: Sequence[Configuration],
    isolated: Sequence[Configuration],
    zs: Sequence[int],
    head: str = "Default",
    where: str = "data.e0s",
    log: Callable[[str], None] | None = print,
    data: Sequence[Configuration] | None = None,
) -> dict[int, float]:
    """E0 per atomic number for every element of ``zs`` (eV).

    ``spec``: ``isolated`` (the single-atom frames of ``isolated``), ``fit`` or ``average`` (least squares
    of the training energies on the element counts, mace-torch's "average"), a mapping element -> eV, or a
    file: JSON/YAML mapping, or a structure file of isolated atoms (:mod:`mlip.data.elements`).
    ``log`` receives the one-line warning when the training compositions do not determine the E0s
    (``None``: a Python warning). ``data``: every frame whose elements made up ``zs`` (all splits and heads;
    default ``train``): an element without an E0 is reported with the files it came from."""
    warn = None if log is None else (lambda msg: log(f"warning: {msg}"))
    if isinstance(spec, str) and spec in ("fit", "average"):
        frames = split_isolated(train)[0] or list(train)
        return stats.e0s_by_least_squares(frames, zs, head, warn=warn, spec=spec, where=where)
    if spec == "isolated":
        found = elements.isolated_energies(isolated, "isolated atoms") if isolated else {}
        source = ", ".join(_files_of(isolated)) or "the isolated atoms (none given: set isolated_atoms)"
    else:
        found = elements.load_element_energies(spec, where)
        source = f"{where} ({spec})" if isinstance(spec, str) else f"config key '{where}'"
    missing = [int(z) for z in zs if int(z) not in found]
    if missing:
        files = _files_with(train if data is None else data, missing) or _files_of(train)
        raise elements.missing_elements_error(missing, f"E0s of head '{head}'", files, source)
    return {int(z): float(found[int(z)]) for z in zs}


def avg_num_neighbors(configs: Sequence[Configuration], r_max: float) -> float:
    """Mean number of neighbours within ``r_max`` (A) over all atoms of ``configs`` (not isolated atoms);
    the statistics record's count (:func:`mlip.data.stats.head_statistics`), 1 when zero."""
    return stats.mean_neighbours([stats.head_statistics(configs, {}, r_max)])


def scale_shift(configs: Sequence[Configuration], e0: Mapping[int, float], mode: str) -> tuple[float, float]:
    """(scale, shift): shift is the mean interaction energy per atom ``(E - sum E0) / N`` (eV/atom);
    scale is the RMS force component (``rms_forces``), the std of the interaction energy per atom
    (``std``), or 1 (``none``). Falls back to 1 when the statistic is zero or unavailable. Computed from
    the statistics record of ``configs`` (:func:`mlip.data.stats.head_statistics`)."""
    return stats.scale_shift(stats.head_statistics(configs, e0, None), mode)
