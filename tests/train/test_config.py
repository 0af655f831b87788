"""The config schema: required key names, defaults, overrides and one-line errors with suggestions."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlip.config import DATA_DERIVED_MODEL_FIELDS, Config, apply_overrides, config_from_dict, load_config
from mlip.errors import ConfigError
from mlip.nn.hparams import ModelHyperparameters

REQUIRED = [
    "data.train", "data.valid", "data.valid_fraction", "data.test", "data.energy_key", "data.forces_key",
    "data.stress_key", "data.e0s", "train.max_epochs", "train.batch_size", "train.lr", "model.hidden_irreps",
    "model.max_ell", "model.correlation", "model.num_interactions", "model.r_max", "model.num_bessel",
    "loss.type", "loss.energy_weight", "loss.forces_weight", "loss.stress_weight", "output_dir", "device",
    "dtype", "seed",
]


@pytest.fixture
def train_file(tmp_path: Path) -> str:
    p = tmp_path / "t.xyz"
    p.write_text("1\nenergy=-1.0 pbc=\"F F F\"\nH 0 0 0\n")
    return str(p)


def test_required_keys_exist(train_file):
    d = config_from_dict({"data": {"train": train_file}}).to_dict()
    for dotted in REQUIRED:
        node = d
        for part in dotted.split("."):
            assert part in node, dotted
            node = node[part]


def test_model_section_mirrors_hyperparameters(train_file):
    cfg = config_from_dict({"data": {"train": train_file}, "model": {"correlation": [3, 2], "max_ell": 2}})
    kwargs = cfg.model_kwargs()
    hp = ModelHyperparameters(**kwargs)
    assert hp.correlation == [3, 2] and hp.max_ell == 2
    assert not set(DATA_DERIVED_MODEL_FIELDS) & set(kwargs)


def test_single_file_becomes_list_and_defaults(train_file):
    cfg = config_from_dict({"data": {"train": train_file, "e0s": {"H": -13.6}}})
    assert cfg.data.train == [train_file]
    assert cfg.data.e0s == {"H": -13.6}
    assert cfg.loss.type == "mse" and cfg.dtype == "float32" and cfg.device == "auto"


@pytest.mark.parametrize(
    "data, expected",
    [
        ({"trian": {}}, "unknown config key 'trian' (did you mean 'train'?)"),
        ({"train": {"max_epoch": 3}}, "unknown config key 'train.max_epoch' (did you mean 'max_epochs'?)"),
        ({"model": {"hiden_irreps": "8x0e"}}, "unknown config key 'model.hiden_irreps' (did you mean 'hidden_irreps'?)"),
        ({"train": {"batch_size": "ten"}}, "config key 'train.batch_size': expected an integer, got str 'ten'"),
        ({"train": {"lr": [1]}}, "config key 'train.lr': expected a number"),
        ({"loss": {"type": "hubber"}}, "(did you mean 'huber'?)"),
        ({"ema": {"use": "yes"}}, "config key 'ema.use': expected true/false"),
        ({"data": {"test": "missing.xyz"}}, "config key 'data.test[0]': file not found: missing.xyz"),
        ({"data": {"e0s": "isolatd"}}, "config key 'data.e0s'"),
        ({"data": {"heads": {"a": {"trian": "x"}}}}, "unknown config key 'data.heads.a.trian' (did you mean 'train'?)"),
    ],
)
def test_errors_name_the_key(train_file, data, expected):
    data = {"data": {"train": train_file, **data.pop("data", {})}, **data}
    with pytest.raises(ConfigError) as err:
        config_from_dict(data)
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_train_file_is_an_error():
    with pytest.raises(ConfigError, match=r"'data.train\[0\]': file not found: nowhere.xyz"):
        config_from_dict({"data": {"train": "nowhere.xyz"}})


def test_overrides_are_yaml_parsed(tmp_path, train_file):
    path = tmp_path / "c.yaml"
    path.write_text(f"data:\n  train: {train_file}\ntrain:\n  lr: 0.01\n")
    cfg = load_config(path, ["train.lr=5e-3", "model.radial_mlp=[8,8]", "ema.use=false", "stage_two.start_epoch=4"])
    assert cfg.train.lr == 0.005 and cfg.model.radial_mlp == [8, 8] and cfg.ema.use is False
    assert cfg.stage_two.start_epoch == 4
    with pytest.raises(ConfigError, match="expected key.sub=value"):
        apply_overrides({}, ["train.lr"])
    with pytest.raises(ConfigError, match="unknown config key 'train.lrr'"):
        load_config(path, ["train.lrr=1"])


def test_dumped_config_reloads(tmp_path, train_file):
    from mlip.config import dump_config

    cfg = config_from_dict({"data": {"train": train_file}, "seed": 7})
    dump_config(cfg, tmp_path / "out.yaml")
    again = load_config(tmp_path / "out.yaml")
    assert again == cfg and isinstance(again, Config)


def test_isolated_e0s_without_a_separate_file(train_file):
    # isolated-atom frames may live in the training file itself
    cfg = config_from_dict({"data": {"train": train_file, "e0s": "isolated"}})
    assert cfg.data.e0s == "isolated" and cfg.data.isolated_atoms is None
