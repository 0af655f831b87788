"""Multi-head training and fine-tuning: head independence, shared-backbone gradients, the fine-tuning
plan (E0 policy per head, replay element filter), config errors, the tea: block, and a tiny end-to-end
fine-tuning run on the bundled acac slice."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

from mlip.config import config_from_dict
from mlip.data.batch import collate
from mlip.data.configuration import Configuration
from mlip.data.graph import configuration_to_graph
from mlip.errors import ConfigError
from mlip.io.model_file import load_model, read_model_info, save_model
from mlip.nn.hparams import ModelHyperparameters
from mlip.nn.model import build_model
from mlip.train.finetune import freeze_parameters, prepare_finetune
from mlip.train.data_setup import load_datasets
from mlip.train.run import train

REPO = Path(__file__).resolve().parents[2]
ACAC = REPO / "data" / "acac"
ZS = [1, 6, 8]
TINY = dict(r_max=3.5, num_bessel=4, max_ell=1, hidden_irreps="4x0e + 4x1o", num_interactions=2, correlation=2,
            radial_mlp=[8], mlp_irreps="4x0e", avg_num_neighbors=4.0)


def tiny_model(heads=("a", "b"), seed=0, e0=None):
    torch.manual_seed(seed)
    h = len(heads)
    hp = ModelHyperparameters(atomic_numbers=ZS, heads=list(heads),
                              atomic_energies=e0 or [[-1.0 - i - 10 * k for i in range(3)] for k in range(h)],
                              scale=[0.7 + 0.1 * k for k in range(h)], shift=[0.05 * k for k in range(h)], **TINY)
    return build_model(hp, dtype=torch.float64)


def molecule(rng, counts=(4, 2, 1)) -> Atoms:
    numbers = sum(([z] * n for z, n in zip(ZS, counts)), [])
    # atoms on a jittered grid (>= 0.9 A apart), within the cutoff of each other
    grid = np.array([[i, j, k] for i in range(3) for j in range(3) for k in range(3)], float) * 1.1
    pos = grid[rng.permutation(len(grid))[: len(numbers)]] + rng.normal(0, 0.05, (len(numbers), 3))
    return Atoms(numbers=numbers, positions=pos)


def batch_of(model, atoms_list, heads):
    graphs = []
    for a, h in zip(atoms_list, heads):
        c = Configuration(numbers=a.numbers, positions=a.positions, cell=np.zeros((3, 3)), pbc=np.zeros(3, bool), head=h)
        graphs.append(configuration_to_graph(c, model.r_max, model.heads))
    return collate(graphs, dtype=torch.float64)


# ------------------------------------------------------------------ heads


def test_changing_one_head_leaves_the_other_unchanged():
    rng = np.random.default_rng(0)
    mols = [molecule(rng), molecule(rng, (3, 3, 2))]
    model = tiny_model()
    batch_b = batch_of(model, mols, ["b", "b"])
    before = model(batch_b)
    batch_a = batch_of(model, mols, ["a", "a"])
    before_a = model(batch_a)
    with torch.no_grad():  # perturb everything that belongs to head a (index 0)
        for r in model.readouts:
            if hasattr(r, "linear_1"):
                blk = r.hidden_dim // r.num_heads
                w1 = r.linear_1.weight.view(-1, r.hidden_dim)
                w1[:, :blk] += 0.5
                r.linear_2.weight.view(r.hidden_dim, 2)[:, 0] += 0.5
            else:
                r.linear.weight.view(-1, 2)[:, 0] += 0.5
        model.atomic_energies[0] += 3.0
        model.scale[0] *= 2
        model.shift[0] += 1
    after = model(batch_b)
    after_a = model(batch_a)
    assert torch.equal(before["energy"], after["energy"])
    assert torch.equal(before["forces"], after["forces"])
    assert not torch.allclose(before_a["energy"], after_a["energy"])
    assert not torch.allclose(before_a["forces"], after_a["forces"])


def test_backbone_gets_gradients_from_every_head():
    rng = np.random.default_rng(1)
    mols = [molecule(rng), molecule(rng, (2, 3, 2))]
    model = tiny_model()
    backbone = [n for n, p in model.named_parameters() if n.startswith(("interactions", "products", "node_embedding"))]
    grads = {}
    for head in ("a", "b"):
        model.zero_grad()
        out = model(batch_of(model, mols, [head, head]), training=True)
        (out["energy"].sum() + (out["forces"] ** 2).sum()).backward()
        params = dict(model.named_parameters())
        grads[head] = {n: params[n].grad.clone() for n in backbone}
        for n in backbone:
            assert params[n].grad is not None and params[n].grad.abs().sum() > 0, (head, n)
        # the other head's readout column gets nothing
        other = 1 if head == "a" else 0
        lin = model.readouts[0].linear.weight.grad.view(-1, 2)
        assert torch.all(lin[:, other] == 0) and lin[:, 1 - other].abs().sum() > 0
    assert any(not torch.allclose(grads["a"][n], grads["b"][n]) for n in backbone)


# ------------------------------------------------------------------ fine-tuning set-up

OFFSETS = {1: 0.5, 6: -2.0, 8: 3.0}  # eV per atom of each element (known E0 offsets of the new level)


def labelled(frames, energies, forces=None):
    out = []
    for k, (a, e) in enumerate(zip(frames, energies)):
        a = a.copy()
        f = np.zeros((len(a), 3)) if forces is None else forces[k]
        a.calc = SinglePointCalculator(a, energy=float(e), forces=f)
        out.append(a)
    return out


def pretrained_energies(model, frames, head):
    out = model(batch_of(model, frames, [head] * len(frames)))
    return out["energy"].detach().numpy(), out["forces"].detach().numpy()


@pytest.fixture
def ft_files(tmp_path):
    rng = np.random.default_rng(2)
    pre = tiny_model(heads=("xtb",), seed=5, e0=[[-10.0, -100.0, -200.0]])
    model_path = tmp_path / "pre.model"
    save_model(pre, model_path)
    compositions = [(4, 2, 1), (2, 3, 2), (6, 1, 3), (1, 4, 1), (3, 3, 3), (5, 2, 2)] * 2
    new = [molecule(rng, c) for c in compositions]
    e, f = pretrained_energies(pre, new, "xtb")
    shift = np.array([sum(OFFSETS[int(z)] for z in a.numbers) for a in new])
    write(tmp_path / "new.xyz", labelled(new, e + shift, np.split(f, np.cumsum([len(a) for a in new])[:-1])))
    # pretraining pool: HCO frames (candidates) and H-only / O-only frames (filtered out)
    pool = [molecule(rng, (3, 2, 1)) for _ in range(6)] + [molecule(rng, (4, 0, 0)) for _ in range(5)]
    pool += [molecule(rng, (0, 0, 3)) for _ in range(5)]
    pe, _ = pretrained_energies(pre, pool, "xtb")
    write(tmp_path / "pool.xyz", labelled(pool, pe))
    return {"model": model_path, "new": tmp_path / "new.xyz", "pool": tmp_path / "pool.xyz", "pre": pre, "dir": tmp_path}


def ft_config(files, mode="multihead_replay", **finetune):
    ft = {"from_model": str(files["model"]), "mode": mode}
    if mode == "multihead_replay":
        ft["replay"] = {"data": [str(files["pool"])], "selection": "elements", "minimum": 4, "ratio": 1.0}
    ft.update(finetune)
    return {"data": {"train": [str(files["new"])], "valid_fraction": 0.0, "e0s": "fit"},
            "finetune": ft, "output_dir": str(files["dir"] / "run"), "device": "cpu", "seed": 1,
            "train": {"max_epochs": 1, "batch_size": 4, "progress": False, "plot": False}}


def test_finetune_keeps_pretrained_e0s_and_refits_new_head(ft_files):
    cfg = config_from_dict(ft_config(ft_files))
    lines = []
    heads = load_datasets(cfg, lines.append)
    plan = prepare_finetune(cfg, heads, lines.append)
    hp = plan.hparams
    assert hp.heads == ["Default", "xtb"]
    old = np.array([-10.0, -100.0, -200.0])
    np.testing.assert_allclose(hp.atomic_energies[1], old, atol=0)  # replay head: fixed
    expected = old + np.array([OFFSETS[z] for z in ZS])  # hand-set offsets on 5 distinct compositions
    np.testing.assert_allclose(hp.atomic_energies[0], expected, atol=1e-8)
    # initialised model: the new head reproduces the labels (pretrained + offsets), the replay head the
    # pretrained model, i.e. readouts copied with the pretrained outputs unchanged
    model = build_model(hp, dtype=torch.float64)
    plan.initialise(model)
    from ase.io import read

    new = read(ft_files["new"], ":")
    e_new, f_new = pretrained_energies(model, new, "Default")
    np.testing.assert_allclose(e_new, [a.get_potential_energy() for a in new], atol=1e-8)
    e_pre, f_pre = pretrained_energies(ft_files["pre"], new, "xtb")
    e_rep, f_rep = pretrained_energies(model, new, "xtb")
    np.testing.assert_allclose(e_rep, e_pre, atol=1e-9)
    np.testing.assert_allclose(f_new, f_pre, atol=1e-9)
    text = "\n".join(lines)
    assert "E0s kept fixed" in text and "re-estimated" in text and "frozen: nothing" in text
    assert "default head at inference: Default" in text


def test_replay_respects_element_filter(ft_files):
    cfg = config_from_dict(ft_config(ft_files))
    heads = load_datasets(cfg, lambda s: None)
    prepare_finetune(cfg, heads, lambda s: None)
    replay = heads["xtb"].train + heads["xtb"].valid
    # ratio guard: max(4, 1.0 * 12 new frames) = 12 > 6 candidates -> all 6 HCO frames, none of the others
    assert len(replay) == 6
    assert all({1, 6, 8} <= set(int(z) for z in c.numbers) for c in replay)
    assert all(c.head == "xtb" for c in replay)
    # ratio guard caps the replay set
    cfg = config_from_dict(ft_config(ft_files, replay={"data": [str(ft_files["pool"])], "ratio": 0.25, "minimum": 2}))
    heads = load_datasets(cfg, lambda s: None)
    prepare_finetune(cfg, heads, lambda s: None)
    assert len(heads["xtb"].train) == 3  # floor(0.25 * 12)


def test_finetune_config_errors(ft_files):
    bad = ft_config(ft_files)
    del bad["finetune"]["replay"]
    with pytest.raises(ConfigError, match="finetune.replay.data"):
        config_from_dict(bad)
    bad = ft_config(ft_files, mode="naive", replay={"data": [str(ft_files["pool"])]})
    with pytest.raises(ConfigError, match="naive"):
        config_from_dict(bad)
    with pytest.raises(ConfigError, match="file not found"):
        config_from_dict(ft_config(ft_files, from_model=str(ft_files["dir"] / "missing.model")))
    cfg = config_from_dict(ft_config(ft_files, freeze=["interactionz"]))
    with pytest.raises(ConfigError, match="did you mean 'interactions'"):
        prepare_finetune(cfg, load_datasets(cfg, lambda s: None), lambda s: None)
    cfg = config_from_dict(ft_config(ft_files, pretrained_head="dft"))
    with pytest.raises(ConfigError, match="pretrained_head"):
        prepare_finetune(cfg, load_datasets(cfg, lambda s: None), lambda s: None)


def test_freeze_parameters():
    model = tiny_model()
    frozen = freeze_parameters(model, ["interactions.0", "node_embedding"])
    assert frozen and all(n.startswith(("interactions.0.", "node_embedding.")) for n in frozen)
    assert all(p.requires_grad for n, p in model.named_parameters() if n not in frozen)


# ------------------------------------------------------------------ tea: block


def test_tea_block_and_merge(tmp_path):
    rng = np.random.default_rng(3)
    frames = [molecule(rng, c) for c in [(4, 2, 1), (2, 3, 2), (1, 1, 1)]]
    e = np.array([-50.0, -60.0, -30.0])
    forces = [rng.normal(size=(len(a), 3)) for a in frames]
    write(tmp_path / "src.xyz", labelled(frames, e, forces))
    write(tmp_path / "tgt.xyz", labelled(frames[:2], [-70.0, -80.0]))
    src = {"H": -1.0, "C": -2.0, "O": -3.0}
    tgt = {"H": -1.5, "C": -4.0, "O": -3.5}
    a = 0.8
    cfg = config_from_dict({"data": {"valid_fraction": 0.0, "heads": {
        "t": {"train": [str(tmp_path / "tgt.xyz")]},
        "s": {"train": [str(tmp_path / "src.xyz")], "head": "t", "weight": 0.5,
              "tea": {"source_atoms": src, "target_atoms": tgt, "scale": a}}}}})
    lines = []
    heads = load_datasets(cfg, lines.append)
    assert list(heads) == ["t"]
    merged = heads["t"].train
    assert len(merged) == 5 and all(c.head == "t" for c in merged)
    aligned = merged[2:]
    for c, a0, e0, f0 in zip(aligned, frames, e, forces):
        n = {z: int((a0.numbers == z).sum()) for z in ZS}
        zsym = {1: "H", 6: "C", 8: "O"}
        e_at = sum(n[z] * src[zsym[z]] for z in ZS) - e0  # hand-computed Osaka24 Eq.: E'' = sum E0_t - a E_at
        assert c.energy == pytest.approx(sum(n[z] * tgt[zsym[z]] for z in ZS) - a * e_at, abs=1e-9)
        np.testing.assert_allclose(c.forces, a * f0, atol=1e-12)
        assert c.weight == pytest.approx(0.5)
    assert all(c.weight == 1.0 for c in merged[:2])
    assert any("TEA" in s and "a = 0.8" in s for s in lines)
    with pytest.raises(ConfigError, match="scale"):
        config_from_dict({"data": {"train": [str(tmp_path / "tgt.xyz")], "tea": {"source_atoms": src, "target_atoms": tgt}}})


# ------------------------------------------------------------------ end to end on bundled data


def _slice(src: Path, dst: Path, n: int) -> Path:
    from ase.io import read

    write(dst, read(src, index=f":{n}"), format="extxyz")
    return dst


@pytest.mark.skipif(not (ACAC / "train.xyz").is_file(), reason="bundled data/acac missing")
def test_tiny_finetune_run_end_to_end(tmp_path):
    from ase.io import read

    iso = read(ACAC / "isolated_atoms.xyz", ":")
    e0 = {int(a.numbers[0]): a.get_potential_energy() for a in iso}
    pre = tiny_model(heads=("pt",), seed=7, e0=[[e0[z] for z in ZS]])
    save_model(pre, tmp_path / "pre.model")
    new = _slice(ACAC / "train.xyz", tmp_path / "new.xyz", 12)
    pool = _slice(ACAC / "test.xyz", tmp_path / "pool.xyz", 20)
    cfg = {"data": {"train": [str(new)], "valid_fraction": 0.25},
           "finetune": {"from_model": str(tmp_path / "pre.model"), "replay": {"data": [str(pool)], "selection": "fps",
                        "minimum": 4, "weight": 0.5}, "freeze": ["interactions.0"], "default_head": "pt"},
           "train": {"max_epochs": 2, "batch_size": 4, "lr": 0.01, "progress": False, "plot": False},
           "output_dir": str(tmp_path / "run"), "device": "cpu", "seed": 1}
    path = train(config_from_dict(cfg), log=lambda s: None)
    info, state = read_model_info(path)
    assert info["heads"] == ["Default", "pt"] and info["metadata"]["default_head"] == "pt"
    model = load_model(path)
    from mlip.calculator import MLIPCalculator
    from mlip.nn.heads import select_head

    assert model.default_head == "pt" and MLIPCalculator(model).head == "pt"  # default head at inference
    assert select_head(["a", "b"], None, "b") == 1 and select_head(["a", "b"], "a", "b") == 0
    old = pre.state_dict()
    for name, t in model.state_dict().items():  # frozen group unchanged, the rest trained
        if name.startswith("interactions.0."):
            assert torch.equal(t, old[name]), name
    assert not torch.equal(model.state_dict()["interactions.1.linear_up.weight"], old["interactions.1.linear_up.weight"]) \
        if "interactions.1.linear_up.weight" in old else True
    assert any(not torch.equal(t, old[n]) for n, t in model.state_dict().items() if n.startswith("products."))
    np.testing.assert_allclose(model.atomic_energies[1].numpy(), [e0[z] for z in ZS])  # replay head E0s fixed
    metrics = json.loads((tmp_path / "run" / "final_metrics.json").read_text())
    assert set(metrics["train"]) >= {"Default", "pt"}
    # naive: a single head, no replay
    cfg_naive = dict(cfg, finetune={"from_model": str(tmp_path / "pre.model"), "mode": "naive"},
                     output_dir=str(tmp_path / "naive"))
    cfg_naive["train"] = dict(cfg["train"], max_epochs=1)
    path = train(config_from_dict(cfg_naive), log=lambda s: None)
    assert read_model_info(path)[0]["heads"] == ["Default"]
