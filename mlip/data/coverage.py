"""Label coverage: which split/head carries which labels, shown before training and enforced.

A property with a non-zero loss weight that no frame of a split carries is an error (a key that was
silently not read), not a silent zero loss.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mlip.data.configuration import PROPERTIES, Configuration
from mlip.errors import DataError


@dataclass(frozen=True)
class CoverageRow:
    """Counts of one (split, head): frames, and frames carrying each label."""

    split: str
    head: str
    frames: int
    energy: int
    forces: int
    stress: int
    virials: int

    def count(self, prop: str) -> int:
        return int(getattr(self, prop))


def label_coverage(splits: Mapping[str, Sequence[Configuration]]) -> list[CoverageRow]:
    """One row per split and head (heads in order of appearance; an empty split gives one row)."""
    rows = []
    for split, configs in splits.items():
        heads = list(dict.fromkeys(c.head for c in configs)) or ["-"]
        for head in heads:
            members = [c for c in configs if c.head == head]
            counts = {p: sum(1 for c in members if c.has(p)) for p in PROPERTIES}
            rows.append(CoverageRow(split, head, len(members), **counts))
    return rows


def format_coverage_table(rows: Sequence[CoverageRow] | Mapping[str, Sequence[Configuration]]) -> str:
    """A fixed-width text table of :func:`label_coverage` rows (or of splits directly)."""
    if isinstance(rows, Mapping):
        rows = label_coverage(rows)
    header = ("split", "head", "frames", "energy", "forces", "stress", "virials")
    body = [(r.split, r.head, str(r.frames), str(r.energy), str(r.forces), str(r.stress), str(r.virials)) for r in rows]
    widths = [max(len(x) for x in col) for col in zip(header, *body)]
    lines = []
    for k, line in enumerate([header, *body]):
        cells = [s.ljust(w) if i < 2 else s.rjust(w) for i, (s, w) in enumerate(zip(line, widths))]
        lines.append("  ".join(cells).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def check_coverage(
    splits: Mapping[str, Sequence[Configuration]], loss_weights: Mapping[str, float],
    check_splits: Sequence[str] = ("train", "valid"),
    keys: Mapping[str, Mapping[str, str]] | None = None,
) -> None:
    """Raise DataError when a property with a non-zero loss weight is carried by no frame of a split.

    Every head of the checked splits (``train`` and, when present and non-empty, ``valid``) must carry
    each weighted property in at least one frame. A head present only in some splits is checked where
    it appears. ``loss_weights`` maps energy/forces/stress/virials to weights; unknown keys are ignored.
    ``keys`` (head -> property -> label key as the user typed it, e.g. ``{"Default": {"energy": "enrgy"}}``)
    lets the message name the key that was looked for; the message also names the files of the frames.
    """
    weighted = [p for p in PROPERTIES if float(loss_weights.get(p, 0.0) or 0.0) != 0.0]
    for split in check_splits:
        configs = splits.get(split)
        if not configs:
            if split == "train":
                raise DataError("split 'train': no frames")
            continue
        for row in label_coverage({split: configs}):
            for prop in weighted:
                if row.count(prop) == 0:
                    key = ((keys or {}).get(row.head) or {}).get(prop, prop)
                    files = list(dict.fromkeys(c.source.rsplit(":", 1)[0] for c in configs
                                               if c.head == row.head and c.source))
                    where = ", ".join(files[:3]) + (" ..." if len(files) > 3 else "")
                    raise DataError(
                        f"{where or f'split {split!r}'}: key '{key}': no frame of split '{split}' (head "
                        f"'{row.head}', {row.frames} frames) carries the {prop} label under '{key}' (looked in "
                        f"info, arrays and calculator results) but its loss weight is {loss_weights[prop]}; "
                        f"check the {prop} key name (mlip-data summary FILE lists the keys), or set the weight to 0"
                    )
