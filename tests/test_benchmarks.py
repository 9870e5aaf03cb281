"""The LSTM speed benchmark runs end to end at a tiny size, each peer in its own process.

It checks the plumbing (workers, JSON, ratios), not speed: speed is measured by
`./launch.sh bench experiments/bench_lstm.py`, never by a timed test."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def bench_lstm(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "experiments"))
    import bench_lstm
    return bench_lstm


def test_bench_lstm_times_each_peer_in_a_fresh_process(bench_lstm, tmp_path, capsys):
    out = tmp_path / "bench.json"
    peers = ["jaxdl", "flax"]
    res = bench_lstm.main(["--hidden", "8", "--reps", "2", "--rounds", "1",
                           "--peers", *peers, "--json", str(out)])
    printed = capsys.readouterr().out
    assert "a fresh process per peer and round" in printed
    saved = json.loads(out.read_text())
    for table in (res[8], saved["8"]):
        assert set(table["median_ms"]) == set(peers)
        for k in peers:
            assert 0 < table["min_ms"][k] <= table["median_ms"][k]
    # the fastest peer is printed with ratio 1.00x
    fastest = min(res[8]["median_ms"], key=res[8]["median_ms"].get)
    assert any(line.split()[0] == fastest and "1.00x" in line for line in printed.splitlines() if line.strip())


def test_bench_lstm_worker_rejects_an_unknown_peer(bench_lstm):
    import subprocess
    r = subprocess.run([sys.executable, str(ROOT / "experiments" / "bench_lstm.py"),
                        "--worker", "nope", "--hidden", "4", "--reps", "1"],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "unknown peer 'nope'" in r.stderr
