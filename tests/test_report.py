"""jaxdl.report: run dirs in, report.md and PNG figures out. The table's numbers are checked
against numbers computed here from the files, selection against a case where val and test
disagree, and the whole path on a real multirun with a population."""
from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats as scipy_stats

from jaxdl.report import build, make_report
from jaxdl.report.__main__ import main as report_main
from jaxdl.report.stats import curve_band, describe
from tests.helpers import ROOT, load_script

PNG = b"\x89PNG\r\n\x1a\n"


def write_run(path: Path, overrides: list[str], seed: int, members: list[dict], *, task="echo",
              headline="test/accuracy", hib=True, population=None, val=True) -> Path:
    """A run dir in the runner's format. members: [{"replica": r, "hparams": {...},
    "curves": {"train/loss": [...per epoch], "val/accuracy": [...], "test/accuracy": [...]}}]."""
    path.mkdir(parents=True)
    (path / ".hydra").mkdir()
    (path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    names = [k for k in members[0]["curves"] if val or not k.startswith("val/")]
    epochs = len(members[0]["curves"][names[0]])
    rows = []
    for e in range(epochs):
        head = {"epoch": float(e + 1), "step": float(10 * (e + 1))}
        rows.append({**head, **{k: float(np.mean([m["curves"][k][e] for m in members])) for k in names}})
        if len(members) > 1:
            rows += [{**head, "member": float(i), **{k: m["curves"][k][e] for k in names}}
                     for i, m in enumerate(members)]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    final = lambda m: {k: m["curves"][k][-1] for k in names}
    recs = [{"member": i, "replica": m["replica"], "hparams": m.get("hparams", {}), "final": final(m),
             "best": final(m)} for i, m in enumerate(members)]
    by = "val/" + headline.split("/")[1]
    have = [r for r in recs if by in r["final"]]
    pick = (max if hib else min)(have, key=lambda r: r["final"][by]) if have else None
    summary = {"final": rows[0 if len(members) == 1 else -len(members) - 1], "best": {}, "task": task,
               "headline": headline, "higher_is_better": hib, "seed": seed,
               "replicas": len({m["replica"] for m in members}),
               "per_member": {k: [m["curves"][k][-1] for m in members] for k in names},
               "population": population or {}, "members": recs,
               "selection": pick and {"by": by, "member": pick["member"], "hparams": pick["hparams"],
                                      "val": pick["final"][by], "test": pick["final"][headline]}}
    (path / "summary.json").write_text(json.dumps(summary))
    return path


def rand_curves(rng, epochs=4, names=("train/loss", "val/accuracy", "test/accuracy")):
    return {k: [float(x) for x in np.sort(rng.uniform(0.2, 1.0, epochs))] for k in names}


def expected(values):
    """(n, mean, std, lo, hi) computed here, independently of jaxdl.report.stats."""
    x = np.asarray(values, float)
    n, mean = len(x), x.mean()
    if n < 2:
        return n, mean, math.nan, math.nan, math.nan
    std = x.std(ddof=1)
    half = scipy_stats.t.ppf(0.975, n - 1) * std / math.sqrt(n)
    return n, mean, std, mean - half, mean + half


def table_rows(md: str) -> dict[str, list[str]]:
    """report.md's config table: {config label (selection mark removed): cells}."""
    lines = md.split("## Configs", 1)[1].strip().splitlines()
    out = {}
    for line in lines[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        out[cells[0].replace("**", "").replace(" (selected)", "")] = cells[1:]
    return out


def cell_numbers(cell: str) -> list[float]:
    return [float(x) for x in re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", cell)]


@pytest.fixture
def grid_sweep(tmp_path):
    """A multirun over model.hidden in {8, 16}, seed in {0, 1}; each job a population over
    optim.lr in {0.001, 0.01} with 2 replicas: 4 configs x 4 seeds (2 seeds x 2 replicas)."""
    rng = np.random.default_rng(0)
    sweep = tmp_path / "multirun"
    job = 0
    for hidden in (8, 16):
        for seed in (0, 1):
            ms = [{"replica": r, "hparams": {"optim.lr": lr}, "curves": rand_curves(rng)}
                  for lr in (0.001, 0.01) for r in range(2)]
            ov = [f"model.hidden={hidden}", f"seed={seed}", "population.optim.lr=[0.001,0.01]",
                  "train.replicas=2", "task.length=100", "train.progress=false", "logger.mode=disabled"]
            write_run(sweep / f"{job}_{','.join(ov)}", ov, seed, ms, population={"optim.lr": [0.001, 0.01]})
            job += 1
    (sweep / "multirun.yaml").write_text("{}\n")
    return sweep


def test_table_rows_equal_numbers_from_the_run_dirs(grid_sweep):
    md_path, rep = make_report([grid_sweep])
    assert md_path == grid_sweep / "report.md"
    md = md_path.read_text()
    # the expected numbers, straight from the files: members grouped by (hidden, lr)
    want = {}
    for d in grid_sweep.iterdir():
        if not (d / "summary.json").exists():
            continue
        s = json.loads((d / "summary.json").read_text())
        hidden = [o for o in yaml.safe_load((d / ".hydra" / "overrides.yaml").read_text())
                  if o.startswith("model.hidden=")][0]
        for m in s["members"]:
            want.setdefault(f"{hidden} optim.lr={m['hparams']['optim.lr']}", []).append(m["final"])
    assert rep.axes == ["model.hidden", "optim.lr"]
    assert rep.fixed == {"task.length": "100"}          # seed, replicas, population, logger... are not configs
    rows = table_rows(md)
    assert set(rows) == set(want) and len(rows) == 4
    for label, finals in want.items():
        c = next(c for c in rep.configs if rep.label(c) == label)
        for metric, cols in (("val/accuracy", slice(1, 4)), ("test/accuracy", slice(4, 7))):
            n, mean, std, lo, hi = expected([f[metric] for f in finals])
            s = c.stats[metric]
            assert n == 4 and s.n == 4
            np.testing.assert_allclose([s.mean, s.std, s.lo, s.hi], [mean, std, lo, hi], rtol=1e-12)
            cells = rows[label][cols]
            got = [cell_numbers(cells[0])[0], cell_numbers(cells[1])[0], *cell_numbers(cells[2])]
            np.testing.assert_allclose(got, [mean, std, lo, hi], rtol=5e-4)
        assert rows[label][0] == "4"
    # rows in the axes' numeric order (8 before 16, 0.001 before 0.01)
    assert list(rows) == ["model.hidden=8 optim.lr=0.001", "model.hidden=8 optim.lr=0.01",
                          "model.hidden=16 optim.lr=0.001", "model.hidden=16 optim.lr=0.01"]
    # two swept axes: a heatmap, referenced by the report; curves too; no one-axis plot
    for name in ("heatmap", "curves"):
        png = grid_sweep / f"report_{name}.png"
        assert png.read_bytes()[:8] == PNG and f"](report_{name}.png)" in md
    assert not (grid_sweep / "report_against.png").exists() and "report_against" not in md


def test_learning_curve_band_is_mean_and_std_over_seeds():
    # three seeds, one stopped early after 2 epochs
    curves = [{1.0: 0.1, 2.0: 0.3, 3.0: 0.5}, {1.0: 0.2, 2.0: 0.2}, {1.0: 0.6, 2.0: 0.7, 3.0: 0.9}]
    e, mean, std, n = curve_band(curves)
    np.testing.assert_array_equal(e, [1, 2, 3])
    np.testing.assert_array_equal(n, [3, 3, 2])
    np.testing.assert_allclose(mean, [0.3, 0.4, 0.7])
    np.testing.assert_allclose(std, [np.std([0.1, 0.2, 0.6], ddof=1), np.std([0.3, 0.2, 0.7], ddof=1),
                                     np.std([0.5, 0.9], ddof=1)])
    one = describe([0.5])
    assert one.n == 1 and one.mean == 0.5 and math.isnan(one.std) and math.isnan(one.lo)


def _pair_of_configs(tmp_path, hib=True, headline="test/accuracy"):
    """Two configs (multirun over optim.lr, seed 0 and 1 each): A is better on val, B on test."""
    metric = headline.split("/")[1]
    vals = {"A": [0.80, 0.82], "B": [0.70, 0.72]}
    tests = {"A": [0.60, 0.62], "B": [0.90, 0.92]}
    if not hib:                                   # lower is better: A lower on val, B lower on test
        vals, tests = {"A": [1.0, 1.1], "B": [2.0, 2.1]}, {"A": [3.0, 3.1], "B": [0.5, 0.6]}
    sweep = tmp_path / f"sweep_{metric}"
    for j, (name, lr) in enumerate((("A", "0.1"), ("B", "0.2"))):
        for seed in (0, 1):
            c = {"train/loss": [1.0, 0.5], f"val/{metric}": [0.0, vals[name][seed]],
                 f"test/{metric}": [0.0, tests[name][seed]]}
            write_run(sweep / f"{2 * j + seed}_optim.lr={lr},seed={seed}", [f"optim.lr={lr}", f"seed={seed}"],
                      seed, [{"replica": 0, "curves": c}], headline=headline, hib=hib)
    return sweep


@pytest.mark.parametrize("hib,headline", [(True, "test/accuracy"), (False, "test/bpc")])
def test_selection_reads_val_even_when_test_disagrees(tmp_path, hib, headline):
    sweep = _pair_of_configs(tmp_path, hib, headline)
    out = tmp_path / "out" / "r.md"
    assert report_main([str(sweep), "--out", str(out)]) == 0
    rep = build([sweep])
    best_on_test = (max if hib else min)(rep.configs, key=lambda c: c.stats[headline].mean)
    assert rep.label(rep.selected) == "optim.lr=0.1"          # A: best on val
    assert rep.label(best_on_test) == "optim.lr=0.2"          # B would win on test
    md = out.read_text()
    assert "**optim.lr=0.1** (selected)" in md and "**optim.lr=0.2**" not in md
    sel = md.split("## Selected config", 1)[1].split("##", 1)[0]
    test_a = np.mean([0.60, 0.62] if hib else [3.0, 3.1])
    assert f"`{headline}`: {test_a:.4g}" in sel                # the selected config's test value is shown
    assert (tmp_path / "out" / "r_curves.png").read_bytes()[:8] == PNG
    assert (tmp_path / "out" / "r_against.png").read_bytes()[:8] == PNG    # one axis: metric against it


def test_old_runs_without_val_get_no_selection_and_no_test_fallback(tmp_path):
    """Runs from before the validation split (no val/..., no "members"): the table still
    pools seeds, and the report says why nothing is selected instead of picking on test."""
    sweep = tmp_path / "old"
    rng = np.random.default_rng(1)
    for j, hidden in enumerate((8, 16)):
        for seed in (0, 1):
            d = write_run(sweep / f"{2 * j + seed}", [f"model.hidden={hidden}", f"seed={seed}"], seed,
                          [{"replica": r, "curves": rand_curves(rng)} for r in range(3)], val=False)
            s = json.loads((d / "summary.json").read_text())
            for k in ("members", "selection", "population"):
                del s[k]
            (d / "summary.json").write_text(json.dumps(s))
    md_path, rep = make_report([sweep])
    assert rep.selected is None and all(c.stats["test/accuracy"].n == 6 for c in rep.configs)
    md = md_path.read_text()
    assert "No config is selected" in md and "never falls back" in md and "(selected)" not in md
    per = [json.loads((sweep / f"{i}" / "summary.json").read_text())["per_member"]["test/accuracy"]
           for i in (0, 1)]
    np.testing.assert_allclose(rep.configs[0].stats["test/accuracy"].mean, np.mean(per[0] + per[1]))


def test_several_dirs_unfinished_runs_and_errors(tmp_path, capsys):
    a = _pair_of_configs(tmp_path / "a")
    b = tmp_path / "b"
    write_run(b / "run", ["optim.lr=0.3"], 0, [{"replica": 0, "curves": {
        "train/loss": [1.0], "val/accuracy": [0.99], "test/accuracy": [0.1]}}])
    (b / "crashed" / ".hydra").mkdir(parents=True)
    (b / "crashed" / "metrics.jsonl").write_text('{"epoch": 1}\n')
    md, rep = make_report([a, b])
    assert md == tmp_path / "report.md"                       # the common parent
    assert [rep.label(c) for c in rep.configs] == ["optim.lr=0.1", "optim.lr=0.2", "optim.lr=0.3"]
    assert rep.label(rep.selected) == "optim.lr=0.3"
    assert "b/crashed" in md.read_text()
    # a second run of the same seed is counted, and the report says so
    write_run(tmp_path / "dup" / "again", ["optim.lr=0.3"], 0, [{"replica": 0, "curves": {
        "train/loss": [1.0], "val/accuracy": [0.9], "test/accuracy": [0.1]}}])
    _, rep = make_report([b, tmp_path / "dup"], out=tmp_path / "dup_report")
    assert any("same seed more than once" in n for n in rep.notes)
    # errors name the problem
    assert report_main([str(tmp_path / "nope")]) == 2
    assert "no such directory" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert report_main([str(empty)]) == 2
    assert "no run directories with summary.json" in capsys.readouterr().err
    write_run(tmp_path / "other" / "r", [], 0, [{"replica": 0, "curves": {"train/loss": [1.0]}}], task="adding",
              headline="test/mse", hib=False)
    assert report_main([str(a), str(tmp_path / "other")]) == 2
    assert "runs of different tasks" in capsys.readouterr().err


def test_sweep_report_and_mnist_report_use_it(tmp_path, grid_sweep):
    sys.path.insert(0, str(ROOT / "experiments"))
    from sweep_report import collect, main, table
    groups = collect(grid_sweep, None)
    assert len(groups) == 4 and all(len(v) == 4 for v in groups.values())
    rows = table(groups).splitlines()[2:]
    assert len(rows) == 4 and all("test/accuracy" in r for r in rows)
    assert sum("(selected)" in r for r in rows) == 1
    assert "Selected: **" in main([str(grid_sweep)])

    # experiments/mnist/report.py on run dirs in the MNIST runs' layout
    runs = tmp_path / "mnist_runs"
    for name, err in (("seed_300", 0.0184), ("modern_800", 0.0156)):
        d = write_run(runs / name, [], 0, [{"replica": 0, "curves": {
            "train/loss": [0.5, 0.4], "val/error": [0.03, 0.02], "test/error": [0.03, err]}}],
            task="mnist", headline="test/accuracy")
        s = json.loads((d / "summary.json").read_text())
        s.update(sizes=[784, 300, 10], epochs_run=2, stopped_early_at=None, epoch_time_s=1.5)
        s["best"] = {"test/error": err - 0.001}
        (d / "summary.json").write_text(json.dumps(s))
    for j, h in enumerate((10, 89)):
        d = write_run(runs / "hidden_sweep" / str(j), [f"model.hidden=[{h}]"], 0, [{"replica": 0, "curves": {
            "train/loss": [0.5], "val/error": [0.1 / (j + 1)], "test/error": [0.09 / (j + 1)]}}],
            task="mnist", headline="test/accuracy")
        s = json.loads((d / "summary.json").read_text())
        s["sizes"] = [784, h, 10]
        (d / "summary.json").write_text(json.dumps(s))
    out = tmp_path / "mnist_out"
    mnist_report = load_script("experiments/mnist/report.py")
    mnist_report.main(["--runs", str(runs), "--out", str(out)])
    res = (out / "RESULTS.md").read_text()
    assert "| **1.84%** | 1.74% | 2 | 1.50 |" in res and "| **1.56%** |" in res and "not run" in res
    assert "| 10 | 9.00% |" in res and "| 89 | 4.50% |" in res and "| 300 | 1.84% |" in res
    assert (out / "hidden_sweep.png").read_bytes()[:8] == PNG
    sweep_md = (runs / "hidden_sweep" / "report.md").read_text()
    assert "**model.hidden=[89]** (selected)" in sweep_md      # lower val/error wins


def test_report_of_a_real_multirun_with_a_population(tmp_path):
    """The project's own runs: a multirun over model.hidden, each job a population over
    optim.lr with 2 replicas; the report reads it from the files alone."""
    sweep = tmp_path / "sweep"
    p = subprocess.run([sys.executable, "-m", "jaxdl.main", "-m", "model.hidden=8,16",
                        "population.optim.lr=[0.003,0.03]", "train.replicas=2", "task.length=100",
                        "task.streams=2", "task.test_length=100", "task.val_length=100", "train.epochs=2",
                        "train.checkpoint_every=100", "train.progress=false", "logger.mode=disabled",
                        f"hydra.sweep.dir={sweep}"],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert report_main([str(sweep), "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    rows = table_rows(md)
    assert set(rows) == {f"model.hidden={h} optim.lr={lr}" for h in (8, 16) for lr in (0.003, 0.03)}
    # every row against the members in the summaries, and the selection against val
    finals = {}
    for d in sweep.iterdir():
        if (d / "summary.json").exists():
            s = json.loads((d / "summary.json").read_text())
            h = [o for o in yaml.safe_load((d / ".hydra" / "overrides.yaml").read_text())
                 if o.startswith("model.hidden=")][0]
            assert len(s["members"]) == 4
            for m in s["members"]:
                finals.setdefault(f"{h} optim.lr={m['hparams']['optim.lr']}", []).append(m["final"])
    for label, fs in finals.items():
        n, mean, std, lo, hi = expected([f["test/accuracy"] for f in fs])
        assert rows[label][0] == "2"
        np.testing.assert_allclose(cell_numbers(rows[label][4])[0], mean, rtol=5e-4)
        np.testing.assert_allclose(cell_numbers(rows[label][6]), [lo, hi], rtol=5e-4, atol=1e-6)
    best_val = max(finals, key=lambda k: np.mean([f["val/accuracy"] for f in finals[k]]))
    assert f"**{best_val}** (selected)" in md
    # the curves are each member's own rows of metrics.jsonl (not the run's mean rows)
    first = {}
    for d in sweep.iterdir():
        if (d / "metrics.jsonl").exists():
            s = json.loads((d / "summary.json").read_text())
            h = [o for o in yaml.safe_load((d / ".hydra" / "overrides.yaml").read_text())
                 if o.startswith("model.hidden=")][0]
            rows_ = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
            for r in rows_:
                if "member" in r and r["epoch"] == 1:
                    lr = s["members"][int(r["member"])]["hparams"]["optim.lr"]
                    first.setdefault(f"{h} optim.lr={lr}", []).append(r["val/accuracy"])
    rep = build([sweep])
    for c in rep.configs:
        e, mean, std, n = curve_band([{r["epoch"]: r["val/accuracy"] for r in m.curve} for m in c.members])
        assert list(e) == [1, 2] and list(n) == [2, 2]
        np.testing.assert_allclose([mean[0], std[0]], [np.mean(first[rep.label(c)]),
                                                       np.std(first[rep.label(c)], ddof=1)], rtol=1e-9)
        np.testing.assert_allclose(mean[-1], c.stats["val/accuracy"].mean, rtol=1e-9)
    for name in ("heatmap", "curves"):
        assert (tmp_path / "rep" / f"report_{name}.png").read_bytes()[:8] == PNG
