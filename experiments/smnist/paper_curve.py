"""A published learning curve beside jaxdl's: read a curve from a figure PDF's vector paths
and print it, epoch by epoch, next to the eval metrics of jaxdl run directories.

Cooijmans et al. 2017 ship their validation-accuracy figures as matplotlib PDFs
(github.com/cooijmanstim/recurrent-batch-normalization, paper/figures/unpermuted_valid.pdf and
permuted_valid.pdf; the LSTM is the blue curve, one point per 500 iterations = one epoch of
their batch 100 over 50,000 images, the point at iteration 0 evaluated before training):

    python experiments/smnist/paper_curve.py --figure unpermuted_valid.pdf --per-epoch 500 \\
        --run runs/cooijmans_pixel [--run ...] [--metric val/accuracy]

The axes come from the figure itself: the plot box is the first clip rectangle of the page,
each axis maps linearly through its first and last tick (the tick marks on the box's left
and bottom edges, labelled by the numbers drawn beside them, in order).
"""
from __future__ import annotations

import argparse
import json
import re
import zlib
from pathlib import Path

NUM = r"-?[\d.]+"


def page_content(pdf: bytes) -> str:
    """The decompressed content streams of a PDF, concatenated (matplotlib writes one page)."""
    out = []
    for m in re.finditer(rb"stream\r?\n", pdf):
        end = pdf.find(b"endstream", m.end())
        try:
            out.append(zlib.decompressobj().decompress(pdf[m.end():end]).decode("latin-1"))
        except zlib.error:
            continue
    return "\n".join(s for s in out if " re W n" in s)


def _axis(ticks: list[float], labels: list[float]):
    if len(ticks) < 2 or len(ticks) != len(labels):
        raise ValueError(f"{len(ticks)} tick marks against {len(labels)} labels: not a figure this reader knows")
    (p0, v0), (p1, v1) = (ticks[0], labels[0]), (ticks[-1], labels[-1])
    return lambda p: v0 + (p - p0) / (p1 - p0) * (v1 - v0)


def read_curve(content: str, color: str = "0 0 1") -> list[tuple[float, float]]:
    """[(x, y)] in data units of the first path stroked in `color` (an RGB triple as the PDF
    writes it) inside the plot box."""
    x0, y0, w, h = (float(v) for v in re.search(rf"({NUM}) ({NUM}) ({NUM}) ({NUM}) re W n", content).groups())
    labels = [(float(x), float(y), float(v)) for x, y, v in
              re.findall(rf"({NUM}) ({NUM}) Td\n\(({NUM})\) Tj", content)]
    xt = sorted({float(x) for x in re.findall(rf"({NUM}) {y0:g} m \1 {NUM} l", content)})
    yt = sorted({float(y) for y in re.findall(rf"{x0:g} ({NUM}) m {NUM} \1 l", content)})
    fx = _axis(xt, [v for x, y, v in labels if y < y0 - 10])
    fy = _axis(yt, [v for x, y, v in labels if x < x0 and y >= y0 - 10])
    start = content.index(f"{color} RG") + len(color) + 3
    path = content[start:content.index("\nS", start)]
    return [(fx(float(x)), fy(float(y))) for x, y in re.findall(rf"({NUM})\s+({NUM})\s+[ml]", path)]


def by_epoch(curve, per_epoch: float) -> dict[int, float]:
    return {round(x / per_epoch): y for x, y in curve}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--figure", required=True, help="the figure's PDF")
    ap.add_argument("--color", default="0 0 1", help="the curve's stroke colour, RGB as the PDF writes it")
    ap.add_argument("--per-epoch", type=float, default=500, help="x units (iterations) per epoch")
    ap.add_argument("--run", action="append", default=[], help="a jaxdl run directory (its metrics.jsonl)")
    ap.add_argument("--metric", default="val/accuracy")
    ap.add_argument("--epochs", type=int, nargs="+", default=None, help="the epochs to print (default: all)")
    a = ap.parse_args(argv)
    paper = by_epoch(read_curve(page_content(Path(a.figure).read_bytes()), a.color), a.per_epoch)
    runs = {}
    for r in a.run:
        rows = [json.loads(line) for line in (Path(r) / "metrics.jsonl").read_text().splitlines() if line]
        runs[r] = {int(d["epoch"]): d[a.metric] for d in rows if "member" not in d and a.metric in d}
    epochs = a.epochs or sorted(set(paper) | {e for v in runs.values() for e in v})
    print(f"| epoch | paper ({Path(a.figure).name}) | " + " | ".join(Path(r).name for r in runs) + " |")
    print("|---|---|" + "---|" * len(runs))
    cell = lambda d, e: f"{100 * d[e]:.1f}" if e in d else ""
    for e in epochs:
        print(f"| {e} | {cell(paper, e)} | " + " | ".join(cell(v, e) for v in runs.values()) + " |")
    return {"paper": paper, "runs": runs}


if __name__ == "__main__":
    main()
