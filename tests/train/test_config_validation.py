"""Every numeric range of the schema and the E0 forms are checked by load_config, before any data is read."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlip.config import config_from_dict, load_config
from mlip.config_ranges import RANGES
from mlip.errors import ConfigError

ISO = Path(__file__).resolve().parents[2] / "data" / "acac" / "isolated_atoms.xyz"

BAD = [
    ("model.r_max=-1", "config key 'model.r_max': must be > 0.0, got -1.0"),
    ("model.r_max=0", "config key 'model.r_max': must be > 0.0, got 0.0"),
    ("model.num_bessel=0", "config key 'model.num_bessel': must be >= 1, got 0"),
    ("model.radial_mlp=[8,0]", "config key 'model.radial_mlp[1]': must be >= 1, got 0"),
    ("model.correlation=[2,0]", "config key 'model.correlation[1]': must be >= 1, got 0"),
    ("train.lr=0", "config key 'train.lr': must be > 0.0, got 0.0"),
    ("train.batch_size=0", "config key 'train.batch_size': must be >= 1, got 0"),
    ("train.valid_batch_size=0", "config key 'train.valid_batch_size': must be >= 1, got 0"),
    ("data.valid_fraction=1.0", "config key 'data.valid_fraction': must be in [0, 1), got 1.0"),
    ("data.valid_fraction=-0.1", "config key 'data.valid_fraction': must be in [0, 1), got -0.1"),
    ("loss.forces_weight=-1", "config key 'loss.forces_weight': must be >= 0.0, got -1.0"),
    ("schedule.factor=1.5", "config key 'schedule.factor': must be in (0.0, 1.0), got 1.5"),
    ("ema.decay=1", "config key 'ema.decay': must be in (0.0, 1.0), got 1.0"),
    ("stage_two.lr=-1", "config key 'stage_two.lr': must be > 0.0, got -1.0"),
    ("optimiser.betas=[0.9,1.0]", "config key 'optimiser.betas[1]': must be in [0.0, 1.0), got 1.0"),
    ("data.config_type_weights={a: -1}", "config key 'data.config_type_weights.a': must be >= 0.0, got -1.0"),
    ("model.hidden_irreps=foo", "config key 'model.hidden_irreps': cannot parse irreps 'foo'"),
]


@pytest.fixture
def train_file(tmp_path: Path) -> str:
    p = tmp_path / "t.xyz"
    p.write_text("1\nenergy=-1.0 pbc=\"F F F\"\nH 0 0 0\n")
    return str(p)


@pytest.mark.parametrize("override,message", BAD)
def test_ranges_are_checked_with_the_typed_key(tmp_path, train_file, override, message):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(f"data: {{train: {train_file}}}\n")
    with pytest.raises(ConfigError) as err:
        load_config(cfg_file, [override])
    assert str(err.value).startswith(message)


def test_every_range_key_exists_in_the_schema(train_file):
    d = config_from_dict({"data": {"train": train_file, "heads": {}}}).to_dict()
    d["finetune"] = {"replay": {"size": 1, "ratio": 1, "minimum": 1, "weight": 1}}
    d["data"]["heads"] = {"h": {"valid_fraction": 0, "weight": 1, "config_type_weights": {}, "tea": {"scale": 1}}}
    d["data"]["tea"] = {"scale": 1}
    for key, *_ in RANGES:
        node = d
        for part in key.split("."):
            if part == "*":
                node = next(iter(node.values())) if isinstance(node, dict) and node else (node or [0])[0] \
                    if isinstance(node, list) else node
                continue
            assert isinstance(node, dict) and part in node, key
            node = node[part]


def test_e0s_forms(train_file, tmp_path):
    cfg = config_from_dict({"data": {"train": train_file, "e0s": "average"}})
    assert cfg.data.e0s == "average"
    cfg = config_from_dict({"data": {"train": train_file, "e0s": str(ISO)}})
    assert (cfg.data.e0s, cfg.data.isolated_atoms) == ("isolated", str(ISO))
    with pytest.raises(ConfigError, match=r"^config key 'data.e0s': 'averge' is neither .* \(did you mean 'average'\?\)"):
        config_from_dict({"data": {"train": train_file, "e0s": "averge"}})
    other = tmp_path / "other.xyz"
    other.write_text(ISO.read_text())
    with pytest.raises(ConfigError, match=r"^config key 'data.heads.a.e0s': .* 'data.heads.a.isolated_atoms' names another file"):
        config_from_dict({"data": {"heads": {"a": {"train": train_file, "e0s": str(ISO), "isolated_atoms": str(other)}}}})
