"""Human-readable summary of labelled structure files (used by ``mlip-data summary``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from mlip.data.configuration import Configuration
from mlip.data.coverage import format_coverage_table
from mlip.data.io import describe_keys, is_isolated_atom, read_configurations
from mlip.data.stats import e0s_from_isolated_atoms


def summarize(configs: Sequence[Configuration], name: str) -> str:
    """Frames, elements, atoms per frame, config types, label coverage and isolated-atom E0s."""
    from ase.data import chemical_symbols

    lines = [f"file: {name}", f"frames: {len(configs)}"]
    counts: Counter[int] = Counter()
    for c in configs:
        counts.update(int(z) for z in c.numbers)
    elements = ", ".join(f"{chemical_symbols[z]} ({n})" for z, n in sorted(counts.items()))
    lines.append(f"elements (atoms): {elements}")
    sizes = np.array([c.n_atoms for c in configs])
    lines.append(f"atoms/frame: min {sizes.min()}, mean {sizes.mean():.1f}, max {sizes.max()}")
    periodic = sum(1 for c in configs if c.pbc.any())
    lines.append(f"periodic frames: {periodic} of {len(configs)}")
    types = Counter(c.config_type for c in configs)
    lines.append("config types: " + ", ".join(f"{t} ({n})" for t, n in types.most_common()))
    lines.append("label coverage:")
    lines.append(format_coverage_table({name: list(configs)}))
    isolated = [c for c in configs if is_isolated_atom(c) and c.n_atoms == 1 and c.energy is not None]
    if isolated:
        zs = sorted({int(c.numbers[0]) for c in isolated})
        e0s = e0s_from_isolated_atoms(isolated, zs)
        lines.append("E0 from isolated atoms (eV): " + ", ".join(f"{chemical_symbols[z]} {e:.6f}" for z, e in e0s.items()))
    return "\n".join(lines)


def summarize_files(paths: Sequence[str], **read_kwargs: Any) -> str:
    """Read each file with :func:`read_configurations` and join their summaries (with the keys the
    first frame carries, so that a label read under the wrong key shows up)."""
    parts = []
    for p in paths:
        text = summarize(read_configurations(p, **read_kwargs), str(p))
        parts.append(text + "\nkeys in frame 0: " + describe_keys(p))
    return "\n\n".join(parts)
