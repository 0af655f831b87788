"""One-line warnings about surprising but legal settings of a training run (printed as ``warning: ...``).

- :func:`config_notices`: settings visible in the config alone (``stage_two.start_epoch`` after
  ``train.max_epochs``), printed by ``mlip-train`` right after the config is read;
- :func:`split_notices`: data splits that make a run's numbers fragile (a 1-frame validation set).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def config_notices(cfg: Any) -> list[str]:
    """Warnings about the config alone (no data read)."""
    out = []
    st, t = cfg.stage_two, cfg.train
    if st.start_epoch is not None and st.start_epoch > t.max_epochs:
        out.append(
            f"config key 'stage_two.start_epoch': {st.start_epoch} is after train.max_epochs ({t.max_epochs}), "
            "so stage two never starts; lower stage_two.start_epoch or raise train.max_epochs"
        )
    if st.start_epoch == 0:
        out.append("config key 'stage_two.start_epoch': 0 means the last 0 epochs, so stage two never starts; "
                   "give -k for the last k epochs, an epoch number, or null")
    return out


def split_notices(heads: Mapping[str, Any]) -> list[str]:
    """Warnings about the splits of every head (objects with ``spec``, ``train`` and ``valid``)."""
    out = []
    for name, hd in heads.items():
        if len(hd.valid) == 1:
            how = ("data.valid holds one frame" if hd.spec.valid else
                   f"valid_fraction {hd.spec.valid_fraction} of {len(hd.train) + 1} frames leaves one frame")
            out.append(
                f"head '{name}': the validation set has 1 frame ({how}); the validation loss, the best-model "
                "choice, early stopping and the plateau schedule all rest on it: raise data.valid_fraction or "
                "give data.valid"
            )
    return out
