"""Training-side data set-up: from a :class:`mlip.config.Config` to graphs, loaders and hyper-parameters.

The one data path of a training run (:func:`prepare_data`):

1. per-head settings resolved once (:func:`mlip.config.resolve_heads`);
2. frames read once per head (:func:`load_datasets`; isolated atoms set apart there), or lazy on-disk
   datasets opened (:func:`ondisk_training_data`);
3. statistics computed once as one per-head record (:func:`mlip.data.stats.head_statistics`, or the
   record stored in the .h5 file by ``mlip-preprocess``);
4. hyper-parameters built once from those records (:func:`mlip.train.statistics.hparams_from_records`);
5. graphs and the training loader.

Everything here takes the config; the data/ helpers it calls take plain arguments.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mlip.config import Config, HeadConfig, resolve_heads
from mlip.data.batch import collate, make_loader, pack_greedy
from mlip.data.configuration import Configuration
from mlip.data.elements import symbols
from mlip.data.coverage import check_coverage, format_coverage_table
from mlip.data import stats as data_stats
from mlip.data.graph import graph_sizes
from mlip.data.io import is_isolated_atom, read_configurations, split_isolated
from mlip.data.neighbors import neighbor_list
from mlip.data.ondisk import OnDiskDataset, OnDiskFile, is_ondisk_path, make_ondisk_loader
from mlip.data.splits import random_split
from mlip.data.structures import structures_to_graphs
from mlip.data.stats import HeadStatistics
from mlip.errors import ConfigError, DataError
from mlip.nn.hparams import ModelHyperparameters
from mlip.train import statistics
from mlip.train.loss import PROPERTIES
from mlip.train.notices import split_notices
from mlip.train.trainer import EvalSource, TrainerHooks

SPLITS = ("train", "valid", "test")


@dataclass
class HeadData:
    """The frames of one head, split into train/valid/test; ``isolated``: isolated-atom frames (E0s)."""

    name: str
    spec: HeadConfig
    train: list[Configuration] = field(default_factory=list)
    valid: list[Configuration] = field(default_factory=list)
    test: list[Configuration] = field(default_factory=list)
    isolated: list[Configuration] = field(default_factory=list)


@dataclass
class TrainingData:
    """Everything the trainer needs from the data (built by :func:`prepare_data`).

    ``graphs[split]``: graph dicts (:func:`mlip.data.graph.configuration_to_graph`) or a lazy
    :class:`mlip.data.ondisk.OnDiskDataset`; ``config_types[split]``: one name per graph.
    """

    heads: dict[str, HeadData]
    hparams: ModelHyperparameters
    graphs: dict[str, Any]
    config_types: dict[str, Any]
    loader: Any
    finetune: Any = None
    """A :class:`mlip.train.finetune.FinetunePlan` when the config has a ``finetune`` block."""

    @property
    def head_names(self) -> list[str]:
        return list(self.heads)

    def any_stress(self, split: str) -> bool:
        """Whether any frame of ``split`` carries stress or virials."""
        if any(c.has("stress") or c.has("virials") for hd in self.heads.values() for c in getattr(hd, split)):
            return True
        return bool(getattr(self.graphs[split], "has_stress", False))


def _read(files: Sequence[str] | None, spec: HeadConfig, head: str, align: Any = None) -> list[Configuration]:
    configs: list[Configuration] = []
    for path in files or []:
        part = read_configurations(
            path,
            energy_key=spec.energy_key or "energy",
            forces_key=spec.forces_key or "forces",
            stress_key=spec.stress_key or "stress",
            virials_key=spec.virials_key or "virials",
            head=head,
        )
        configs += align(part, path) if align is not None else part  # the head's tea: block
    for c in configs:
        if c.config_type in spec.config_type_weights:
            c.weight *= spec.config_type_weights[c.config_type]
    return configs


def load_datasets(cfg: Config, log: Any = print) -> dict[str, HeadData]:
    """Read every head's train/valid/test frames; isolated atoms are set apart for E0s."""
    heads: dict[str, HeadData] = {}
    split_seed = cfg.data.split_seed if cfg.data.split_seed is not None else cfg.seed
    for name, spec in resolve_heads(cfg).items():
        hd = HeadData(name=name, spec=spec)
        align = None
        if spec.tea is not None:
            from mlip.train.tea_block import TeaAligner

            align = TeaAligner(spec.tea, name, spec.energy_key or "energy", log)
        train = _read(spec.train, spec, name, align)
        if spec.e0s == "isolated":
            train, hd.isolated = split_isolated(train)
            if spec.isolated_atoms:
                hd.isolated += _read([spec.isolated_atoms], spec, name, align)
        if spec.valid:
            hd.valid = _read(spec.valid, spec, name, align)
            hd.train = train
        else:
            hd.train, hd.valid = random_split(train, float(spec.valid_fraction or 0.0), split_seed)
        hd.test = _read(spec.test, spec, name, align)
        if not hd.train:
            raise DataError(f"head '{name}': no training frames in {', '.join(spec.train or [])}")
        heads[name] = hd
    if any(hd.spec.head for hd in heads.values()):
        from mlip.train.tea_block import merge_datasets

        heads = merge_datasets(heads, HeadData, log)
    return heads


