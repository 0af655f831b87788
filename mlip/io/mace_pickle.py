"""Read a mace-torch ``.model`` file without mace-torch, and without running anything from the file.

A ``.model`` file is ``torch.save(model)``: a zip archive holding ``<name>/data.pkl`` (a pickle of the
whole module tree) and the raw tensor storages ``<name>/data/<key>``. Unpickling it normally imports and
calls the classes it names (mace, e3nn, torch.fx code generation), so a crafted file can run arbitrary
code. This module reads it with :class:`SafeUnpickler` instead:

* ``find_class`` never imports. Names under ``mace.``, ``e3nn.``, ``torch.nn.modules.``,
  ``torch.nn.functional``, ``torch.fx`` become :class:`Record` subclasses (inert: the class name, the
  constructor arguments and the pickled ``__dict__``); ``torch.fx`` code is kept as text and never compiled.
  A handful of data constructors (``OrderedDict``, ``set``, ``_codecs.encode`` for latin-1 bytes, torch
  dtypes, tensor rebuild functions) are replaced by local implementations. Any other global (``os.system``,
  ``builtins.exec``, ...) is refused with :class:`~mlip.errors.ModelFileError` before anything runs.
* ``persistent_load`` maps storage ids to arrays read from the zip entries (``numpy.frombuffer``).

:func:`read_mace_model_file` returns the root :class:`Record`; :func:`module_state_dict` rebuilds its
``state_dict`` (same keys as ``torch.nn.Module.state_dict``). Interpreting the records as hyper-parameters
is done in :mod:`mlip.io.mace_model`.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any, Self

import numpy as np
import torch

from mlip.errors import ModelFileError

_INERT_PREFIXES = ("mace.", "e3nn.", "torch.nn.modules.", "torch.nn.functional", "torch.fx.")
_STORAGE_DTYPES = {
    "DoubleStorage": (np.float64, torch.float64),
    "FloatStorage": (np.float32, torch.float32),
    "HalfStorage": (np.float16, torch.float16),
    "LongStorage": (np.int64, torch.int64),
    "IntStorage": (np.int32, torch.int32),
    "ShortStorage": (np.int16, torch.int16),
    "CharStorage": (np.int8, torch.int8),
    "ByteStorage": (np.uint8, torch.uint8),
    "BoolStorage": (np.bool_, torch.bool),
}
_TORCH_DTYPES = {"float64": torch.float64, "float32": torch.float32, "int64": torch.int64, "bool": torch.bool}


class Record:
    """An inert stand-in for a class or function named in the pickle.

    Class attribute ``qualname`` is the dotted name as written in the file. Instances hold ``args`` (the
    positional arguments the pickle passed to the constructor) and ``state`` (what ``BUILD`` would have
    set, usually the module's ``__dict__``). Nothing of the original class is imported or run.
    """

    qualname = ""
    args: tuple[Any, ...]
    state: Any

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        obj = object.__new__(cls)
        obj.args = args
        obj.state = dict(kwargs) if kwargs else None
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"Record({self.qualname})"

    @property
    def cls_name(self) -> str:
        """Last component of :attr:`qualname` (e.g. ``RealAgnosticResidualInteractionBlock``)."""
        return self.qualname.rsplit(".", 1)[-1]

    def attr(self, name: str, default: Any = ...) -> Any:
        """A pickled attribute (``__dict__`` entry, parameter, buffer or submodule) by name."""
        st = self.state if isinstance(self.state, dict) else {}
        if name in st:
            return st[name]
        for group in ("_parameters", "_buffers", "_modules"):
            sub = st.get(group)
            if isinstance(sub, dict) and name in sub:
                return sub[name]
        if default is ...:
            raise ModelFileError(f"mace .model: {self.qualname} has no attribute '{name}' (unsupported layout)")
        return default


_RECORD_TYPES: dict[str, type[Record]] = {}


def record_type(qualname: str) -> type[Record]:
    """The (cached) :class:`Record` subclass standing for ``qualname``."""
    if qualname not in _RECORD_TYPES:
        _RECORD_TYPES[qualname] = type(qualname.rsplit(".", 1)[-1], (Record,), {"qualname": qualname})
    return _RECORD_TYPES[qualname]


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """The only use of ``_codecs.encode`` in protocol-2 pickles: bytes stored as latin-1 text."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise ModelFileError(f"mace .model: unexpected _codecs.encode({type(text).__name__}, {encoding!r})")
    return text.encode("latin1")


class _StorageType:
    """What ``torch.DoubleStorage`` etc. stand for in the pickle: the storage's element type."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.np_dtype, self.torch_dtype = _STORAGE_DTYPES[name]


def _rebuild_tensor(storage: torch.Tensor, offset: int, size: Any, stride: Any, requires_grad: bool = False,
                    hooks: Any = None, metadata: Any = None) -> torch.Tensor:
    """``torch._utils._rebuild_tensor_v2`` on a flat storage tensor (a copy, so the storage can be freed)."""
    if not isinstance(storage, torch.Tensor):
        raise ModelFileError("mace .model: tensor without a storage")
    return torch.as_strided(storage, tuple(size), tuple(stride), int(offset)).clone()


def _rebuild_parameter(data: torch.Tensor, requires_grad: bool = True, hooks: Any = None, *extra: Any) -> torch.Tensor:
    """``torch._utils._rebuild_parameter``: the parameter's values as a plain tensor."""
    if not isinstance(data, torch.Tensor):
        raise ModelFileError("mace .model: parameter without tensor data")
    return data


_DATA_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("__builtin__", "set"): set,
    ("builtins", "set"): set,
    ("__builtin__", "frozenset"): frozenset,
    ("builtins", "frozenset"): frozenset,
    ("_codecs", "encode"): _latin1_encode,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class SafeUnpickler(pickle.Unpickler):
    """Unpickler that resolves globals to inert records or local data constructors, never importing."""

    def __init__(self, data: bytes, storages: _ZipStorages, path: str) -> None:
        super().__init__(io.BytesIO(data))
        self._storages = storages
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        key = (module, name)
        if key in _DATA_GLOBALS:
            return _DATA_GLOBALS[key]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if module == "torch" and name in _TORCH_DTYPES:
            return _TORCH_DTYPES[name]
        qualname = f"{module}.{name}"
        if qualname.startswith(_INERT_PREFIXES) and all(p.isidentifier() for p in qualname.split(".")):
            return record_type(qualname)
        raise ModelFileError(
            f"{self._path}: refused: the pickle names '{qualname}', which a mace-torch model file does not "
            "contain (nothing from the file was run)"
        )

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], _StorageType)):
            raise ModelFileError(f"{self._path}: refused: unknown persistent id {str(pid)[:60]!r}")
        return self._storages.get(str(pid[2]), pid[1])


