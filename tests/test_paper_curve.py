"""experiments/smnist/paper_curve.py reads a curve from a figure PDF's vector paths (the
operators matplotlib writes) in the figure's own axis units, and prints it beside runs."""
from __future__ import annotations

import json
import zlib

import pytest

from tests.helpers import ROOT

# a plot box (72, 43.2) + (446.4, 345.6); x ticks 0 / 500 / 1000, y ticks 0.0 / 0.5 / 1.0
CONTENT = """q 72 43.2 446.4 345.6 re W n /A2 gs 2 J 1 j 3 w 0 0 1 RG
72 77.76 m 295.2 181.44 l 518.4 354.24 l
S
Q q /A2 gs 2 J 1 j 3 w 1 0 0 RG
72 388.8 m 518.4 43.2 l
S
Q
72 43.2 m 72 47.2 l
B
BT /F1 12 Tf
68.9 30.075 Td
(0) Tj ET
295.2 43.2 m 295.2 47.2 l
B
BT /F1 12 Tf
285.2 30.075 Td
(500) Tj ET
518.4 43.2 m 518.4 47.2 l
B
BT /F1 12 Tf
505.4 30.075 Td
(1000) Tj ET
72 43.2 m 76 43.2 l
B
BT /F1 12 Tf
50.5 39.8875 Td
(0.0) Tj ET
72 216 m 76 216 l
B
BT /F1 12 Tf
50.5 212.6875 Td
(0.5) Tj ET
72 388.8 m 76 388.8 l
B
BT /F1 12 Tf
50.5 385.4875 Td
(1.0) Tj ET
"""


def _pdf(content: str) -> bytes:
    body = zlib.compress(content.encode())
    return (b"%%PDF-1.4\n1 0 obj\n<< /Filter /FlateDecode /Length %d >>\nstream\n" % len(body)
            + body + b"\nendstream\nendobj\n")


def test_the_blue_curve_comes_back_in_the_figures_units_by_epoch(monkeypatch, tmp_path, capsys):
    monkeypatch.syspath_prepend(str(ROOT / "experiments" / "smnist"))
    import paper_curve
    curve = paper_curve.read_curve(paper_curve.page_content(_pdf(CONTENT)))
    assert [x for x, _ in curve] == pytest.approx([0, 500, 1000])
    assert [y for _, y in curve] == pytest.approx([0.1, 0.4, 0.9])
    red = paper_curve.read_curve(paper_curve.page_content(_pdf(CONTENT)), color="1 0 0")
    assert [y for _, y in red] == pytest.approx([1.0, 0.0])
    (tmp_path / "fig.pdf").write_bytes(_pdf(CONTENT))
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(d) for d in [
        {"epoch": 1.0, "val/accuracy": 0.35}, {"epoch": 1.0, "member": 0.0, "val/accuracy": 0.3}]))
    res = paper_curve.main(["--figure", str(tmp_path / "fig.pdf"), "--run", str(run)])
    assert res["paper"] == pytest.approx({0: 0.1, 1: 0.4, 2: 0.9}) and res["runs"][str(run)] == {1: 0.35}
    assert "| 1 | 40.0 | 35.0 |" in capsys.readouterr().out


def test_a_figure_whose_ticks_and_labels_do_not_pair_is_refused(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "experiments" / "smnist"))
    import paper_curve
    with pytest.raises(ValueError, match="tick marks against .* labels"):
        paper_curve.read_curve(paper_curve.page_content(_pdf(CONTENT.replace("(500) Tj ET\n", ""))))