def check_label_coverage(cfg: Config, heads: dict[str, HeadData], log: Any = print) -> None:
    """Print which labels each split and head carries (mlip.data.coverage); a property with a non-zero
    loss weight (either stage) that no frame of a head's train/valid split carries is an error."""
    weights = {p: getattr(cfg.loss, f"{p}_weight") for p in PROPERTIES}
    weights["stress"] = weights["stress"] or 0.0  # unset: trained only where the data carry it
    st = cfg.stage_two
    first = st.first_epoch(cfg.train.max_epochs)
    if first is not None and first <= cfg.train.max_epochs:
        for p in PROPERTIES:
            v = getattr(st, f"{p}_weight")
            if v is not None and weights[p] == 0.0:
                weights[p] = v
    splits = {s: [c for hd in heads.values() for c in getattr(hd, s)] for s in SPLITS}
    log("label coverage (frames carrying each label):\n" + format_coverage_table(splits))
    keys = {n: {p: getattr(hd.spec, f"{p}_key") or p for p in PROPERTIES} for n, hd in heads.items()}
    check_coverage(splits, weights, keys=keys)  # messages name the keys as typed


def data_summary(heads: dict[str, HeadData]) -> str:
    """A few lines describing the data (frames, atoms, elements per head and split)."""
    from ase.data import chemical_symbols

    lines = []
    for name, hd in heads.items():
        for split in SPLITS:
            configs = getattr(hd, split)
            if not configs:
                continue
            n_atoms = sum(c.n_atoms for c in configs)
            zs = sorted({int(z) for c in configs for z in c.numbers})
            types = sorted({c.config_type for c in configs})
            lines.append(
                f"head {name}: {split}: {len(configs)} frames, {n_atoms} atoms, elements "
                f"{' '.join(chemical_symbols[z] for z in zs)}, config types {', '.join(types[:6])}"
                + (" ..." if len(types) > 6 else "")
            )
    return "\n".join(lines)


def eval_batches(
    graphs: list[dict[str, Any]],
    config_types: list[str],
    batch_size: int,
    dtype: torch.dtype,
    max_atoms: int | None,
    max_edges: int | None,
) -> EvalSource:
    """Deterministic, in-order batches under the same budget rule as training."""
    sizes = graphs.graph_sizes() if hasattr(graphs, "graph_sizes") else [graph_sizes(g) for g in graphs]
    chunks = pack_greedy(sizes, batch_size, max_atoms, max_edges)

    def batches() -> Iterator[tuple[dict[str, torch.Tensor], list[str]]]:
        for idx in chunks:
            yield collate([graphs[i] for i in idx], dtype=dtype), [config_types[i] for i in idx]

    return EvalSource(name="", batches=batches)


def hparams_from_records(
    cfg: Config, records: dict[str, HeadStatistics], zs: Sequence[int], avg_num_neighbors: float | None = None,
    log: Any = print, note: str = "",
) -> ModelHyperparameters:
    """Model hyper-parameters from the config and one statistics record per head (in-memory or stored):
    E0s, scale and shift per head; the mean neighbour count over all heads unless given."""
    from ase.data import chemical_symbols

    names = list(records)
    e0s = [[float(r["e0s"][z]) for z in zs] for r in records.values()]
    scale, shift = zip(*(data_stats.scale_shift(r, cfg.model.scaling, cfg.model.shifting) for r in records.values())) if names else ((), ())
    avg_nn = data_stats.mean_neighbours(list(records.values())) if avg_num_neighbors is None else avg_num_neighbors
    hp = ModelHyperparameters(atomic_numbers=list(zs), heads=names, atomic_energies=e0s, scale=list(scale),
                              shift=list(shift), avg_num_neighbors=float(avg_nn), **cfg.model_kwargs())
    for i, name in enumerate(names):
        pretty = ", ".join(f"{chemical_symbols[z]}: {e:.4f}" for z, e in zip(zs, e0s[i]))
        log(f"head {name}: E0s (eV) {{{pretty}}}; scale {scale[i]:.4g}, shift {shift[i]:.4g} eV/atom{note}")
    log(f"average number of neighbours: {avg_nn:.4f}")
    return hp


