"""Inside a run launched by the Optuna sweeper (jaxdl.search.sweeper): the run's Optuna
trial, which gets the run's val headline after every evaluated epoch and may prune it.

The sweeper sets `hydra.sweeper.trial=<number>` on the job; the study's storage, name
and pruner are the job's own hydra.sweeper settings (the same config the sweeper has).
The value reported at epoch e is the trial value (`hydra.sweeper.trial_value`) of that
epoch's val headline over the members the run holds then:

    selected: the best member's (max or min by the task's direction), as the run's
              selection is made (jaxdl.search.objective)
    mean:     the mean over the members (a trial of replicas: the mean over seeds)

Only val is reported: a run without a val split is refused before training. With an
in-memory study (no storage, no pruner) nothing reaches the study from the run; the
sweeper is told the run's return value."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from jaxdl.search.sweeper import TRIAL_VALUES, make_pruner, open_storage, storage_url, study_name

PLUGIN = "hydra_plugins.jaxdl_optuna_sweeper."


def trial_value(values, how: str, higher: bool) -> float:
    """The trial value of per-member val values [M] (non-finite ones never selected)."""
    v = np.asarray(values, np.float64)
    if how == "mean":
        return float(v.mean())
    ok = v[np.isfinite(v)]
    if not len(ok):
        return float("nan")
    return float(ok.max() if higher else ok.min())


@dataclass
class StudyTrial:
    """The run's trial: `number`, `how` (TRIAL_VALUES), and the live optuna Trial (None: an
    in-memory study the run cannot reach)."""
    number: int
    how: str
    study: str
    trial: Any = None
    pruned_at: int | None = None

    def hook(self, score: str, higher: bool):
        """The loop's per-epoch prune hook (jaxdl.train.loop.train_loop `prune`):
        (epoch, row, per_member) -> True when the study prunes the run after that epoch."""
        if not score.startswith("val/"):
            raise ValueError(f"an Optuna trial reports the val headline; {score} is not a val metric (the task "
                             f"has no val split): sweep a task with a val split")

        def prune(epoch: int, row: dict, per_member: dict) -> bool:
            if self.trial is None or score not in row:
                return False
            value = trial_value(per_member.get(score, [row[score]]), self.how, higher)
            self.trial.report(value, epoch)
            if self.trial.should_prune():
                self.pruned_at = epoch
                self.trial.set_user_attr("pruned_at", epoch)
                return True
            return False
        return prune

    def record(self) -> dict:
        """summary.json's "trial"."""
        return {"number": self.number, "study": self.study, "value": self.how, "pruned_at": self.pruned_at,
                "reported": self.trial is not None}


def from_hydra(hc, run_dir) -> StudyTrial | None:
    """The trial of a job the Optuna sweeper launched (HydraConfig `hc`), else None."""
    if hc is None:
        return None
    sw = hc.get("sweeper") or {}
    if not str(sw.get("_target_", "")).startswith(PLUGIN) or sw.get("trial") is None:
        return None
    how = str(sw.get("trial_value", "selected"))
    if how not in TRIAL_VALUES:
        raise ValueError(f"hydra.sweeper.trial_value: {how!r}; use one of {', '.join(TRIAL_VALUES)}")
    name = study_name(sw.get("study_name"))
    url = storage_url(sw.get("storage"), str(sw.get("pruner", "none")), hc.sweep.dir)
    st = StudyTrial(int(sw.trial), how, name)
    if url is None:
        return st
    import optuna
    storage = open_storage(url)
    study = optuna.load_study(study_name=name, storage=storage,
                              pruner=make_pruner(str(sw.get("pruner", "none")), dict(sw.get("pruner_kwargs") or {})))
    trial_id = storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(name), st.number)
    st.trial = optuna.trial.Trial(study, trial_id)
    st.trial.set_user_attr("run_dir", str(run_dir.absolute()))
    return st
