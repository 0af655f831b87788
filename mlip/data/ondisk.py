"""On-disk datasets (HDF5 via h5py) for training sets larger than memory.

``mlip-preprocess`` streams labelled frames into one HDF5 file (:func:`write_ondisk`); training reads
it lazily frame by frame (:class:`OnDiskDataset`), in DataLoader worker processes, and builds the same
graph dicts as :func:`mlip.data.graph.configuration_to_graph`.

Neighbour lists are **not** stored: the loader workers compute them on the fly with vesin. A graph's
edges take 2 x 8 bytes of indices + 3 x 8 bytes of shifts per edge, about 40 edges per atom at
r_max = 5 A in a dense solid, i.e. ~1.6 kB per atom against ~56 bytes for positions, forces and the
atomic number: stored edges would make the file ~30x larger and tie it to one r_max. vesin computes
the list of a 100-atom cell in well under a millisecond, which the workers overlap with training.

File layout (``format = "mlip-ondisk"``, ``version = 1``), ``n`` frames, ``A`` atoms in all:

- ``positions`` [A,3] f8 (A), ``forces`` [A,3] f8 (eV/A, zeros where missing), ``numbers`` [A] i2;
- ``frame_f8`` [n, 33] f8, columns ``FLOAT_COLUMNS``: cell (9, A), stress (9, eV/A^3), virials (9, eV),
  energy (eV), weight, energy/forces/stress/virials property weights;
- ``frame_i8`` [n, 13] i8, columns ``INT_COLUMNS``: first atom, atom count, head index, config_type
  index, pbc (3), has_energy/forces/stress/virials, edge count at ``stats_r_max``, source frame index;
- attributes: ``format``, ``version``, ``n_frames``, ``n_atoms``, ``heads`` and ``config_types`` (JSON
  lists), ``atomic_numbers`` (JSON), ``statistics`` (JSON, per head: ``e0s`` {Z: eV}, ``e0s_spec``,
  ``avg_num_neighbors``, ``rms_forces`` eV/A, ``mean/std_interaction_energy`` eV/atom, label counts),
  ``stats_r_max`` (A), ``sources`` (JSON list of input files), ``complete`` (set last).

The file is written to a temporary name and renamed when complete, so an interrupted run leaves no file
that looks valid. Opening checks the format, version, completeness and the dataset lengths; any h5py
failure while reading a frame becomes a :class:`mlip.errors.DataError` naming the file and frame.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.utils.data

from mlip.data.batch import Collater, GraphBatchSampler
from mlip.data.configuration import PROPERTIES, Configuration
from mlip.data.graph import configuration_to_graph
from mlip.data.io import is_isolated_atom
from mlip.data.neighbors import neighbor_list
from mlip.errors import ConfigError, DataError

FORMAT = "mlip-ondisk"
VERSION = 1
SUFFIXES = (".h5", ".hdf5")

FLOAT_COLUMNS: tuple[str, ...] = (
    *(f"cell{i}" for i in range(9)), *(f"stress{i}" for i in range(9)), *(f"virials{i}" for i in range(9)),
    "energy", "weight", "energy_weight", "forces_weight", "stress_weight", "virials_weight",
)
INT_COLUMNS: tuple[str, ...] = (
    "first_atom", "n_atoms", "head", "config_type", "pbc0", "pbc1", "pbc2",
    "has_energy", "has_forces", "has_stress", "has_virials", "n_edges", "source_index",
)
_F = {name: k for k, name in enumerate(FLOAT_COLUMNS)}
_I = {name: k for k, name in enumerate(INT_COLUMNS)}


def is_ondisk_path(path: str | os.PathLike) -> bool:
    """Whether ``path`` names an on-disk dataset (by suffix ``.h5``/``.hdf5``)."""
    return Path(path).suffix.lower() in SUFFIXES


# ================================================================================= writing
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
        import h5py

        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.tmp.{os.getpid()}")
        self.r_max = float(r_max)
        self.chunk = int(chunk)
        self.file = h5py.File(self.tmp, "w")
        f = self.file
        f.create_dataset("positions", (0, 3), "f8", maxshape=(None, 3), chunks=(4096, 3))
        f.create_dataset("forces", (0, 3), "f8", maxshape=(None, 3), chunks=(4096, 3))
        f.create_dataset("numbers", (0,), "i2", maxshape=(None,), chunks=(4096,))
        f.create_dataset("frame_f8", (0, len(FLOAT_COLUMNS)), "f8", maxshape=(None, len(FLOAT_COLUMNS)),
                         chunks=(256, len(FLOAT_COLUMNS)))
        f.create_dataset("frame_i8", (0, len(INT_COLUMNS)), "i8", maxshape=(None, len(INT_COLUMNS)),
                         chunks=(256, len(INT_COLUMNS)))
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
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Close and delete the temporary file (after an error)."""
        try:
            self.file.close()
        finally:
            self.tmp.unlink(missing_ok=True)


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


