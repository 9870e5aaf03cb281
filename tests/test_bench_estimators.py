"""experiments/bench_estimators.py and profile_epoch.py --estimator run end to end at a tiny
size (plumbing, not speed: the speed is measured by running the scripts)."""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_estimators_benchmark_smoke_reports_every_method(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(ROOT / "experiments"))
    import bench_estimators
    res = bench_estimators.main(["--hidden", "4", "--methods", "uoro", "snap1", "--rounds", "1", "--length", "20"])
    printed = capsys.readouterr().out
    assert "| 4 | snap1 |" in printed and "load average" in printed and "wall time" in printed
    assert list(res[4]) == ["tbptt", "uoro", "snap1"] and min(res[4].values()) > 0


def test_profile_epoch_profiles_an_online_estimator(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(ROOT / "experiments"))
    import profile_epoch
    res = profile_epoch.main(["--estimator", "uoro", "--hidden", "4", "--length", "20", "--top", "3"])
    printed = capsys.readouterr().out
    assert "uoro" in printed.splitlines()[0] and res["ms_per_epoch"] > 0 and res["ops"]


def test_profile_epoch_refuses_a_torch_profile_it_has_no_peer_for(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(ROOT / "experiments"))
    import profile_epoch
    with pytest.raises(SystemExit) as e:
        profile_epoch.main(["--workload", "smnist", "--torch"])
    assert e.value.code == 2 and "bench_smnist.py" in capsys.readouterr().err
