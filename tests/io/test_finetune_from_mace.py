"""Fine-tuning starts from a mace-torch ``.model`` file directly (converted on the fly by the safe reader)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.io import read, write

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mace_support import OLD_FIXTURES, decompress

from mlip.config import config_from_dict
from mlip.io.mace import convert_mace_model_file, load_model_or_mace
from mlip.io.model_file import load_model, read_model_info
from mlip.train.run import train

ACAC = Path(__file__).resolve().parents[2] / "data" / "acac"


@pytest.mark.skipif(not (ACAC / "train.xyz").is_file(), reason="bundled data/acac missing")
def test_multihead_replay_finetune_from_mace_model(tmp_path):
    plain = decompress(OLD_FIXTURES / "tiny_0.3.16_hco" / "model.model.xz", tmp_path)
    src = tmp_path / "foundation.bin"  # recognised by content, not by the suffix
    plain.rename(src)
    pretrained = convert_mace_model_file(src)
    assert load_model_or_mace(src).heads == ["Default"]
    new = tmp_path / "new.xyz"
    pool = tmp_path / "pool.xyz"
    write(new, read(ACAC / "train.xyz", index=":8"), format="extxyz")
    write(pool, read(ACAC / "test.xyz", index=":12"), format="extxyz")
    cfg = {"data": {"train": [str(new)], "valid_fraction": 0.25},
           "finetune": {"from_model": str(src), "replay": {"data": [str(pool)], "selection": "random", "minimum": 4,
                                                           "weight": 0.5}, "freeze": ["interactions.0"]},
           "train": {"max_epochs": 1, "batch_size": 4, "lr": 0.01, "progress": False, "plot": False},
           "output_dir": str(tmp_path / "run"), "device": "cpu", "seed": 1,
           "dtype": "float64"}  # the mace file is float64; the float32 default would round the frozen weights
    path = train(config_from_dict(cfg), log=lambda s: None)
    info, _ = read_model_info(path)
    assert info["heads"] == ["Default", "pt_head"]  # data head + replay head (pretrained head renamed)
    model = load_model(path)
    assert model.hparams.hidden_irreps == pretrained.hparams.hidden_irreps
    old = pretrained.state_dict()
    for name, t in model.state_dict().items():  # frozen group = the mace file's weights
        if name.startswith("interactions.0.") and name in old:
            assert torch.equal(t.double(), old[name].double()), name
    # replay head keeps the mace file's E0s (data/acac isolated atoms, written by the generator)
    np.testing.assert_allclose(model.atomic_energies[1].double().numpy(),
                               [-13.568422178253735, -1026.8538996116154, -2037.796869412825], rtol=0, atol=1e-10)
