"""``mlip-preprocess --config``: the data section of a training config written as on-disk datasets.

The heads are resolved from the config (:func:`mlip.config.resolve_heads`) and handed to the data
layer's writer (:func:`mlip.data.ondisk.write_ondisk`) as plain frames and per-head E0 settings.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mlip.config import Config, resolve_heads
from mlip.data.configuration import Configuration
from mlip.data.ondisk import describe_ondisk, iter_configurations, write_ondisk


def preprocess_config(cfg: Config, output_dir: str | os.PathLike, progress: bool = True, log: Any = print) -> dict[str, Path]:
    """Write ``train.h5`` (and ``valid.h5``/``test.h5`` where the config names such files) in ``output_dir``
    from the data section of a training config (heads, keys, config_type weights, E0s, model.r_max)."""
    out_dir = Path(output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    specs = resolve_heads(cfg)
    r_max = float(cfg.model.r_max)
    head_e0s = {name: spec.e0s for name, spec in specs.items()}

    def frames(split: str) -> Iterator[Configuration]:
        for name, spec in specs.items():
            keys = {"energy_key": spec.energy_key or "energy", "forces_key": spec.forces_key or "forces",
                    "stress_key": spec.stress_key or "stress", "virials_key": spec.virials_key or "virials"}
            for path in getattr(spec, split) or []:
                for c in iter_configurations(path, head=name, **keys):
                    if c.config_type in spec.config_type_weights:
                        c.weight *= spec.config_type_weights[c.config_type]
                    yield c

    isolated: list[Configuration] = []
    for name, spec in specs.items():
        if spec.e0s == "isolated" and spec.isolated_atoms:
            isolated += list(iter_configurations(spec.isolated_atoms, head=name,
                                                 energy_key=spec.energy_key or "energy"))
    written: dict[str, Path] = {}
    for split in ("train", "valid", "test"):
        files = [p for spec in specs.values() for p in (getattr(spec, split) or [])]
        if not files:
            continue
        path = out_dir / f"{split}.h5"
        if split == "train":
            written[split] = write_ondisk(frames(split), path, r_max, "fit", isolated, sources=files,
                                          progress=progress, head_e0s=head_e0s)
        else:
            written[split] = write_ondisk(frames(split), path, r_max, None, sources=files, progress=progress)
        log(describe_ondisk(written[split]))
    snippet = "\n".join(f"  {s}: {p}" for s, p in written.items())
    log(f"use in the training config:\ndata:\n{snippet}")
    return written
