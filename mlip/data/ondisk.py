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

The implementation lives in :mod:`mlip.data.ondisk_write` (writer, streamed statistics, preprocessing
driver) and :mod:`mlip.data.ondisk_read` (file check, lazy dataset, loader); this module is their public
face. The training-side set-up (config -> datasets, stored statistics -> hyper-parameters) is
:mod:`mlip.train.data_setup`.
"""

from __future__ import annotations

from mlip.data.ondisk_read import (
    FLOAT_COLUMNS,
    FORMAT,
    INT_COLUMNS,
    SUFFIXES,
    VERSION,
    LazyNames,
    OnDiskDataset,
    OnDiskFile,
    OnDiskLoader,
    describe_ondisk,
    is_ondisk_path,
    make_ondisk_loader,
)
from mlip.data.ondisk_write import (
    OnDiskWriter,
    compute_ondisk_statistics,
    iter_configurations,
    preprocess_files,
    write_ondisk,
)

__all__ = [
    "FLOAT_COLUMNS", "FORMAT", "INT_COLUMNS", "SUFFIXES", "VERSION", "LazyNames", "OnDiskDataset", "OnDiskFile",
    "OnDiskLoader", "OnDiskWriter", "compute_ondisk_statistics", "describe_ondisk", "is_ondisk_path",
    "iter_configurations", "make_ondisk_loader", "preprocess_files", "write_ondisk",
]
