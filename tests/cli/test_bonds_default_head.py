"""mlip-bonds uses the model's default_head (e.g. a fine-tuned model's finetune.default_head) when no --head is given."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "analysis"))

from e3d_support import ACAC, E0, tiny_model  # noqa: E402


def test_bonds_honours_default_head(tmp_path):
    if not ACAC.is_file():
        pytest.skip("bundled data/acac missing")
    import ase.io

    from mlip.cli.bonds import main
    from mlip.io.model_file import save_model

    data = tmp_path / "one.xyz"
    ase.io.write(data, ase.io.read(ACAC, index=":1"))
    e0 = [E0[1], E0[6], E0[8]]
    model = tiny_model(edge_energy_readout=True, heads=["a", "b"], atomic_energies=[e0, [v + 1.0 for v in e0]],
                       scale=[1.3, 0.7], shift=[-0.4, 0.2])
    save_model(model, tmp_path / "m.pt", metadata={"default_head": "b"})
    heads = {}
    for name, extra in (("default", []), ("a", ["--head", "a"])):
        out = tmp_path / name
        assert main(["--model", str(tmp_path / "m.pt"), "--data", str(data), "--no-plots", "--output", str(out),
                     *extra]) == 0
        summary = json.loads((out / "summary.json").read_text())
        heads[name] = (summary["head"], summary["structures"][0]["e_coh"])
    assert heads["default"][0] == "b" and heads["a"][0] == "a"
    assert heads["default"][1] != pytest.approx(heads["a"][1])  # the heads really differ
