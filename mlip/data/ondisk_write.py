"""Writing on-disk datasets: ``mlip-preprocess`` streams labelled frames into one HDF5 file.

:func:`write_ondisk` consumes frames one at a time (memory: one chunk of frames), then streams over the
written file once more for the per-head statistics (:func:`compute_ondisk_statistics`). The file is
written to a temporary name and renamed when complete, so an interrupted run leaves no file that looks
valid. The layout is described in :mod:`mlip.data.ondisk`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from mlip.data.configuration import PROPERTIES, Configuration
from mlip.data.io import is_isolated_atom
from mlip.data.neighbors import neighbor_list
from mlip.data.ondisk_read import _F, _I, FLOAT_COLUMNS, FORMAT, INT_COLUMNS, VERSION, describe_ondisk, import_h5py
from mlip.data.stats import compute_e0s, e0s_from_isolated_atoms, make_record, spec_name, to_json
from mlip.errors import DataError
from mlip.files import atomic_path


class _Buffer:
    """Frames waiting to be appended (flushed every ``size`` frames)."""

    def __init__(self) -> None:
        self.pos: list[np.ndarray] = []
        self.forces: list[np.ndarray] = []
        self.numbers: list[np.ndarray] = []
        self.f8: list[np.ndarray] = []
        self.i8: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self.f8)


class OnDiskWriter:
    """Append :class:`Configuration` objects to a new HDF5 file; :meth:`close` adds statistics and
    renames the temporary file into place. Memory: one buffer of ``chunk`` frames plus, per head,
    the normal equations of the E0 fit (elements x elements)."""

    def __init__(self, path: str | os.PathLike, r_max: float, chunk: int = 1024) -> None:
        h5py = import_h5py()

        self.path = Path(path)
        self.r_max = float(r_max)
        self.chunk = int(chunk)
        with ExitStack() as stack:  # an error before the first frame deletes the temporary file
            self.tmp = stack.enter_context(atomic_path(self.path))
            self.file = h5py.File(self.tmp, "w")
            f = self.file
            f.create_dataset("positions", (0, 3), "f8", maxshape=(None, 3), chunks=(4096, 3))
            f.create_dataset("forces", (0, 3), "f8", maxshape=(None, 3), chunks=(4096, 3))
            f.create_dataset("numbers", (0,), "i2", maxshape=(None,), chunks=(4096,))
            f.create_dataset("frame_f8", (0, len(FLOAT_COLUMNS)), "f8", maxshape=(None, len(FLOAT_COLUMNS)),
                             chunks=(256, len(FLOAT_COLUMNS)))
            f.create_dataset("frame_i8", (0, len(INT_COLUMNS)), "i8", maxshape=(None, len(INT_COLUMNS)),
                             chunks=(256, len(INT_COLUMNS)))
            # the temporary file stays open across add/flush: close() renames it, abort() deletes it
            self._atomic = stack.pop_all()
        self.heads: list[str] = []
        self.config_types: list[str] = []
        self.sources: list[str] = []
        self.n_frames = 0
        self.n_atoms = 0
        self.buffer = _Buffer()

    def _index(self, table: list[str], name: str) -> int:
        if name not in table:
            table.append(name)
        return table.index(name)

    def add(self, config: Configuration, source_index: int = -1) -> None:
        """Append one frame (its neighbour count at ``r_max`` is stored for statistics and batching)."""
        n = config.n_atoms
        sender, _, _, _ = neighbor_list(config.positions, config.cell, config.pbc, self.r_max)
        f8 = np.zeros(len(FLOAT_COLUMNS))
        f8[0:9] = config.cell.reshape(-1)
        if config.stress is not None:
            f8[9:18] = np.asarray(config.stress, dtype=np.float64).reshape(-1)
        if config.virials is not None:
            f8[18:27] = np.asarray(config.virials, dtype=np.float64).reshape(-1)
        f8[_F["energy"]] = config.energy if config.energy is not None else 0.0
        f8[_F["weight"]] = config.weight
        for prop in PROPERTIES:
            f8[_F[f"{prop}_weight"]] = config.property_weights.get(prop, 1.0)
        i8 = np.zeros(len(INT_COLUMNS), dtype=np.int64)
        i8[_I["first_atom"]] = self.n_atoms
        i8[_I["n_atoms"]] = n
        i8[_I["head"]] = self._index(self.heads, config.head)
        i8[_I["config_type"]] = self._index(self.config_types, config.config_type)
        i8[_I["pbc0"]:_I["pbc2"] + 1] = config.pbc.astype(np.int64)
        for prop in PROPERTIES:
            i8[_I[f"has_{prop}"]] = int(config.has(prop))
        i8[_I["n_edges"]] = sender.shape[0]
        i8[_I["source_index"]] = source_index
        b = self.buffer
        b.pos.append(config.positions)
        b.forces.append(config.forces if config.forces is not None else np.zeros((n, 3)))
        b.numbers.append(config.numbers.astype(np.int16))
        b.f8.append(f8)
        b.i8.append(i8)
        self.n_atoms += n
        self.n_frames += 1
        if len(b) >= self.chunk:
            self.flush()

    def flush(self) -> None:
        b = self.buffer
        if not len(b):
            return
        f = self.file
        for name, parts in (("positions", b.pos), ("forces", b.forces), ("numbers", b.numbers),
                            ("frame_f8", b.f8), ("frame_i8", b.i8)):
            arr = np.concatenate(parts) if name in ("positions", "forces", "numbers") else np.stack(parts)
            ds = f[name]
            start = ds.shape[0]
            ds.resize(start + arr.shape[0], axis=0)
            ds[start:] = arr
        self.buffer = _Buffer()

    def close(self, statistics: dict[str, Any], atomic_numbers: Sequence[int]) -> Path:
        """Write attributes, mark the file complete and move it to its final name."""
        self.flush()
        a = self.file.attrs
        a["format"] = FORMAT
        a["version"] = VERSION
        a["n_frames"] = self.n_frames
        a["n_atoms"] = self.n_atoms
        a["heads"] = json.dumps(self.heads)
        a["config_types"] = json.dumps(self.config_types)
        a["atomic_numbers"] = json.dumps([int(z) for z in atomic_numbers])
        a["statistics"] = json.dumps(statistics)
        a["stats_r_max"] = self.r_max
        a["sources"] = json.dumps(self.sources)
        a["float_columns"] = json.dumps(FLOAT_COLUMNS)
        a["int_columns"] = json.dumps(INT_COLUMNS)
        a["complete"] = True
        self.file.close()
        self._atomic.close()  # fsync and os.replace (mlip.files.atomic_path)
        return self.path

    def abort(self) -> None:
        """Close and delete the temporary file (after an error)."""
        try:
            self.file.close()
        finally:
            aborted = RuntimeError(f"{self.path}: write aborted")
            self._atomic.__exit__(RuntimeError, aborted, None)  # atomic_path deletes the temporary file


def _e0s_from_normal_equations(ata: np.ndarray, atb: np.ndarray, zs: Sequence[int], head: str) -> dict[int, float]:
    """Minimum-norm least-squares E0s from accumulated ``A^T A`` and ``A^T E`` (A: element counts)."""
    absent = [z for k, z in enumerate(zs) if ata[k, k] == 0]
    if absent:
        from ase.data import chemical_symbols

        names = ", ".join(chemical_symbols[z] for z in absent)
        raise DataError(f"E0s of head '{head}': key 'e0s': cannot fit E0 for {names}: no frame with an energy "
                        "contains it; give E0s explicitly or add such frames")
    solution = np.linalg.pinv(ata) @ atb  # = pinv(A) E, the same minimum-norm solution as lstsq(A, E)
    return {int(z): float(solution[k]) for k, z in enumerate(zs)}


_Chunk = tuple[np.ndarray, np.ndarray, int, np.ndarray, np.ndarray]


def _chunks(f: Any, chunk: int) -> Iterator[_Chunk]:
    """``(frame_i8, frame_f8, first atom, numbers, forces)`` per chunk of frames of an open file."""
    n = f["frame_i8"].shape[0]
    for s in range(0, n, chunk):
        i8 = f["frame_i8"][s:s + chunk]
        f8 = f["frame_f8"][s:s + chunk]
        lo, hi = int(i8[0, 0]), int(i8[-1, 0] + i8[-1, 1])
        yield i8, f8, lo, f["numbers"][lo:hi], f["forces"][lo:hi]


def _is_isolated_row(i8: np.ndarray) -> bool:
    """One atom and no periodicity: an isolated-atom frame (left out of every statistic but E0s)."""
    return int(i8[_I["n_atoms"]]) == 1 and not i8[_I["pbc0"]:_I["pbc2"] + 1].any()


def _first_pass(f: Any, n_heads: int, col: dict[int, int], chunk: int) -> list[dict[str, Any]]:
    """Per head: frame and label counts, edge and atom counts, sum of squared force components, and the
    normal equations ``A^T A``, ``A^T E`` of the E0 fit (A: element counts of frames with an energy)."""
    nz = len(col)
    acc = [{"ata": np.zeros((nz, nz)), "atb": np.zeros(nz), "edges": 0, "atoms": 0, "f2": 0.0, "fn": 0,
            "n_frames": 0, "counts": {p: 0 for p in PROPERTIES}} for _ in range(n_heads)]
    for i8, f8, lo, numbers, forces in _chunks(f, chunk):
        for k in range(i8.shape[0]):
            a = acc[int(i8[k, _I["head"]])]
            a["n_frames"] += 1
            for p in PROPERTIES:
                a["counts"][p] += int(i8[k, _I[f"has_{p}"]])
            if _is_isolated_row(i8[k]):
                continue  # isolated atom: E0s only
            s0, na = int(i8[k, 0]) - lo, int(i8[k, 1])
            counts = np.bincount([col[int(z)] for z in numbers[s0:s0 + na]], minlength=nz).astype(float)
            if i8[k, _I["has_energy"]]:
                a["ata"] += np.outer(counts, counts)
                a["atb"] += counts * f8[k, _F["energy"]]
            a["edges"] += int(i8[k, _I["n_edges"]])
            a["atoms"] += na
            if i8[k, _I["has_forces"]]:
                fr = forces[s0:s0 + na]
                a["f2"] += float((fr * fr).sum())
                a["fn"] += fr.size
    return acc


def _head_e0s(spec: Any, acc: dict[str, Any], isolated: Sequence[Configuration], zs: list[int],
              name: str) -> dict[int, float]:
    """E0s of one head from its setting: none, isolated atoms, the streamed fit, or a mapping."""
    if spec is None:
        return {}
    if isinstance(spec, str) and spec == "isolated":
        return e0s_from_isolated_atoms([c for c in isolated if c.head == name], zs, name)
    if isinstance(spec, str) and spec in ("fit", "average", "least_squares"):
        return _e0s_from_normal_equations(acc["ata"], acc["atb"], zs, name)
    return compute_e0s(spec, [], zs, name)


def _interaction_sums(f: Any, e0s: list[dict[int, float]], col: dict[int, int], chunk: int) -> list[list[float]]:
    """Second pass, per head with E0s: sum, sum of squares and count of ``(E - sum E0) / N`` (eV/atom)."""
    sums = [[0.0, 0.0, 0] for _ in e0s]
    e0_vec = [np.array([e0.get(z, np.nan) for z in col]) for e0 in e0s]
    for i8, f8, lo, numbers, _ in _chunks(f, chunk):
        for k in range(i8.shape[0]):
            h = int(i8[k, _I["head"]])
            if not i8[k, _I["has_energy"]] or _is_isolated_row(i8[k]) or not e0s[h]:
                continue
            s0, na = int(i8[k, 0]) - lo, int(i8[k, 1])
            e_ref = sum(e0_vec[h][col[int(z)]] for z in numbers[s0:s0 + na])
            x = (f8[k, _F["energy"]] - e_ref) / na
            s = sums[h]
            s[0] += x
            s[1] += x * x
            s[2] += 1
    return sums


def compute_ondisk_statistics(
    path: str | os.PathLike, e0s: Any, isolated: Sequence[Configuration] = (), chunk: int = 4096,
    head_e0s: dict[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """Per-head statistics of a written (possibly incomplete) file, streamed in chunks of frames: the
    :class:`mlip.data.stats.HeadStatistics` record of each head in its stored (JSON) form,
    plus ``"_atomic_numbers"``: the elements of the file and of ``isolated``.

    ``e0s``: "isolated" (from ``isolated`` frames), "fit" (least squares over the file's frames with an
    energy, isolated atoms excluded), a mapping element -> eV, or None (E0-dependent statistics not
    computed, e.g. for validation files); ``head_e0s`` overrides it per head. The other statistics leave
    isolated atoms out, as :func:`mlip.data.stats.head_statistics` does.
    """
    h5py = import_h5py()

    with h5py.File(path, "r") as f:
        heads = json.loads(f.attrs["heads"]) if "heads" in f.attrs else []
        numbers_all = f["numbers"]
        zs = sorted({int(z) for s in range(0, numbers_all.shape[0], 1 << 20) for z in np.unique(numbers_all[s:s + (1 << 20)])}
                    | {int(z) for c in isolated for z in c.numbers})
        col = {z: k for k, z in enumerate(zs)}
        acc = _first_pass(f, len(heads), col, chunk)
        specs = [(head_e0s or {}).get(name, e0s) for name in heads]
        e0 = [_head_e0s(spec, a, isolated, zs, name) for spec, a, name in zip(specs, acc, heads)]
        sums = _interaction_sums(f, e0, col, chunk)
    result: dict[str, Any] = {}
    for name, spec, a, e, (s1, s2, m) in zip(heads, specs, acc, e0, sums):
        mean = s1 / m if m else None
        std = float(np.sqrt(max(s2 / m - mean * mean, 0.0))) if m else None
        rms = float(np.sqrt(a["f2"] / a["fn"])) if a["fn"] else None
        record = make_record(e, spec_name(spec), a["n_frames"], a["atoms"], a["edges"], rms, mean, std, a["counts"])
        result[name] = to_json(record)
    result["_atomic_numbers"] = zs
    return result


def write_ondisk(
    frames: Iterable[Configuration], path: str | os.PathLike, r_max: float, e0s: Any = "fit",
    isolated: Sequence[Configuration] = (), sources: Sequence[str] = (), total: int | None = None,
    progress: bool = True, chunk: int = 1024, head_e0s: dict[str, Any] | None = None,
) -> Path:
    """Stream ``frames`` into the on-disk dataset ``path`` and add per-head statistics.

    Frames are consumed one at a time (memory: ``chunk`` frames). With ``e0s="isolated"`` the
    isolated-atom frames go to ``isolated`` (they are not written as training frames). Progress goes to a
    tqdm bar. Returns the path; on any error the partial file is removed.
    """
    from tqdm import tqdm

    isolated = list(isolated)
    writer = OnDiskWriter(path, r_max, chunk)
    writer.sources = [str(s) for s in sources]
    try:
        bar = tqdm(frames, total=total, desc=f"writing {Path(path).name}", unit="frame", disable=not progress,
                   dynamic_ncols=True)
        for k, config in enumerate(bar):
            if (head_e0s or {}).get(config.head, e0s) == "isolated" and is_isolated_atom(config):
                isolated.append(config)
                continue
            writer.add(config, source_index=k)
        bar.close()
        if writer.n_frames == 0:
            raise DataError(f"{', '.join(writer.sources) or path}: no frames to write")
        writer.file.attrs["heads"] = json.dumps(writer.heads)
        writer.flush()
        writer.file.flush()
        statistics = compute_ondisk_statistics(writer.tmp, e0s, isolated, chunk=max(chunk, 256), head_e0s=head_e0s)
        zs = statistics.pop("_atomic_numbers")
        return writer.close(statistics, zs)
    except BaseException:
        writer.abort()
        raise


def iter_configurations(path: str | os.PathLike, *, energy_key: str = "energy", forces_key: str = "forces",
                        stress_key: str = "stress", virials_key: str = "virials", head: str | None = None,
                        head_key: str = "head", config_type_key: str = "config_type",
                        weight_key: str = "config_weight") -> Iterator[Configuration]:
    """Frames of ``path`` one at a time (ase.io.iread), validated like :func:`mlip.data.io.read_configurations`."""
    from mlip.data import io

    path_str = str(path)
    keys = {"energy": energy_key, "forces": forces_key, "stress": stress_key, "virials": virials_key}
    count = 0
    for frame, atoms in io._iter_frames(path_str, ":", None):
        config = io._atoms_to_configuration(atoms, path_str, frame, keys=keys, head_key=head_key,
                                            config_type_key=config_type_key, weight_key=weight_key, head=head)
        io._validate(config, atoms, path_str, frame, keys, (), None, io.MIN_DISTANCE)
        count += 1
        yield config
    if not count:
        raise DataError(f"{path_str}: no frames read (empty file, not a structure file, or an empty index)")


def preprocess_files(
    files: Sequence[str], output: str | os.PathLike, *, r_max: float = 5.0, e0s: Any = "fit",
    isolated_atoms: str | None = None, keys: dict[str, str] | None = None, head: str | None = None,
    progress: bool = True, log: Any = print,
) -> Path:
    """Stream ``files`` (any ASE format) into the on-disk dataset ``output`` with statistics at ``r_max``."""
    keys = dict(keys or {})
    isolated: list[Configuration] = []
    if isolated_atoms:
        isolated = list(iter_configurations(isolated_atoms, head=head, **keys))

    def frames() -> Iterator[Configuration]:
        for path in files:
            yield from iter_configurations(path, head=head, **keys)

    out = write_ondisk(frames(), output, r_max, e0s, isolated, sources=list(files), progress=progress)
    log(describe_ondisk(out))
    return out
