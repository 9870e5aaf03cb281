"""experiments/bench_population.py runs end to end at a tiny size (plumbing, not speed: the
speed is measured by running the script)."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_population_benchmark_smoke_reports_every_count(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(ROOT / "experiments"))
    import bench_population
    res = bench_population.main(["--members", "1,3", "--rounds", "2", "--length", "40", "--hidden", "8"])
    printed = capsys.readouterr().out
    assert "| 3 |" in printed and "load average" in printed
    assert set(res["median"]) == {1, 3} and all(len(v) == 2 and min(v) > 0 for v in res["rounds"].values())
    assert res["ratio"][1] == 1.0
