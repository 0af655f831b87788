"""mlip.analysis.report_page: one static page, every number with its settings and time, text escaped."""

from __future__ import annotations

from mlip.analysis.report_page import Section, write_page


def test_page_has_sections_settings_and_escapes(tmp_path):
    sections = [
        Section("Equation of state", [["V0 (A^3)", "B0 (GPa)"], [20.01234567, 98.7]], {"strains": "-4..4 %"}, 1.26,
                image="eos.png", notes=["imaginary mode at q = (0.5, 0, 0): -1.2 THz"]),
        Section("<script>", [], {"steps": 10}, 0.0),
    ]
    path = write_page(tmp_path / "report", "Si <model>", {"model": "m.pt", "dtype": "float64"}, sections)
    text = path.read_text()
    assert path.name == "index.html" and text.startswith("<!DOCTYPE html>")
    assert '<img src="eos.png"' in text and "<td>20.0123</td>" in text and "<td>98.7</td>" in text
    assert "Settings: strains: -4..4 %. Took 1.3 s." in text
    assert "imaginary mode at q = (0.5, 0, 0)" in text
    assert "<script>" not in text and "&lt;script&gt;" in text and "Si &lt;model&gt;" in text
    assert "<th>dtype</th><td>float64</td>" in text
