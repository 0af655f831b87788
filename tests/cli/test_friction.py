"""Friction a new user hit (issue 26, "Friction a new user hit", items 2-7): each test reproduces one
stumble and checks the fixed behaviour."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "nn"))

from small_models import VARIANTS, small_model  # noqa: E402

from mlip.errors import ConfigError  # noqa: E402
from mlip.train.finetune import PARAMETER_GROUPS, freeze_parameters, group_parameters  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------ item 2: finetune.freeze group names


def documented_freeze_groups() -> set[str]:
    """The group names docs/config.md (the ``freeze`` row) and docs/multifidelity.md (the ``freeze``
    bullet) list."""
    names: set[str] = set()
    config_md = (REPO / "docs" / "config.md").read_text().splitlines()
    rows = [line for line in config_md if line.startswith("| `freeze`")]
    multi = (REPO / "docs" / "multifidelity.md").read_text()
    start = multi.index("- `freeze`:")
    bullet = multi[start: multi.index("\n- ", start + 1)]
    for text in rows + [bullet]:
        names |= set(re.findall(r"`([a-z_]+(?:\.\d+)?)`", text))
    return names - {"freeze"}


def test_documented_freeze_groups_are_the_model_groups():
    documented = documented_freeze_groups()
    assert {"node_embedding", "radial_embedding", "interactions", "products", "readouts"} <= documented
    assert documented - {"interactions.0"} <= set(PARAMETER_GROUPS)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_documented_freeze_group_matches_what_it_describes(variant):
    model = small_model(variant)
    names = [n for n, _ in model.named_parameters()]
    for group in sorted(documented_freeze_groups()):
        covered = group_parameters(model, group)
        assert covered, f"{group} covers nothing on {variant}"
        if group == "radial_embedding":  # the learnable radial functions: every layer's radial MLP
            assert covered == [n for n in names if ".radial." in n]
            assert {n.split(".")[1] for n in covered} == {"0", "1"}
        else:
            assert covered == [n for n in names if n.startswith(group + ".")]


def test_freeze_radial_embedding_freezes_only_the_radial_mlps():
    model = small_model("residual", seed=7)
    frozen = freeze_parameters(model, ["radial_embedding", "node_embedding"])
    try:
        assert frozen and all(n.startswith("node_embedding.") or ".radial." in n for n in frozen)
        assert "node_embedding.weight" in frozen
        assert all(p.requires_grad == (n not in frozen) for n, p in model.named_parameters())
    finally:
        for p in model.parameters():
            p.requires_grad_(True)


@pytest.mark.parametrize("group, expected", [
    ("interactionz", "(did you mean 'interactions'?)"),
    ("radial_embeding", "(did you mean 'radial_embedding'?)"),
    ("edge_readout", "(it has no edge_readout); use one of node_embedding, radial_embedding, interactions, "
                     "products, readouts"),
    ("nothing_like_it", "use one of node_embedding, radial_embedding, interactions, products, readouts or a"),
])
def test_freeze_hint_never_suggests_the_refused_name(group, expected):
    model = small_model("residual")  # no edge readout
    with pytest.raises(ConfigError) as err:
        freeze_parameters(model, [group])
    message = str(err.value)
    assert message.startswith(f"config key 'finetune.freeze': '{group}' matches no parameter of the model")
    assert expected in message
    assert f"did you mean '{group}'" not in message
    assert "\n" not in message


# ------------------------------------------------------------------ item 3: the E0 error names the right file


def test_e0_error_names_the_file_the_element_came_from(tmp_path, monkeypatch, capsys):
    from mlip.cli.train import main

    monkeypatch.chdir(REPO)  # configs/demo.yaml names its files relative to the repository root
    assert Path("data/si/test.xyz").exists()
    argv = ["--config", "configs/demo.yaml", "data.test=data/si/test.xyz", f"output_dir={tmp_path / 'run'}"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert err.startswith("error: E0s of head 'Default': no energy for Si (found in data/si/test.xyz) in "
                          "data/acac/isolated_atoms.xyz;")
    assert "data/acac/train.xyz" not in err


# ------------------------------------------------------------------ item 4: --resume anywhere; a pasteable hint


@pytest.mark.parametrize("argv", [
    ["--config", "c.yaml", "train.lr=0.005", "--resume", "data.test=[a b.xyz, c.xyz]"],
    ["--config", "c.yaml", "--resume", "train.lr=0.005", "data.test=[a b.xyz, c.xyz]"],
    ["train.lr=0.005", "--resume", "data.test=[a b.xyz, c.xyz]", "-c", "c.yaml"],
    ["--config", "c.yaml", "train.lr=0.005", "data.test=[a b.xyz, c.xyz]", "--resume"],
])
def test_overrides_on_both_sides_of_resume(argv):
    from mlip.cli.train import parse_args

    args = parse_args(argv)
    assert args.config == "c.yaml" and args.resume is True
    assert args.overrides == ["train.lr=0.005", "data.test=[a b.xyz, c.xyz]"]


@pytest.mark.parametrize("with_checkpoint", [False, True])
def test_resume_hint_is_a_command_that_parses(tmp_path, monkeypatch, capsys, with_checkpoint):
    import shlex

    import mlip.train.run
    from mlip.cli.train import main, parse_args

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(mlip.train.run, "train", interrupted)
    monkeypatch.chdir(REPO)
    run = tmp_path / "my run"
    if with_checkpoint:
        (run / "checkpoints").mkdir(parents=True)
        (run / "checkpoints" / "epoch-00001.pt").write_bytes(b"")
    overrides = [f"output_dir={run}", "train.max_epochs=3", "data.e0s={H: -13.6, C: -1030.0, O: -2040.0}"]
    assert main(["--config", "configs/demo.yaml", overrides[0], "--resume", *overrides[1:]]) == 130
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    command = shlex.split(err.split(": ", 1)[1])  # the hint ends with the command, after its only ': '
    assert command[0] == "mlip-train"
    args = parse_args(command[1:])
    assert (args.config, args.overrides, args.resume) == ("configs/demo.yaml", overrides, True)


# ------------------------------------------------------------------ item 5: output folders


CONFIG_FILES = sorted((REPO / "configs").glob("*.yaml"))


def config_output_dir(path: Path) -> str:
    """``output_dir`` of a shipped config as written (the schema default when absent); read as YAML because
    configs/finetune_replay.yaml names a model that exists only after its first step."""
    import yaml

    from mlip.config import Config

    return str(yaml.safe_load(path.read_text()).get("output_dir", Config.output_dir))


def test_every_config_has_its_own_output_dir_under_runs():
    dirs = {p.name: config_output_dir(p) for p in CONFIG_FILES}
    assert len(dirs) >= 8
    assert all(d.startswith("runs/") for d in dirs.values()), dirs
    assert len(set(dirs.values())) == len(dirs), dirs


def default_outputs() -> list[str]:
    """Where the commands write when not told: every config's run folder, mlip-train's schema default,
    mlip-preprocess --config without -o, make demo (scripts/demo.py) and the multi-fidelity experiment."""
    from mlip.cli.preprocess import default_output
    from mlip.config import Config

    demo = (REPO / "scripts" / "demo.py").read_text()
    multifidelity = (REPO / "scripts" / "multifidelity_experiment.py").read_text()
    demo_dir = re.search(r'"output_dir=([^"]+)"', demo).group(1)
    mf_dir = re.search(r'"--out", default="([^"]+)"', multifidelity).group(1)
    outputs = [config_output_dir(p) for p in CONFIG_FILES] + [Config.output_dir, demo_dir, mf_dir]
    outputs += [default_output(f"configs/{p.name}") for p in CONFIG_FILES]
    return outputs


def test_default_outputs_are_git_ignored():
    import shutil
    import subprocess

    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout (or no git): .gitignore cannot be checked")
    outputs = default_outputs()
    assert "runs/si_h5" in outputs and "runs/demo" in outputs
    for out in outputs:  # a file inside: a folder pattern ('runs/') matches its leading folders
        r = subprocess.run(["git", "check-ignore", "-q", f"{out}/model.pt"], cwd=REPO)
        assert r.returncode == 0, f"{out}/ is not git-ignored"


def test_preprocess_without_output_writes_under_runs(tmp_path, monkeypatch):
    import shutil

    pytest.importorskip("h5py", reason="mlip-preprocess needs the 'ondisk' extra (h5py)")
    from mlip.cli.preprocess import main

    shutil.copytree(REPO / "configs", tmp_path / "configs")
    shutil.copytree(REPO / "data" / "si", tmp_path / "data" / "si")
    monkeypatch.chdir(tmp_path)
    assert main(["--config", "configs/si.yaml", "--no-progress"]) == 0
    assert (tmp_path / "runs" / "si_h5" / "train.h5").is_file()
    assert not (tmp_path / "configs" / "si_h5").exists()
