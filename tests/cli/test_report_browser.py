"""The report of a tiny model on the bundled Si data renders in a real browser (headless Chromium, Debian's).

Chromium loads the page inside a harness whose script lists every image that failed to load, and takes a
screenshot of the page. Skips with the reason where Chromium is absent; .ci/run installs it, so CI runs it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import ase.io
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integrations"))

from integ_support import tiny_model  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--allow-file-access-from-files", "--virtual-time-budget=10000"]
HARNESS = """<!DOCTYPE html><html><body><iframe id="r" src="report/index.html" width="1200" height="800"></iframe>
<script>
document.getElementById('r').onload = function () {
  var images = this.contentDocument.images, missing = [];
  for (var i = 0; i < images.length; i++) {
    if (!images[i].complete || images[i].naturalWidth === 0) missing.push(images[i].getAttribute('src'));
  }
  var out = document.createElement('pre');
  out.textContent = 'IMAGES ' + images.length + ' MISSING [' + missing.join(',') + ']';
  document.body.appendChild(out);
};
</script></body></html>
"""


def _chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True,
                          timeout=180, check=False)


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium; .ci/run does)")
def test_report_renders_in_chromium(tmp_path):
    from mlip.cli.report import main
    from mlip.io.model_file import save_model

    save_model(tiny_model(), tmp_path / "model.pt")
    frames = ase.io.read(REPO / "data" / "si" / "train.xyz", ":")
    structure = tmp_path / "si.xyz"
    ase.io.write(structure, frames[0])
    assert main(["--model", str(tmp_path / "model.pt"), "--structure", str(structure), "--data",
                 str(REPO / "data" / "si" / "train.xyz"), "-o", str(tmp_path / "report"), "--supercell", "1", "1", "1",
                 "--md-steps", "5", "--only", "eos,phonons,md"]) == 0
    (tmp_path / "harness.html").write_text(HARNESS)
    dom = _chromium(["--dump-dom", (tmp_path / "harness.html").as_uri()], tmp_path / "profile1")
    assert "IMAGES 3 MISSING []" in dom.stdout, dom.stdout[-2000:] + dom.stderr[-2000:]
    shot = tmp_path / "shot.png"
    _chromium([f"--screenshot={shot}", "--window-size=1200,2400", (tmp_path / "report" / "index.html").as_uri()],
              tmp_path / "profile2")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)
    assert np.ptp(pixels[..., :3]) > 0.5  # not a blank page: text and figures are drawn
