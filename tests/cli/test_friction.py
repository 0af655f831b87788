"""Friction a new user hit (issue 26, "Friction a new user hit", items 2-7): each test reproduces one
stumble and checks the fixed behaviour."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "nn"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "uncertainty"))

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


# ------------------------------------------------------------------ item 6: path@slice in eval, uncertainty, bonds


@pytest.fixture(scope="module")
def slice_files(tmp_path_factory):
    """A tiny model, a 14-frame labelled file (teacher model + noise) and its frames 3, 5, 7, 9 on their own."""
    import ase.io
    import numpy as np
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator
    from u_support import molecule, tiny_model

    from mlip.calculator import MLIPCalculator
    from mlip.io.model_file import save_model

    d = tmp_path_factory.mktemp("slices")
    save_model(tiny_model(seed=5), d / "model.pt")
    teacher = MLIPCalculator(tiny_model(seed=7))
    rng = np.random.default_rng(26)
    frames = []
    for _ in range(14):
        c = molecule(rng, int(rng.integers(4, 8)))
        atoms = Atoms(numbers=c.numbers, positions=c.positions)
        atoms.calc = teacher
        e, f = atoms.get_potential_energy(), atoms.get_forces()
        atoms.calc = SinglePointCalculator(atoms, energy=e + rng.normal(0, 0.01), forces=f)
        frames.append(atoms)
    ase.io.write(d / "all.xyz", frames, format="extxyz")
    ase.io.write(d / "some.xyz", frames[3:10:2], format="extxyz")
    ase.io.write(d / "last.xyz", frames[-6:], format="extxyz")
    ase.io.write(d / "middle.xyz", frames[-11:-2:4], format="extxyz")
    ase.io.write(d / "tail.xyz", frames[10:], format="extxyz")
    return d


def test_eval_with_a_slice_equals_eval_on_those_frames(slice_files, capsys):
    import json

    import ase.io
    import numpy as np

    from mlip.cli.eval import main

    d = slice_files
    for data, name in ((f"{d / 'all.xyz'}@3:10:2", "sliced"), (d / "some.xyz", "whole")):
        argv = ["--model", d / "model.pt", "--data", data, "--output", d / f"{name}.xyz", "--json", d / f"{name}.json"]
        assert main([str(a) for a in argv]) == 0, capsys.readouterr().err
    sliced, whole = (json.loads((d / f"{n}.json").read_text()) for n in ("sliced", "whole"))
    assert sliced["n_configs"] == 4 and sliced == whole
    got, want = ase.io.read(d / "sliced.xyz", ":"), ase.io.read(d / "whole.xyz", ":")
    assert [a.info["MLIP_energy"] for a in got] == [a.info["MLIP_energy"] for a in want]
    assert all(np.array_equal(a.arrays["MLIP_forces"], b.arrays["MLIP_forces"]) for a, b in zip(got, want))
    assert [a.get_potential_energy() for a in got] == [a.get_potential_energy() for a in want]  # the frames kept
    capsys.readouterr()
    assert main(["--model", str(d / "model.pt"), "--data", f"{d / 'all.xyz'}@3:x"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {d / 'all.xyz'}@3:x: '3:x' after '@' is not a frame index or slice " \
                  f"(e.g. {d / 'all.xyz'}@0:10, {d / 'all.xyz'}@-5:)"
    assert main(["--model", str(d / "model.pt"), "--data", f"{d / 'all.xyz'}@::-1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {d / 'all.xyz'}@::-1: the step of '::-1' must be at least 1 (frames are read forwards)"


def _llpr_fit(d: Path, name: str, train: str, valid: str, chunk: int) -> object:
    from mlip.cli.uncertainty import main
    from mlip.uncertainty import load_llpr

    argv = ["fit", "--model", d / "model.pt", "--train", train, "--valid", valid, "-o", d / f"{name}.pt",
            "--batch-size", 3, "--chunk-frames", chunk]
    assert main([str(a) for a in argv]) == 0
    return load_llpr(d / f"{name}.pt").heads["Default"]


@pytest.mark.parametrize("selection, subset, chunk", [
    ("3:10:2", "some.xyz", 3),      # from the start: windows 3:9:2 and 9:10:2 (the second one short)
    ("3:10:2", "some.xyz", 2),      # two full windows, 3:7:2 and 7:10:2
    ("10:", "tail.xyz", 2),         # open end: 10:12, 12:14, then 14:16 past the last frame
    ("-6:", "last.xyz", 4),         # from the end: frames counted first
    ("-11:-2:4", "middle.xyz", 2),  # both ends from the end, with a step
])
def test_uncertainty_fit_with_a_slice_equals_fit_on_those_frames(slice_files, capsys, selection, subset, chunk):
    import numpy as np

    d = slice_files
    tag = f"{subset}{chunk}"
    a = _llpr_fit(d, f"s_{tag}", f"{d / 'all.xyz'}@{selection}", f"{d / 'all.xyz'}@{selection}", chunk)
    b = _llpr_fit(d, f"w_{tag}", str(d / subset), str(d / subset), 1000)
    n = len((d / subset).read_text().split("Properties=")) - 1
    assert a.n_train == b.n_train == n and a.n_valid == b.n_valid == n
    assert np.allclose(np.asarray(a.gram), np.asarray(b.gram), rtol=1e-12, atol=1e-12)
    assert a.alpha2 == pytest.approx(b.alpha2, rel=1e-9) and a.reg == pytest.approx(b.reg, rel=1e-9)
    capsys.readouterr()


def test_a_selection_from_the_end_names_frames_by_their_number_in_the_file():
    from mlip.data.io import count_frames, read_configurations, split_selection

    path, index = split_selection(f"{REPO / 'data' / 'acac' / 'test.xyz'}@-5:-1:2")
    assert (path, index) == (str(REPO / "data" / "acac" / "test.xyz"), "-5:-1:2")
    n = count_frames(path)
    assert [c.source for c in read_configurations(path, index=index)] == [f"{path}:{n - 5}", f"{path}:{n - 3}"]
    assert [c.source for c in read_configurations(path, index="-1")] == [f"{path}:{n - 1}"]


def test_uncertainty_windows_compose_the_selection_with_the_chunks(slice_files):
    import itertools

    from mlip.cli.uncertainty import _windows

    path = str(slice_files / "all.xyz")  # 14 frames
    assert list(_windows(path, "3:10:2", 3)) == [slice(3, 9, 2), slice(9, 10, 2)]
    assert list(itertools.islice(_windows(path, "3::2", 3), 3)) == [slice(3, 9, 2), slice(9, 15, 2), slice(15, 21, 2)]
    assert list(_windows(path, "-6:", 4)) == [slice(8, 12, 1), slice(12, 14, 1)]
    assert list(_windows(path, "-11:-2:4", 2)) == [slice(3, 11, 4), slice(11, 15, 4)]  # frames 3, 7 | 11
    assert list(_windows(path, "5", 2)) == ["5"] and list(_windows(path, ":", 0)) == [":"]


def test_bonds_with_a_slice_equals_bonds_on_those_frames(slice_files, capsys):
    import json

    from mlip.cli.bonds import main

    d = slice_files
    runs = {"sliced": ["--data", f"{d / 'all.xyz'}@3:10:2"], "index": ["--data", d / "all.xyz", "--index", "3:10:2"],
            "whole": ["--data", d / "some.xyz"]}
    for name, data in runs.items():
        argv = ["--model", d / "model.pt", *data, "--output", d / f"bonds_{name}", "--nodes", 4, "--no-plots"]
        assert main([str(a) for a in argv]) == 0, capsys.readouterr().err
    for name in ("sliced", "index"):
        for f in ("edges.csv", "bonds.csv", "bond_table.md"):
            assert (d / f"bonds_{name}" / f).read_text() == (d / "bonds_whole" / f).read_text()
        got = json.loads((d / f"bonds_{name}" / "summary.json").read_text())
        want = json.loads((d / "bonds_whole" / "summary.json").read_text())
        assert [s.pop("source") for s in got["structures"]] == [f"{d / 'all.xyz'}:{i}" for i in (3, 5, 7, 9)]
        for s in want["structures"]:
            s.pop("source")
        assert got == want
    capsys.readouterr()
    argv = ["--model", d / "model.pt", "--data", f"{d / 'all.xyz'}@3:", "--index", "1:", "--output", d / "b"]
    assert main([str(a) for a in argv]) == 2
    assert capsys.readouterr().err.strip().endswith("already selects frames; give one of them")


# ------------------------------------------------------------------ item 7: smaller items


def test_eval_uncertainty_without_llpr_stops_before_writing(slice_files, capsys):
    from mlip.cli.eval import main

    d = slice_files
    pred, js = d / "no_llpr.xyz", d / "no_llpr.json"
    argv = ["--model", d / "model.pt", "--data", d / "some.xyz", "--output", pred, "--json", js, "--uncertainty"]
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    assert "LLPR" in err and str(d / "model.pt") in err
    assert not pred.exists() and not js.exists()


@pytest.mark.parametrize("flags, expected", [
    (["--uncertainty"], "error: --uncertainty: the uncertainties are written to --output; give --output FILE.xyz"),
    (["--uncertainty", "--committee", "m2.pt"],
     "error: --uncertainty: the uncertainties are written to --output; give --output FILE.xyz"),
    (["--committee", "m2.pt", "--output", "p.xyz"],
     "error: --committee: a committee gives uncertainties; add --uncertainty (and --output FILE.xyz)"),
])
def test_eval_uncertainty_flags_name_the_missing_one(slice_files, capsys, flags, expected):
    from mlip.cli.eval import main

    d = slice_files
    assert main(["--model", str(d / "model.pt"), "--data", str(d / "some.xyz"), *flags]) == 2
    assert capsys.readouterr().err.strip() == expected


def _finetune_warnings(model: Path, train: Path, out: Path) -> list[str]:
    from mlip.config import config_from_dict
    from mlip.train.data_setup import load_datasets
    from mlip.train.finetune import prepare_finetune

    cfg = config_from_dict({"data": {"train": [str(train)], "valid_fraction": 0.1, "e0s": "fit"},
                            "finetune": {"from_model": str(model), "mode": "naive"}, "output_dir": str(out),
                            "device": "cpu"})
    lines: list[str] = []
    prepare_finetune(cfg, load_datasets(cfg, lines.append), lines.append)
    return [line for line in lines if line.startswith("warning: ")]


def test_finetune_on_one_composition_warns_like_e0s_fit(slice_files, tmp_path):
    # data/acac: every frame is C5H8O2, so the re-estimated E0s of H, C and O are not separable
    warnings = _finetune_warnings(slice_files / "model.pt", REPO / "data" / "acac" / "train.xyz", tmp_path / "a")
    assert len(warnings) == 1
    assert warnings[0].startswith("warning: finetune: head 'Default': E0s re-estimated on the pretrained model's "
                                  "residuals: the training compositions determine only 1 of 3 E0s (all frames "
                                  "share one composition), so the fitted E0s {H: ")
    assert warnings[0].endswith("eV are not physical (only their sum per composition is); add frames of other "
                                "compositions to the head's training data to separate them")
    # frames of many compositions determine every E0: no warning
    assert _finetune_warnings(slice_files / "model.pt", slice_files / "all.xyz", tmp_path / "b") == []


def test_select_uncertainty_plot_says_where_the_plot_went(slice_files, capsys):
    from mlip.cli.select import main

    d = slice_files
    _llpr_fit(d, "select_llpr", str(d / "all.xyz"), str(d / "all.xyz"), 1000)
    capsys.readouterr()
    png, picked = d / "picked.png", d / "picked.xyz"
    argv = ["--uncertainty", "--model", d / "select_llpr.pt", "--data", d / "all.xyz", "-n", 3, "-o", picked,
            "--plot", png]
    assert main([str(a) for a in argv]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith("selected 3 of 14 frames (highest LLPR forces uncertainty")
    assert out[-1].endswith(f" -> {picked}; plot {png}")
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def mace_file() -> bytes:
    """The bytes of a real mace-torch 0.3.16 .model file (tests/fixtures/mace, stored xz-compressed)."""
    import lzma

    return lzma.decompress((REPO / "tests" / "fixtures" / "mace" / "tiny_0.3.16_hco" / "model.model.xz").read_bytes())


@pytest.mark.parametrize("keep", [0.5, 0.99, 100])
def test_convert_from_mace_on_a_truncated_file(tmp_path, capsys, mace_file, keep):
    from mlip.cli.convert import main

    cut = tmp_path / "cut.model"
    cut.write_bytes(mace_file[: int(len(mace_file) * keep) if keep < 1 else keep])
    assert main(["from-mace", str(cut), "-o", str(tmp_path / "m.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: {cut}: a truncated or damaged PyTorch file ({cut.stat().st_size} bytes, its zip "
                   "directory is missing: an interrupted copy or a full disk); copy it again")
    assert not (tmp_path / "m.pt").exists()


def test_convert_from_mace_on_a_damaged_file(tmp_path, capsys, mace_file):
    import io
    import zipfile

    from mlip.cli.convert import main

    with zipfile.ZipFile(io.BytesIO(mace_file)) as archive:
        pkl = next(i for i in archive.infolist() if i.filename.endswith("/data.pkl"))
    assert pkl.header_offset == 0 and mace_file[:4] == b"PK\x03\x04"
    data = bytearray(mace_file)
    start = 30 + int.from_bytes(data[26:28], "little") + int.from_bytes(data[28:30], "little")  # after the header
    data[start + 50] ^= 0xFF  # one byte of data.pkl changed: its checksum fails
    bad = tmp_path / "bad.model"
    bad.write_bytes(bytes(data))
    assert main(["from-mace", str(bad), "-o", str(tmp_path / "m.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {bad}: a truncated or damaged PyTorch file (Bad CRC-32 for file ")
    assert err.endswith("data.pkl'); copy it again") and "\n" not in err


def test_bond_table_prints_no_negative_zero(slice_files, tmp_path, capsys, monkeypatch):
    import mlip.analysis.report
    from mlip.cli.bonds import main

    row = {"bond": "C-H", "order": 1, "n": 3, "r_mean": 1.09, "D_mean": 0.0004, "D_std": -0.0, "A_mean": -0.0,
           "A_std": 0.0, "H_2D": -0.0002, "reference": None}
    monkeypatch.setattr(mlip.analysis.report, "summarise", lambda bonds, bin_width: [row])
    out = tmp_path / "report"
    argv = ["--model", slice_files / "model.pt", "--data", f"{slice_files / 'all.xyz'}@0:2", "--output", out,
            "--nodes", 2, "--no-plots"]
    assert main([str(a) for a in argv]) == 0
    printed = capsys.readouterr().out
    md = (out / "bond_table.md").read_text()
    assert "| C-H | 3 | 1.090 | 0.000 | 0.000 | 0.000 |  | 0.000 |" in md.splitlines()
    assert "-0.000" not in md and "-0.000" not in printed and md in printed
    cells = (out / "bond_table.csv").read_text().splitlines()[2].split(",")
    assert cells == ["C-H", "1", "3", "1.09", "0.0004", "0", "0", "0", "-0.0002", ""]
