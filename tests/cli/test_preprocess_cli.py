"""mlip-preprocess: no carriage-return progress lines in logs (stderr not a terminal); --e0s through the one
element -> energy parser."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ACAC = REPO / "data" / "acac"


@pytest.fixture
def small(tmp_path) -> Path:
    if not (ACAC / "train.xyz").is_file():
        pytest.skip("bundled data/acac missing")
    lines = (ACAC / "train.xyz").read_text().splitlines(keepends=True)
    (tmp_path / "train.xyz").write_text("".join(lines[: 17 * 6]))
    return tmp_path / "train.xyz"


def test_no_carriage_returns_when_not_a_terminal(small, tmp_path, capsys):
    from mlip.cli.preprocess import main

    assert main(["--data", str(small), "-o", str(tmp_path / "a.h5"), "--r-max", "4"]) == 0
    captured = capsys.readouterr()
    assert "\r" not in captured.out + captured.err  # tqdm would draw "\r writing a.h5: ..." here
    assert (tmp_path / "a.h5").is_file()


def test_e0s_forms(small, tmp_path, capsys):
    from mlip.cli.preprocess import main
    from mlip.data.ondisk import OnDiskFile

    iso = "H=-13.568422178253735,C=-1026.8538996116154,O=-2037.796869412825"
    assert main(["--data", str(small), "-o", str(tmp_path / "b.h5"), "--r-max", "4", "--e0s", iso]) == 0
    stats = OnDiskFile(str(tmp_path / "b.h5")).statistics
    e0s = next(iter(stats.values()))["e0s"]
    assert {int(k): v for k, v in e0s.items()} == {1: pytest.approx(-13.568422178253735),
                                                   6: pytest.approx(-1026.8538996116154),
                                                   8: pytest.approx(-2037.796869412825)}
    capsys.readouterr()
    assert main(["--data", str(small), "-o", str(tmp_path / "c.h5"), "--e0s", "{\"Xx\": 1.0}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: option --e0s: 'Xx': not an element symbol or atomic number"
    assert main(["--data", str(small), "-o", str(tmp_path / "c.h5"), "--e0s", "bogus"]) == 2
    assert capsys.readouterr().err.startswith("error: --e0s 'bogus': expected 'fit', 'average', 'isolated'")
