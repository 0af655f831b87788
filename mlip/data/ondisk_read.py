"""Reading on-disk datasets (HDF5 via h5py) written by :mod:`mlip.data.ondisk_write`.

Training reads a file lazily frame by frame (:class:`OnDiskDataset`), in DataLoader worker processes,
and builds the same graph dicts as :func:`mlip.data.graph.configuration_to_graph`; neighbour lists are
computed on the fly (see :mod:`mlip.data.ondisk` for the file layout and why edges are not stored).

Opening checks the format, version, completeness and the dataset lengths; any h5py failure while
reading a frame becomes a :class:`mlip.errors.DataError` naming the file and frame.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.utils.data

from mlip.data import keys
from mlip.data.batch import Collater, GraphBatchSampler
from mlip.data.configuration import PROPERTIES, Configuration
from mlip.data.graph import configuration_to_graph
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


# ================================================================================= reading
def _h5_error(path: str, frame: int | None, err: BaseException) -> DataError:
    where = f"{path}: frame {frame}" if frame is not None else str(path)
    first = (str(err).splitlines() or [""])[0]
    return DataError(f"{where}: cannot read on-disk dataset ({type(err).__name__}: {first}); "
                     "the file may be truncated or corrupt: re-run mlip-preprocess")


def import_h5py() -> Any:
    """The ``h5py`` module; a one-line ConfigError when it is not installed (it is the ``ondisk`` extra)."""
    try:
        import h5py
    except ImportError:
        raise ConfigError("on-disk (.h5) datasets need h5py, which is not installed: "
                          "pip install -e '.[ondisk]' in the mlip clone (or pip install h5py)") from None
    return h5py


class OnDiskFile:
    """Metadata of one validated on-disk dataset file (small: no per-frame arrays)."""

    def __init__(self, path: str | os.PathLike) -> None:
        h5py = import_h5py()

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
        h5py = import_h5py()

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
            edges = np.array([self.graph(i)[keys.EDGE_INDEX].shape[1] for i in range(len(self))], dtype=np.int64)
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