def build_hparams(cfg: Config, heads: dict[str, HeadData], log: Any = print) -> ModelHyperparameters:
    """Model hyper-parameters from the config plus training-set statistics (one record per head)."""
    zs = sorted({int(z) for hd in heads.values() for split in SPLITS for c in getattr(hd, split) for z in c.numbers})
    zs = sorted(set(zs) | {int(z) for hd in heads.values() for c in hd.isolated for z in c.numbers})
    r_max = float(cfg.model.r_max)
    frames = [c for hd in heads.values() for split in (*SPLITS, "isolated") for c in getattr(hd, split)]
    records: dict[str, HeadStatistics] = {}
    for name, hd in heads.items():
        where = f"data.heads.{name}.e0s" if cfg.data.heads else "data.e0s"
        e0 = statistics.atomic_energies(hd.spec.e0s, hd.train, hd.isolated, zs, head=name, where=where, log=log,
                                        data=frames)
        records[name] = data_stats.head_statistics(hd.train, e0, r_max, hd.spec.e0s)
    return hparams_from_records(cfg, records, zs, log=log)


def _in_memory_data(cfg: Config, hooks: TrainerHooks, dtype: torch.dtype, log: Any) -> TrainingData:
    """Read the frames, plan fine-tuning, statistics and hyper-parameters, graphs and the loader."""
    quiet = log if hooks.is_main else (lambda s: None)
    heads = load_datasets(cfg, log)
    finetune = None
    if cfg.finetune is not None:  # may add the replay head; hyper-parameters from the pretrained model
        from mlip.train.finetune import prepare_finetune

        finetune = prepare_finetune(cfg, heads, quiet)
    if hooks.is_main:
        log(data_summary(heads))
        for line in split_notices(heads):  # e.g. a 1-frame validation set
            log(f"warning: {line}")
    check_label_coverage(cfg, heads, quiet)
    if finetune is not None:
        hp = finetune.hparams
    else:
        hp = hooks.run_on_main(lambda: build_hparams(cfg, heads, quiet))
    head_names = list(heads)
    graphs: dict[str, Any] = {s: [] for s in SPLITS}
    ctypes: dict[str, Any] = {s: [] for s in SPLITS}
    for hd in heads.values():
        for split in SPLITS:
            configs = getattr(hd, split)
            graphs[split] += structures_to_graphs(configs, hp.r_max, head_names)
            ctypes[split] += [c.config_type for c in configs]
    t = cfg.train
    loader = make_loader(
        graphs["train"], t.batch_size, shuffle=True, seed=cfg.seed, dtype=dtype,
        max_atoms=t.max_atoms_per_batch, max_edges=t.max_edges_per_batch,
        num_replicas=hooks.world_size, rank=hooks.rank,
    )
    return TrainingData(heads, hp, graphs, ctypes, loader, finetune)


# ================================================================================= on-disk (.h5) data
def is_ondisk_config(cfg: Config) -> bool:
    """Whether the training files of ``cfg`` are on-disk datasets (all of them must then be)."""
    train = list(cfg.data.train or [])
    flags = [is_ondisk_path(p) for p in train]
    if not any(flags):
        return False
    if cfg.data.heads:
        raise ConfigError("config key 'data.heads': on-disk (.h5) training files carry their heads inside; "
                          "give them as data.train without data.heads")
    for key in SPLITS:
        for p in getattr(cfg.data, key) or []:
            if not is_ondisk_path(p):
                raise ConfigError(f"config key 'data.{key}': {p} is not an .h5 on-disk dataset; with .h5 training "
                                  "files every split must be .h5 (convert it with mlip-preprocess)")
    return True


def _stored_records(cfg: Config, files: Sequence[OnDiskFile], heads: Sequence[str],
                    zs: Sequence[int]) -> dict[str, HeadStatistics]:
    """Each head's record from the first file holding it; its E0s must be those the config asks for."""
    records: dict[str, HeadStatistics] = {}
    spec = cfg.data.e0s
    for name in heads:
        st = next(f.statistics[name] for f in files if name in f.statistics)
        if isinstance(spec, dict):
            e0 = statistics.atomic_energies(spec, [], [], zs, head=name)
            if st.get("e0s_spec") != "mapping" or any(abs(e0[z] - st["e0s"].get(str(z), np.nan)) > 1e-12 for z in zs):
                raise ConfigError(f"config key 'data.e0s': differs from the E0s stored in {files[0].path}; the "
                                  "stored interaction-energy statistics depend on them: re-run mlip-preprocess --config")
        elif spec != st.get("e0s_spec"):
            raise ConfigError(f"config key 'data.e0s': {spec!r} but {files[0].path} was preprocessed with "
                              f"{st.get('e0s_spec')!r}; re-run mlip-preprocess --config")
        missing = [z for z in zs if str(z) not in st["e0s"]]
        if missing:
            raise DataError(f"{files[0].path}: head '{name}': key 'statistics': no E0 for {symbols(missing)}")
        records[name] = data_stats.from_json(st)
    return records