class _ZipStorages:
    """Tensor storages of a torch zip archive, read on demand and cached by key."""

    def __init__(self, archive: zipfile.ZipFile, prefix: str, path: str) -> None:
        self._zip = archive
        self._prefix = prefix
        self._path = path
        self._cache: dict[str, torch.Tensor] = {}
        order = f"{prefix}byteorder"
        names = set(archive.namelist())
        self._swap = order in names and archive.read(order).decode().strip() == "big"

    def get(self, key: str, kind: _StorageType) -> torch.Tensor:
        if key not in self._cache:
            name = f"{self._prefix}data/{key}"
            try:
                raw = self._zip.read(name)
            except KeyError:
                raise ModelFileError(f"{self._path}: storage '{name}' missing from the archive") from None
            arr = np.frombuffer(raw, dtype=kind.np_dtype)
            if self._swap:
                arr = arr.byteswap()
            self._cache[key] = torch.from_numpy(arr.copy())
        return self._cache[key]


def _starts_as_zip(path: str) -> bool:
    """Whether ``path`` begins with a zip local-file header (what every torch.save archive starts with)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == b"PK\x03\x04"
    except OSError:
        return False


def _unpickle(archive: zipfile.ZipFile, path: str) -> Any:
    """The object of the archive's ``<name>/data.pkl``, through :class:`SafeUnpickler`."""
    pkl = [n for n in archive.namelist() if n.endswith("data.pkl") and n.count("/") == 1]
    if len(pkl) != 1:
        raise ModelFileError(f"{path}: not a torch.save archive (no <name>/data.pkl entry)")
    prefix = pkl[0][: -len("data.pkl")]
    unpickler = SafeUnpickler(archive.read(pkl[0]), _ZipStorages(archive, prefix, path), path)
    try:
        return unpickler.load()
    except (ModelFileError, zipfile.BadZipFile):
        raise
    except Exception as err:  # noqa: BLE001  (malformed pickle: any error of the machinery on inert data)
        raise ModelFileError(f"{path}: cannot read the pickle: {type(err).__name__}: {err}") from None


