"""The per-data-set ``tea:`` block of the training config: align a head's labels onto the target level.

Wraps :func:`mlip.fidelity.tea.resolve_tea` (isolated-atom energies, a given or pair-fitted scale ``a``)
and :func:`mlip.fidelity.tea.align_structures` (ICEA/AEC, here on :class:`Configuration` lists). The
resolution (reading the isolated atoms, fitting ``a`` on the pairs) happens once per head and is logged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mlip.config import TeaConfig
from mlip.data.configuration import Configuration
from mlip.fidelity.tea import align_structures, resolve_tea


class TeaAligner:
    """Callable applying one head's ``tea`` block to lists of configurations."""

    def __init__(self, tea: TeaConfig, head: str, energy_key: str = "energy", log: Any = print):
        pairs = tuple(tea.pairs) if tea.pairs else None
        self.e0_source, self.e0_target, self.scale, self.record = resolve_tea(
            tea.source_atoms, tea.target_atoms, scale=tea.scale, pairs=pairs, energy_key=energy_key
        )
        self.scale_forces = not tea.keep_forces
        self.head = head
        what = "ICEA" if self.scale == 1.0 else "TEA (ICEA + AEC)"
        fitted = f"fitted on {self.record['n_pairs']} pairs" if pairs else "given"
        rm = self.record
        extra = ""
        if rm.get("rmse_raw") is not None:
            extra = (f"; pair energy RMSE raw {rm['rmse_raw']:.4g} eV, ICEA {rm['rmse_icea']:.4g} eV, "
                     f"TEA {rm['rmse_tea']:.4g} eV")
        forces = "forces kept" if tea.keep_forces else f"forces/stress x {self.scale:.6g}"
        log(f"head {head}: {what} onto the target level, a = {self.scale:.6g} ({fitted}); {forces}{extra}")

    def __call__(self, configs: Sequence[Configuration], path: str = "<data>") -> list[Configuration]:
        if not configs:
            return list(configs)
        return align_structures(configs, self.e0_source, self.e0_target, self.scale,
                                scale_forces=self.scale_forces, path=path)


def merge_datasets(datasets: dict[str, Any], head_data: type, log: Any = print) -> dict[str, Any]:
    """Merge data sets mapped to one model head (``data.heads.<set>.head``) into one entry per head.

    The first data set of a head supplies its spec (E0s, keys, statistics) with ``weight`` 1; each data
    set's ``weight`` multiplies the weights of its frames instead. ``datasets`` maps names to
    :class:`mlip.train.data_setup.HeadData`."""
    import dataclasses

    groups: dict[str, list[Any]] = {}
    for name, hd in datasets.items():
        groups.setdefault(hd.spec.head or name, []).append(hd)
    out: dict[str, Any] = {}
    for head, members in groups.items():
        if len(members) == 1 and (members[0].spec.head in (None, members[0].name)):
            out[head] = members[0]
            continue
        merged = head_data(name=head, spec=dataclasses.replace(members[0].spec, weight=1.0, head=None))
        for hd in members:
            for split in ("train", "valid", "test", "isolated"):
                frames = getattr(hd, split)
                for c in frames:
                    c.head = head
                    if split != "isolated":
                        c.weight *= hd.spec.weight
                getattr(merged, split).extend(frames)
        log(f"head {head}: merged data sets {', '.join(hd.name for hd in members)} "
            f"(E0s and statistics as for '{members[0].name}')")
        out[head] = merged
    return out