def compute_ondisk_statistics(
    path: str | os.PathLike, e0s: Any, isolated: Sequence[Configuration] = (), chunk: int = 4096,
    head_e0s: dict[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """Per-head statistics of a written (possibly incomplete) file, streamed in chunks of frames.

    ``e0s``: "isolated" (from ``isolated`` frames), "fit" (least squares over the file's frames with an
    energy, isolated atoms excluded), a mapping element -> eV, or None (E0-dependent statistics not
    computed, e.g. for validation files); ``head_e0s`` overrides it per head. The other statistics leave
    isolated atoms out, as :mod:`mlip.data.stats` does.
    """
    import h5py

    from mlip.data import stats

    with h5py.File(path, "r") as f:
        heads = json.loads(f.attrs["heads"]) if "heads" in f.attrs else None
        n = f["frame_i8"].shape[0]
        numbers_all = f["numbers"]
        zs = sorted({int(z) for s in range(0, numbers_all.shape[0], 1 << 20) for z in np.unique(numbers_all[s:s + (1 << 20)])}
                    | {int(z) for c in isolated for z in c.numbers})
        col = {z: k for k, z in enumerate(zs)}

        def frames() -> Iterator[tuple[np.ndarray, np.ndarray, int, np.ndarray, np.ndarray]]:
            for s in range(0, n, chunk):
                i8 = f["frame_i8"][s:s + chunk]
                f8 = f["frame_f8"][s:s + chunk]
                lo, hi = int(i8[0, 0]), int(i8[-1, 0] + i8[-1, 1])
                yield i8, f8, lo, f["numbers"][lo:hi], f["forces"][lo:hi]

        head_idx = range(len(heads)) if heads is not None else range(0)
        acc: dict[int, dict[str, Any]] = {
            h: {"ata": np.zeros((len(zs), len(zs))), "atb": np.zeros(len(zs)), "edges": 0, "atoms": 0,
                "f2": 0.0, "fn": 0, "n_frames": 0, "counts": {p: 0 for p in PROPERTIES}}
            for h in head_idx
        }
        for i8, f8, lo, numbers, forces in frames():
            for k in range(i8.shape[0]):
                h = int(i8[k, _I["head"]])
                a = acc[h]
                a["n_frames"] += 1
                s0, na = int(i8[k, 0]) - lo, int(i8[k, 1])
                for p in PROPERTIES:
                    a["counts"][p] += int(i8[k, _I[f"has_{p}"]])
                cell_pbc = i8[k, _I["pbc0"]:_I["pbc2"] + 1].any()
                if na == 1 and not cell_pbc:
                    continue  # isolated atom: E0s only
                counts = np.bincount([col[int(z)] for z in numbers[s0:s0 + na]], minlength=len(zs)).astype(float)
                if i8[k, _I["has_energy"]]:
                    a["ata"] += np.outer(counts, counts)
                    a["atb"] += counts * f8[k, _F["energy"]]
                a["edges"] += int(i8[k, _I["n_edges"]])
                a["atoms"] += na
                if i8[k, _I["has_forces"]]:
                    fr = forces[s0:s0 + na]
                    a["f2"] += float((fr * fr).sum())
                    a["fn"] += fr.size
        result: dict[str, dict[str, Any]] = {}
        for h in head_idx:
            name = heads[h]
            a = acc[h]
            spec = (head_e0s or {}).get(name, e0s)
            if spec is None:
                e0 = {}
            elif isinstance(spec, str) and spec == "isolated":
                e0 = stats.e0s_from_isolated_atoms([c for c in isolated if c.head == name], zs, name)
            elif isinstance(spec, str) and spec in ("fit", "average", "least_squares"):
                e0 = _e0s_from_normal_equations(a["ata"], a["atb"], zs, name)
            else:
                e0 = stats.compute_e0s(spec, [], zs, name)
            result[name] = {
                "e0s": {str(z): v for z, v in e0.items()},
                "e0s_spec": spec if isinstance(spec, str) or spec is None else "mapping",
                "avg_num_neighbors": a["edges"] / a["atoms"] if a["atoms"] else 0.0,
                "n_edges": a["edges"], "n_atoms": a["atoms"],
                "rms_forces": float(np.sqrt(a["f2"] / a["fn"])) if a["fn"] else None,
                "n_frames": a["n_frames"], "label_counts": a["counts"],
            }
        # second streamed pass: interaction energy per atom needs the E0s
        sums = {h: [0.0, 0.0, 0] for h in head_idx}
        e0_vec = {h: np.array([result[heads[h]]["e0s"].get(str(z), np.nan) for z in zs]) for h in head_idx}
        for i8, f8, lo, numbers, _ in frames():
            for k in range(i8.shape[0]):
                if not i8[k, _I["has_energy"]]:
                    continue
                s0, na = int(i8[k, 0]) - lo, int(i8[k, 1])
                if na == 1 and not i8[k, _I["pbc0"]:_I["pbc2"] + 1].any():
                    continue
                h = int(i8[k, _I["head"]])
                if not result[heads[h]]["e0s"]:
                    continue
                e_ref = sum(e0_vec[h][col[int(z)]] for z in numbers[s0:s0 + na])
                x = (f8[k, _F["energy"]] - e_ref) / na
                s = sums[h]
                s[0] += x
                s[1] += x * x
                s[2] += 1
        for h in head_idx:
            s1, s2, m = sums[h]
            mean = s1 / m if m else None
            result[heads[h]]["mean_interaction_energy"] = mean
            result[heads[h]]["std_interaction_energy"] = float(np.sqrt(max(s2 / m - mean * mean, 0.0))) if m else None
        result["_atomic_numbers"] = zs  # type: ignore[assignment]
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


# ================================================================================= reading
def _h5_error(path: str, frame: int | None, err: BaseException) -> DataError:
    where = f"{path}: frame {frame}" if frame is not None else str(path)
    first = (str(err).splitlines() or [""])[0]
    return DataError(f"{where}: cannot read on-disk dataset ({type(err).__name__}: {first}); "
                     "the file may be truncated or corrupt: re-run mlip-preprocess")


class OnDiskFile:
    """Metadata of one validated on-disk dataset file (small: no per-frame arrays)."""

    def __init__(self, path: str | os.PathLike) -> None:
        import h5py

        self.path = str(path)
        if not Path(self.path).is_file():
            raise DataError(f"{self.path}: on-disk dataset not found")
        try:
            with h5py.File(self.path, "r") as f:
                a = f.attrs
                if a.get("format") != FORMAT:
                    raise DataError(f"{self.path}: not an mlip on-disk dataset (attribute 'format' is "
                                    f"{a.get('format')!r}, expected {FORMAT!r}); create it with mlip-preprocess")
                version = int(a.get("version", -1))
                if version != VERSION:
                    raise DataError(f"{self.path}: on-disk dataset version {version}, this mlip reads version {VERSION}; "
                                    "re-run mlip-preprocess")
                if not bool(a.get("complete", False)):
                    raise DataError(f"{self.path}: incomplete on-disk dataset (writing was interrupted); re-run mlip-preprocess")
                self.n_frames = int(a["n_frames"])
                self.n_atoms = int(a["n_atoms"])
                self.heads: list[str] = json.loads(a["heads"])
                self.config_types: list[str] = json.loads(a["config_types"])
                self.atomic_numbers: list[int] = json.loads(a["atomic_numbers"])
                self.statistics: dict[str, Any] = json.loads(a["statistics"])
                self.stats_r_max = float(a["stats_r_max"])
                expect = {"positions": (self.n_atoms, 3), "forces": (self.n_atoms, 3), "numbers": (self.n_atoms,),
                          "frame_f8": (self.n_frames, len(FLOAT_COLUMNS)), "frame_i8": (self.n_frames, len(INT_COLUMNS))}
                for name, shape in expect.items():
                    if name not in f:
                        raise DataError(f"{self.path}: key '{name}': dataset missing; the file is corrupt")
                    if tuple(f[name].shape) != shape:
                        raise DataError(f"{self.path}: key '{name}': shape {tuple(f[name].shape)}, expected {shape} "
                                        "(truncated or corrupt file); re-run mlip-preprocess")
                last = f["frame_i8"][self.n_frames - 1] if self.n_frames else None
                if last is not None and int(last[0] + last[1]) != self.n_atoms:
                    raise DataError(f"{self.path}: key 'frame_i8': atom offsets do not add up (corrupt file)")
        except DataError:
            raise
        except (OSError, KeyError, ValueError, TypeError, json.JSONDecodeError) as err:
            raise _h5_error(self.path, None, err) from None


class OnDiskDataset(torch.utils.data.Dataset):
    """Lazy graphs of the frames of one or more on-disk files (optionally a subset of their frames).

    ``dataset[i]`` reads frame ``i`` and returns :func:`mlip.data.graph.configuration_to_graph`'s dict
    (neighbour list computed now with cutoff ``r_max``; head index into ``heads``). The object holds only
    file names, small metadata and the optional index array of a subset; HDF5 files are opened lazily in
    each process (after a DataLoader fork), so it is safe with ``num_workers > 0``.
    """

    def __init__(self, paths: str | os.PathLike | Sequence[str | os.PathLike], r_max: float,
                 heads: Sequence[str] | None = None, indices: np.ndarray | None = None) -> None:
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        self.files = [OnDiskFile(p) for p in paths]
        self.r_max = float(r_max)
        self.heads = list(heads) if heads is not None else list(dict.fromkeys(h for f in self.files for h in f.heads))
        self.offsets = np.cumsum([0] + [f.n_frames for f in self.files])
        self.indices = None if indices is None else np.asarray(indices, dtype=np.int64)
        self._handles: dict[int, Any] = {}
        self._pid = -1

    # -------------------------------------------------------------------- pickling / file handles
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_handles"] = {}
        state["_pid"] = -1
        return state

    def _handle(self, k: int) -> Any:
        import h5py

        if self._pid != os.getpid():  # opened in another process (before a fork): never reuse
            self._handles = {}
            self._pid = os.getpid()
        if k not in self._handles:
            try:
                f = h5py.File(self.files[k].path, "r")
                # dataset objects are looked up once per process (a lookup costs ~0.1 ms)
                self._handles[k] = (f, {name: f[name] for name in ("positions", "forces", "numbers", "frame_f8", "frame_i8")})
            except (OSError, KeyError) as err:
                raise _h5_error(self.files[k].path, None, err) from None
        return self._handles[k][1]

    def close(self) -> None:
        for f, _ in self._handles.values():
            f.close()
        self._handles = {}

    # -------------------------------------------------------------------- sequence
    def __len__(self) -> int:
        return int(self.indices.shape[0]) if self.indices is not None else int(self.offsets[-1])

    def _global(self, i: int) -> int:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"frame {i} out of range for {n} frames")
        i %= n
        return int(self.indices[i]) if self.indices is not None else i

    def _locate(self, g: int) -> tuple[int, int]:
        k = int(np.searchsorted(self.offsets, g, side="right") - 1)
        return k, g - int(self.offsets[k])

    def subset(self, indices: np.ndarray | Sequence[int]) -> "OnDiskDataset":
        """A view on frames ``indices`` (positions in this dataset)."""
        idx = np.asarray(indices, dtype=np.int64)
        base = idx if self.indices is None else self.indices[idx]
        out = object.__new__(OnDiskDataset)
        out.__dict__.update(self.__getstate__())
        out.indices = base
        return out

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return self.subset(np.arange(len(self))[i])
        return self.graph(int(i))

    def read_frame(self, i: int) -> tuple[Configuration, dict[str, Any]]:
        """Frame ``i`` as a :class:`Configuration` (labels None where missing) and its raw columns."""
        g = self._global(i)
        k, local = self._locate(g)
        path = self.files[k].path
        f = self._handle(k)
        try:
            i8 = f["frame_i8"][local]
            f8 = f["frame_f8"][local]
            lo, n = int(i8[0]), int(i8[1])
            positions = f["positions"][lo:lo + n]
            numbers = f["numbers"][lo:lo + n].astype(np.int64)
            forces = f["forces"][lo:lo + n] if i8[_I["has_forces"]] else None
        except DataError:
            raise
        except Exception as err:  # noqa: BLE001 - any h5py failure is a bad file for the user
            raise _h5_error(path, local, err) from None
        if positions.shape != (n, 3) or numbers.shape != (n,):
            raise DataError(f"{path}: frame {local}: key 'positions': truncated frame (corrupt file)")
        file = self.files[k]
        config = Configuration(
            numbers=numbers, positions=positions, cell=f8[0:9].reshape(3, 3),
            pbc=i8[_I["pbc0"]:_I["pbc2"] + 1].astype(bool),
            energy=float(f8[_F["energy"]]) if i8[_I["has_energy"]] else None,
            forces=forces,
            stress=f8[9:18].reshape(3, 3) if i8[_I["has_stress"]] else None,
            virials=f8[18:27].reshape(3, 3) if i8[_I["has_virials"]] else None,
            weight=float(f8[_F["weight"]]),
            property_weights={p: float(f8[_F[f"{p}_weight"]]) for p in PROPERTIES},
            config_type=file.config_types[int(i8[_I["config_type"]])],
            head=file.heads[int(i8[_I["head"]])],
            source=f"{path}:{local}",
        )
        return config, {"n_edges": int(i8[_I["n_edges"]])}

    def graph(self, i: int) -> dict[str, np.ndarray]:
        """The graph dict of frame ``i`` (see :func:`mlip.data.graph.configuration_to_graph`)."""
        config, _ = self.read_frame(i)
        return configuration_to_graph(config, self.r_max, self.heads)

    def _column(self, table: str, col: int) -> np.ndarray:
        """One column of a per-frame table for this dataset's frames (chunked reads; int64/float64)."""
        parts = []
        for k, file in enumerate(self.files):
            f = self._handle(k)
            try:
                parts.append(np.asarray(f[table][:, col]))
            except Exception as err:  # noqa: BLE001
                raise _h5_error(file.path, None, err) from None
        values = np.concatenate(parts) if parts else np.zeros(0)
        return values if self.indices is None else values[self.indices]

    def graph_sizes(self, exact_edges: bool = False) -> np.ndarray:
        """[n, 2] (atoms, edges) per frame. The edge counts are those stored at the file's ``stats_r_max``.
        At another cutoff they are scaled by ``(r_max / stats_r_max)^3`` (an estimate), or, with
        ``exact_edges``, recomputed in one pass over the frames (needed for an exact edge budget)."""
        atoms = self._column("frame_i8", _I["n_atoms"])
        stored = self._column("frame_i8", _I["n_edges"])
        if all(abs(f.stats_r_max - self.r_max) < 1e-12 for f in self.files):
            edges = stored
        elif exact_edges:
            edges = np.array([self.graph(i)["edge_index"].shape[1] for i in range(len(self))], dtype=np.int64)
        else:
            ratio = np.array([(self.r_max / f.stats_r_max) ** 3 for f in self.files])
            file_of = np.searchsorted(self.offsets, self.indices if self.indices is not None else np.arange(len(self)),
                                      side="right") - 1
            edges = np.rint(stored * ratio[file_of]).astype(np.int64)
        return np.stack([atoms, edges], axis=1).astype(np.int64)

    def config_types(self) -> "LazyNames":
        """Per-frame config_type names (an index array plus the name tables)."""
        idx = self._column("frame_i8", _I["config_type"])
        file_of = np.searchsorted(self.offsets, self.indices if self.indices is not None else np.arange(len(self)),
                                  side="right") - 1
        return LazyNames(idx, file_of, [f.config_types for f in self.files])

    @property
    def has_stress(self) -> bool:
        """Whether any frame carries stress or virials (from the stored label counts)."""
        return any(s.get("label_counts", {}).get(p, 0) > 0 for f in self.files for s in f.statistics.values()
                   for p in ("stress", "virials"))


class LazyNames(Sequence):
    """Names per frame from integer codes (sliceable; used for config types)."""

    def __init__(self, codes: np.ndarray, file_of: np.ndarray, tables: list[list[str]]) -> None:
        self.codes = codes
        self.file_of = file_of
        self.tables = tables

    def __len__(self) -> int:
        return int(self.codes.shape[0])

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return LazyNames(self.codes[i], self.file_of[i], self.tables)
        return self.tables[int(self.file_of[i])][int(self.codes[i])]


# ================================================================================= loaders
class OnDiskLoader:
    """Training batches from an :class:`OnDiskDataset` with DataLoader workers (``__len__``, ``set_epoch``).

    A :class:`DataError` raised in a worker reaches the caller as a one-line DataError (the worker's
    traceback, which torch appends, is dropped).
    """

    def __init__(self, dataset: OnDiskDataset, sampler: GraphBatchSampler, dtype: torch.dtype,
                 num_workers: int = 0) -> None:
        self.dataset = dataset
        self.sampler = sampler
        self.loader = torch.utils.data.DataLoader(
            dataset, batch_sampler=sampler, collate_fn=Collater(dtype), num_workers=num_workers,
            persistent_workers=num_workers > 0, prefetch_factor=4 if num_workers > 0 else None,
        )

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        it = iter(self.loader)
        while True:
            try:
                batch = next(it)
            except StopIteration:
                return
            except DataError as err:
                lines = [ln for ln in str(err).splitlines() if ln.strip()]
                last = lines[-1] if lines else str(err)
                prefix = "mlip.errors.DataError: "
                raise DataError(last[len(prefix):] if last.startswith(prefix) else last) from None
            yield batch


def make_ondisk_loader(
    dataset: OnDiskDataset, batch_size: int, shuffle: bool, seed: int = 0, dtype: torch.dtype = torch.float64,
    max_atoms: int | None = None, max_edges: int | None = None, drop_last: bool = False, num_workers: int = 0,
    num_replicas: int = 1, rank: int = 0,
) -> OnDiskLoader:
    """Like :func:`mlip.data.batch.make_loader` for an on-disk dataset (sizes from the file, not the graphs)."""
    sampler = GraphBatchSampler(dataset.graph_sizes(exact_edges=max_edges is not None), batch_size, shuffle, seed, max_atoms, max_edges, drop_last,
                                num_replicas, rank)
    return OnDiskLoader(dataset, sampler, dtype, num_workers)


# ================================================================================= training hook
def is_ondisk_config(cfg: Any) -> bool:
    """Whether the training files of ``cfg`` are on-disk datasets (all of them must then be)."""
    train = list(cfg.data.train or [])
    flags = [is_ondisk_path(p) for p in train]
    if not any(flags):
        return False
    if cfg.data.heads:
        raise ConfigError("config key 'data.heads': on-disk (.h5) training files carry their heads inside; "
                          "give them as data.train without data.heads")
    for key in ("train", "valid", "test"):
        for p in getattr(cfg.data, key) or []:
            if not is_ondisk_path(p):
                raise ConfigError(f"config key 'data.{key}': {p} is not an .h5 on-disk dataset; with .h5 training "
                                  "files every split must be .h5 (convert it with mlip-preprocess)")
    return True


def hparams_from_statistics(cfg: Any, files: Sequence[OnDiskFile], heads: Sequence[str],
                            sample: OnDiskDataset | None = None, log: Any = print) -> Any:
    """Model hyper-parameters from the statistics stored in on-disk files (first file holding each head)."""
    from mlip.nn.hparams import ModelHyperparameters
    from mlip.train import statistics as tstats

    zs = sorted({int(z) for f in files for z in f.atomic_numbers})
    r_max = float(cfg.model.r_max)
    e0s, scale, shift = [], [], []
    edges = atoms = 0.0
    for name in heads:
        st = next(f.statistics[name] for f in files if name in f.statistics)
        spec = cfg.data.e0s
        if isinstance(spec, dict):
            e0 = tstats.atomic_energies(spec, [], [], zs, head=name)
            if st.get("e0s_spec") != "mapping" or any(abs(e0[z] - st["e0s"].get(str(z), np.nan)) > 1e-12 for z in zs):
                raise ConfigError(f"config key 'data.e0s': differs from the E0s stored in {files[0].path}; the "
                                  "stored interaction-energy statistics depend on them: re-run mlip-preprocess --config")
        elif spec != st.get("e0s_spec"):
            raise ConfigError(f"config key 'data.e0s': {spec!r} but {files[0].path} was preprocessed with "
                              f"{st.get('e0s_spec')!r}; re-run mlip-preprocess --config")
        missing = [z for z in zs if str(z) not in st["e0s"]]
        if missing:
            raise DataError(f"{files[0].path}: head '{name}': key 'statistics': no E0 for Z={missing}")
        e0s.append([float(st["e0s"][str(z)]) for z in zs])
        mode = cfg.model.scaling
        mean, std, rms = st.get("mean_interaction_energy"), st.get("std_interaction_energy"), st.get("rms_forces")
        sh = float(mean) if mean is not None else 0.0
        sc = 1.0 if mode == "none" else (std if mode == "std" else rms)
        sc = 1.0 if sc is None or not np.isfinite(sc) or sc < 1e-12 else float(sc)
        scale.append(sc)
        shift.append(sh)
    for f in files:
        for st in f.statistics.values():
            edges += st["n_edges"]
            atoms += st["n_atoms"]
    if all(abs(f.stats_r_max - r_max) < 1e-12 for f in files):
        avg_nn = edges / atoms if atoms else 1.0  # directed edges / atoms over all heads (mlip.data.stats)
    else:
        assert sample is not None
        n = min(len(sample), 2000)
        idx = np.random.default_rng(0).choice(len(sample), size=n, replace=False)
        e = a = 0
        for i in idx:
            c, _ = sample.read_frame(int(i))
            if is_isolated_atom(c):
                continue
            e += neighbor_list(c.positions, c.cell, c.pbc, r_max)[0].shape[0]
            a += c.n_atoms
        avg_nn = e / a if a else 1.0
        log(f"model.r_max {r_max} differs from the preprocessing cutoff {files[0].stats_r_max}: average number "
            f"of neighbours estimated from {n} sampled frames")
    avg_nn = avg_nn if avg_nn > 0 else 1.0
    hp = ModelHyperparameters(atomic_numbers=zs, heads=list(heads), atomic_energies=e0s, scale=scale, shift=shift,
                              avg_num_neighbors=float(avg_nn), **cfg.model_kwargs())
    for i, name in enumerate(heads):
        log(f"head {name}: E0s (eV) {dict(zip(zs, e0s[i]))}; scale {scale[i]:.4g}, shift {shift[i]:.4g} eV/atom "
            "(stored statistics)")
    log(f"average number of neighbours: {avg_nn:.4f}")
    return hp


def ondisk_training_data(cfg: Any, run_on_main: Any = None, log: Any = print) -> tuple[Any, Any, Any, Any]:
    """The trainer's data from on-disk files: ``(heads, hparams, graphs, config_types)``.

    ``heads`` maps head name -> :class:`mlip.train.run.HeadData` (no frames, only the head's settings);
    ``graphs[split]`` is a lazy :class:`OnDiskDataset` (or an empty list) and ``config_types[split]`` the
    matching names. Without ``data.valid`` a ``valid_fraction`` of the training frames (drawn with
    ``numpy.random.default_rng(split_seed)``) is held out.
    """
    from mlip.config import HeadConfig
    from mlip.train.run import HeadData

    run_on_main = run_on_main or (lambda fn: fn())
    d = cfg.data
    r_max = float(cfg.model.r_max)
    train_files = [OnDiskFile(p) for p in d.train]
    head_names = list(dict.fromkeys(h for f in train_files for h in f.heads))
    train = OnDiskDataset(d.train, r_max, head_names)
    for p in PROPERTIES:
        w = getattr(cfg.loss, f"{p}_weight")
        if w and not any(f.statistics[h]["label_counts"][p] for f in train_files for h in f.heads):
            raise DataError(f"{', '.join(d.train)}: key '{p}': no training frame carries {p} but loss.{p}_weight is {w}")
    graphs: dict[str, Any] = {"train": train, "valid": [], "test": []}
    if d.valid:
        graphs["valid"] = OnDiskDataset(d.valid, r_max, head_names)
    elif d.valid_fraction > 0:
        seed = d.split_seed if d.split_seed is not None else cfg.seed
        n = len(train)
        n_valid = max(1, int(round(d.valid_fraction * n)))
        perm = np.random.default_rng(seed).permutation(n)
        graphs["valid"] = train.subset(np.sort(perm[:n_valid]))
        graphs["train"] = train.subset(np.sort(perm[n_valid:]))
    if d.test:
        graphs["test"] = OnDiskDataset(d.test, r_max, head_names)
    ctypes = {s: (g.config_types() if len(g) else []) for s, g in graphs.items()}
    for s, g in graphs.items():
        if len(g):
            log(f"{s}: {len(g)} frames from on-disk dataset(s) (lazy; neighbour lists on the fly)")
    hp = run_on_main(lambda: hparams_from_statistics(cfg, train_files, head_names, train, log))
    heads = {name: HeadData(name=name, spec=HeadConfig(e0s=d.e0s)) for name in head_names}
    return heads, hp, graphs, ctypes


# ================================================================================= preprocessing drivers
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


def preprocess_config(cfg: Any, output_dir: str | os.PathLike, progress: bool = True, log: Any = print) -> dict[str, Path]:
    """Write ``train.h5`` (and ``valid.h5``/``test.h5`` where the config names such files) in ``output_dir``
    from the data section of a training config (heads, keys, config_type weights, E0s, model.r_max)."""
    from mlip.train.run import _head_specs

    out_dir = Path(output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    specs = _head_specs(cfg)
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


def describe_ondisk(path: str | os.PathLike) -> str:
    """A few lines about an on-disk dataset: frames, atoms, heads and statistics."""
    f = OnDiskFile(path)
    lines = [f"{f.path}: {f.n_frames} frames, {f.n_atoms} atoms, heads {', '.join(f.heads)}, "
             f"statistics at r_max {f.stats_r_max} A"]
    for name, st in f.statistics.items():
        rms = st.get("rms_forces")
        lines.append(f"  head {name}: E0s {st['e0s'] or '-'} ({st['e0s_spec']}), avg neighbours "
                     f"{st['avg_num_neighbors']:.3f}, RMS forces {'-' if rms is None else f'{rms:.4f}'} eV/A, "
                     f"labels {st['label_counts']}")
    return "\n".join(lines)
