"""The Optuna (>= 5) sweeper across programs (hydra_plugins/jaxdl_optuna_sweeper,
jaxdl.search.sweeper, jaxdl.search.trial; docs/search.md): a persistent study that a
relaunch continues after a SIGKILL, pruning recorded in the run dir and the study, and
bad settings refused before any trial runs."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml

from jaxdl.search.sweeper import Sweep, SweepConfigError, open_storage, search_space
from jaxdl.search.trial import trial_value
from tests.helpers import ROOT, compose_cfg

QUIET = ["logger.mode=disabled", "train.progress=false"]
TINY = ["task.length=200", "task.streams=4", "task.test_length=200"]
ENV = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "JAX_PLATFORMS": "cpu"}


def _sweep_cmd(args):
    return [sys.executable, "-m", "jaxdl.main", "-m", *args]


@pytest.fixture(autouse=True)
def _compile_cache(tmp_path):
    """The trials' persistent compilation cache (jaxdl.search.cache) in the test's own dir."""
    ENV["JAXDL_COMPILE_CACHE"] = str(tmp_path / "xla")
    yield
    ENV.pop("JAXDL_COMPILE_CACHE")


def _trials(storage, name):
    return optuna.load_study(study_name=name, storage=open_storage(storage)).get_trials()


def test_a_sqlite_study_killed_after_its_first_trial_ends_with_exactly_the_requested_trials(tmp_path):
    """hparams_search=echo_optuna with an sqlite storage: SIGKILL once trial 0 has finished,
    relaunch the same command: 3 finished trials, numbered 0-2, a run dir each, none run
    twice (trial 0's dir launched once and untouched), the best value a trial's val accuracy."""
    sweep, db = tmp_path / "sweep", f"sqlite:///{tmp_path / 'study.db'}"
    args = ["hparams_search=echo_optuna", "hydra.sweeper.n_trials=3", f"hydra.sweeper.storage={db}",
            "hydra.sweeper.study_name=kill", *TINY, "train.epochs=1", f"hydra.sweep.dir={sweep}"] + QUIET
    proc = subprocess.Popen(_sweep_cmd(args), cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not list(sweep.glob("0_*/summary.json")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = list(sweep.glob("0_*"))
    assert len(first) == 1 and (first[0] / "summary.json").exists()
    assert len([t for t in _trials(db, "kill") if t.state.is_finished()]) < 3, "the sweep ended before the kill"
    before = (first[0] / "metrics.jsonl").read_text()
    p = subprocess.run(_sweep_cmd(args), cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    trials = _trials(db, "kill")
    assert [t.number for t in trials] == [0, 1, 2] and all(t.state.name == "COMPLETE" for t in trials)
    runs = sorted(d for d in sweep.iterdir() if d.is_dir())
    assert [d.name.split("_")[0] for d in runs] == ["0", "1", "2"]           # a run dir per trial number
    # the finished trial 0 is not run again; a trial the kill cut short runs again in its own dir
    assert len(json.loads((first[0] / "launches.json").read_text())["launches"]) == 1
    assert (first[0] / "metrics.jsonl").read_text() == before
    summaries = {int(d.name.split("_")[0]): json.loads((d / "summary.json").read_text()) for d in runs}
    for t in trials:                        # each trial's value is its run's val headline, never test
        assert t.value == pytest.approx(summaries[t.number]["final"]["val/accuracy"], rel=1e-9)
        assert t.user_attrs["run_dir"] == str(runs[t.number].absolute())
    assert len({(s["num_params"], s["tbptt"]["k2"]) for s in summaries.values()}) >= 2    # shape keys vary
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["best_value"] == pytest.approx(max(t.value for t in trials), rel=1e-9)
    assert set(best["best_params"]) == {"model.hidden", "tbptt.k2", "optim.lr"}
    rec = json.loads((sweep / "trials.json").read_text())
    assert [(r["number"], r["state"]) for r in rec["trials"]] == [(0, "COMPLETE"), (1, "COMPLETE"), (2, "COMPLETE")]


def test_a_pruned_trial_stops_and_is_recorded_in_its_run_dir_and_the_study(tmp_path):
    """A trial below the threshold pruner's bound after its first epoch stops there: its
    summary.json says pruned_at 1 and 1 of 3 epochs run, the study holds it PRUNED with the
    reported val value, the sweep's trials.json says so; the sweep itself succeeds."""
    sweep = tmp_path / "sweep"
    p = subprocess.run(_sweep_cmd(["hydra/sweeper=optuna", "hydra.sweeper.direction=maximize",
                                   "hydra.sweeper.n_trials=1", "hydra.sweeper.pruner=threshold",
                                   "+hydra.sweeper.pruner_kwargs.lower=1.5",
                                   "optim.lr=interval(0.001, 0.01)", *TINY,
                                   "model.hidden=8", "train.epochs=3", f"hydra.sweep.dir={sweep}"] + QUIET),
                       cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    run = next(d for d in sweep.iterdir() if d.is_dir())
    s = json.loads((run / "summary.json").read_text())
    assert s["trial"] == {"number": 0, "study": "study", "value": "selected", "pruned_at": 1, "reported": True}
    assert s["epochs_run"] == 1 and s["epochs"] == 3
    t, = _trials(str(sweep / "optuna.journal"), "study")     # no storage + a pruner: the sweep dir's journal
    assert t.state.name == "PRUNED" and t.user_attrs["pruned_at"] == 1
    assert t.intermediate_values == {1: pytest.approx(s["final"]["val/accuracy"], rel=1e-9)}
    rec = json.loads((sweep / "trials.json").read_text())["trials"]
    assert rec[0]["state"] == "PRUNED" and rec[0]["pruned_at"] == 1
    from jaxdl.report import make_report
    md, _ = make_report([run], tmp_path / "rep")
    assert "pruned after epoch 1" in md.read_text()


def test_the_trial_value_of_a_population():
    assert trial_value([0.2, 0.9, float("nan")], "selected", True) == 0.9
    assert trial_value([0.2, 0.9, 0.4], "selected", False) == 0.2
    assert trial_value([0.2, 0.9, 0.4], "mean", True) == pytest.approx(0.5)
    from jaxdl.search.objective import objective
    s = {"headline": "test/accuracy", "trial": {"value": "mean"},
         "members": [{"final": {"val/accuracy": 0.5}, "stopped_at": None}, {"final": {"val/accuracy": 0.7}},
                     {"final": {"val/accuracy": 0.1}, "stopped_at": 2}],
         "selection": {"val": 0.7}}
    assert objective(s) == pytest.approx(0.6)                 # the members that trained to the end
    assert objective({**s, "trial": {"value": "selected"}}) == 0.7


def _sweep(tmp_path, overrides=(), **settings):
    cfg = compose_cfg(list(overrides))
    sw = Sweep(sampler=optuna.samplers.RandomSampler(seed=0), direction="maximize", **settings)
    sw.config, sw.sweep_dir = cfg, tmp_path
    return sw


SPACE = ["model.hidden=choice(8, 16)", "optim.lr=tag(log, interval(0.001, 0.1))"]


@pytest.mark.parametrize("settings, overrides, key, hint", [
    ({"pruner": "asha"}, [], "hydra.sweeper.pruner", "median, hyperband"),
    ({"pruner": "median", "pruner_kwargs": {"warmup": 2}}, [], "hydra.sweeper.pruner_kwargs", "MedianPruner"),
    ({"trial_value": "max"}, [], "hydra.sweeper.trial_value", "selected, mean"),
    ({}, ["population.optim.lr=[0.001,0.01]"], "hydra.sweeper.params.optim.lr", "remove population.optim.lr"),
])
def test_bad_sweeper_settings_are_refused_naming_the_key(tmp_path, settings, overrides, key, hint):
    sw = _sweep(tmp_path, overrides, **settings)
    space, fixed = search_space(SPACE)
    with pytest.raises(SweepConfigError, match=key) as e:
        sw.check(space, fixed)
    assert hint in str(e.value)


def test_a_storage_that_cannot_be_opened_and_a_study_of_another_space_are_refused(tmp_path):
    space, _ = search_space(SPACE)
    bad = _sweep(tmp_path, storage="sqlite:////proc/no/such/dir/x.db")
    with pytest.raises(SweepConfigError, match="hydra.sweeper.storage: cannot open .*sqlite:///<writable path>"):
        bad.open_study(space)
    db = f"sqlite:///{tmp_path / 's.db'}"
    sw = _sweep(tmp_path, storage=db, study_name="s")
    study = sw.open_study(space)
    study.tell(study.ask(space), 0.5)
    assert _sweep(tmp_path, storage=db, study_name="s").open_study(space).trials[0].value == 0.5   # same space: loads
    other, _ = search_space(["model.hidden=choice(8, 32)", "optim.lr=tag(log, interval(0.001, 0.1))"])
    with pytest.raises(SweepConfigError, match="hydra.sweeper.study_name: study 's' .* searched another space"):
        _sweep(tmp_path, storage=db, study_name="s").open_study(other)


def test_an_ask_cut_short_by_a_kill_is_completed_on_relaunch(tmp_path):
    """A SIGKILL between study.ask's trial and its parameters leaves a RUNNING trial with a
    part of the space: the relaunch loads the study and suggests the missing parameters."""
    from optuna.distributions import FloatDistribution
    from jaxdl.search.sweeper import complete_asks
    space, _ = search_space(SPACE)
    db = f"sqlite:///{tmp_path / 's.db'}"
    study = _sweep(tmp_path, storage=db, study_name="s").open_study(space)
    cut = study._storage.create_new_trial(study._study_id)              # the kill struck here
    first = next(iter(space))
    optuna.Trial(study, cut)._suggest(first, space[first])
    study = _sweep(tmp_path, storage=db, study_name="s").open_study(space)
    stale = [t for t in study.get_trials() if t.state.name == "RUNNING"]
    assert [set(t.params) for t in stale] == [{first}]
    complete_asks(study, space, stale)
    t = study.get_trials()[0]
    assert set(t.params) == set(space) and t.distributions == space
    other = dict(space, **{first: FloatDistribution(1e-5, 1.0)})  # the part it holds has to match
    with pytest.raises(SweepConfigError, match="searched another space"):
        _sweep(tmp_path, storage=db, study_name="s").open_study(other)


def test_an_unknown_pruner_stops_the_sweep_before_any_trial(tmp_path):
    p = subprocess.run(_sweep_cmd(["hparams_search=echo_optuna", "hydra.sweeper.pruner=asha",
                                   f"hydra.sweep.dir={tmp_path / 'sw'}"] + QUIET),
                       cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines()[-1] == ("[jaxdl] config error: hydra.sweeper.pruner: unknown pruner "
                                                 "'asha'; use one of none, median, hyperband, threshold")
    assert not any(Path(tmp_path / "sw").glob("*/summary.json"))