def read_mace_model_file(path: str | Path) -> Record:
    """Unpickle a mace-torch ``.model`` file safely; returns the root module as a :class:`Record`."""
    path = str(path)
    try:
        archive = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such file") from None
    except (zipfile.BadZipFile, OSError) as err:
        if _starts_as_zip(path):  # a zip cut short: its directory, at the end, is gone
            from mlip.io.file_kind import truncated_zip

            raise ModelFileError(f"{path}: {truncated_zip(Path(path).stat().st_size)}; copy it again") from None
        raise ModelFileError(
            f"{path}: not a torch zip archive ({err}); only files written by torch.save since torch 1.6 are read"
        ) from None
    with archive:
        try:
            root = _unpickle(archive, path)
        except zipfile.BadZipFile as err:  # an entry fails its checksum: bytes changed in a copy
            raise ModelFileError(f"{path}: a truncated or damaged PyTorch file ({err}); copy it again") from None
    if not isinstance(root, Record):
        raise ModelFileError(f"{path}: the file holds a {type(root).__name__}, not a pickled mace-torch model")
    return root


def module_state_dict(module: Record, prefix: str = "") -> dict[str, torch.Tensor]:
    """``state_dict()`` of a pickled ``torch.nn.Module`` record: parameters, persistent buffers, submodules."""
    out: dict[str, torch.Tensor] = {}
    st = module.state if isinstance(module.state, dict) else {}
    skip = set(st.get("_non_persistent_buffers_set") or ())
    for name, value in (st.get("_parameters") or {}).items():
        if value is not None:
            out[prefix + name] = value
    for name, value in (st.get("_buffers") or {}).items():
        if value is not None and name not in skip:
            out[prefix + name] = value
    for name, sub in (st.get("_modules") or {}).items():
        if isinstance(sub, Record):
            out.update(module_state_dict(sub, f"{prefix}{name}."))
    return out


def is_mace_model_file(path: str | Path) -> bool:
    """True if ``path`` is a torch zip archive whose pickle starts with a ``mace.`` class (content, not suffix).

    Only the pickle's opcodes are scanned (``pickletools.genops``); nothing is unpickled."""
    import pickletools

    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith("data.pkl") and n.count("/") == 1]
            if len(names) != 1:
                return False
            data = archive.read(names[0])
    except (OSError, zipfile.BadZipFile):
        return False
    strings: list[str] = []
    try:
        for op, arg, _ in pickletools.genops(data):
            if op.name == "GLOBAL":
                return str(arg).startswith("mace.")
            if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
                strings.append(str(arg))
            if op.name == "STACK_GLOBAL":
                return len(strings) >= 2 and strings[-2].startswith("mace.")
    except Exception:  # noqa: BLE001  (malformed pickle: not a mace model)
        return False
    return False