def _sampled_neighbours(sample: OnDiskDataset, r_max: float, log: Any) -> float:
    """Mean neighbour count at ``r_max`` estimated from up to 2000 frames (seeded draw)."""
    n = min(len(sample), 2000)
    idx = np.random.default_rng(0).choice(len(sample), size=n, replace=False)
    e = a = 0
    for i in idx:
        c, _ = sample.read_frame(int(i))
        if is_isolated_atom(c):
            continue
        e += neighbor_list(c.positions, c.cell, c.pbc, r_max)[0].shape[0]
        a += c.n_atoms
    log(f"model.r_max {r_max} differs from the preprocessing cutoff {sample.files[0].stats_r_max}: average "
        f"number of neighbours estimated from {n} sampled frames")
    return e / a if a and e else 1.0


def hparams_from_statistics(cfg: Config, files: Sequence[OnDiskFile], heads: Sequence[str],
                            sample: OnDiskDataset | None = None, log: Any = print) -> ModelHyperparameters:
    """Model hyper-parameters from the statistics stored in on-disk files (first file holding each head)."""
    zs = sorted({int(z) for f in files for z in f.atomic_numbers})
    r_max = float(cfg.model.r_max)
    records = _stored_records(cfg, files, heads, zs)
    if all(abs(f.stats_r_max - r_max) < 1e-12 for f in files):  # directed edges / atoms over all heads
        avg_nn = data_stats.mean_neighbours([data_stats.from_json(st) for f in files for st in f.statistics.values()])
    else:
        assert sample is not None
        avg_nn = _sampled_neighbours(sample, r_max, log)
    return hparams_from_records(cfg, records, zs, avg_nn, log, note=" (stored statistics)")


def _ondisk_splits(cfg: Config, train: OnDiskDataset, head_names: list[str]) -> dict[str, Any]:
    """Lazy datasets per split; without ``data.valid`` a ``valid_fraction`` of the training frames (drawn
    with ``numpy.random.default_rng(split_seed)``) is held out."""
    d = cfg.data
    r_max = float(cfg.model.r_max)
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
    return graphs


def ondisk_training_data(cfg: Config, hooks: TrainerHooks, dtype: torch.dtype, log: Any = print) -> TrainingData:
    """The trainer's data from on-disk files: ``heads`` hold no frames, only the head's settings;
    ``graphs[split]`` is a lazy :class:`OnDiskDataset` (or an empty list)."""
    quiet = log if hooks.is_main else (lambda s: None)
    d = cfg.data
    train_files = [OnDiskFile(p) for p in d.train]
    head_names = list(dict.fromkeys(h for f in train_files for h in f.heads))
    train = OnDiskDataset(d.train, float(cfg.model.r_max), head_names)
    for p in PROPERTIES:
        w = getattr(cfg.loss, f"{p}_weight")
        if w and not any(f.statistics[h]["label_counts"][p] for f in train_files for h in f.heads):
            raise DataError(f"{', '.join(d.train)}: key '{p}': no training frame carries {p} but loss.{p}_weight is {w}")
    graphs = _ondisk_splits(cfg, train, head_names)
    ctypes = {s: (g.config_types() if len(g) else []) for s, g in graphs.items()}
    for s, g in graphs.items():
        if len(g):
            quiet(f"{s}: {len(g)} frames from on-disk dataset(s) (lazy; neighbour lists on the fly)")
    hp = hooks.run_on_main(lambda: hparams_from_statistics(cfg, train_files, head_names, train, quiet))
    heads = {name: HeadData(name=name, spec=HeadConfig(e0s=d.e0s)) for name in head_names}
    t = cfg.train
    loader = make_ondisk_loader(
        graphs["train"], t.batch_size, shuffle=True, seed=cfg.seed, dtype=dtype,
        max_atoms=t.max_atoms_per_batch, max_edges=t.max_edges_per_batch, num_workers=d.num_workers,
        num_replicas=hooks.world_size, rank=hooks.rank,
    )
    return TrainingData(heads, hp, graphs, ctypes, loader)


def prepare_data(cfg: Config, hooks: TrainerHooks, dtype: torch.dtype, log: Any = print) -> TrainingData:
    """The data of a training run: extended-XYZ (in memory) or .h5 on-disk datasets (lazy)."""
    if is_ondisk_config(cfg):  # HDF5 files from mlip-preprocess: lazy graphs, stored statistics
        return ondisk_training_data(cfg, hooks, dtype, log)
    return _in_memory_data(cfg, hooks, dtype, log)
