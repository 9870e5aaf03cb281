"""A Hydra sweep driven by an Optuna (>= 5) study: Optuna's ask/tell samples, Hydra's
launcher runs the trials (hydra_plugins/jaxdl_optuna_sweeper is the plugin; docs/search.md).

    ./launch.sh -m hparams_search=echo_optuna
    ./launch.sh -m hparams_search=echo_optuna_pruned hydra.sweeper.storage=sqlite:///echo.db

Each batch of `n_jobs` trials is asked from the study, launched as Hydra jobs with their
params as overrides plus `hydra.sweeper.trial=<number>` (job number = trial number, so a
trial's run dir is `<sweep dir>/<number>_<overrides>`), and told the value the job
returns (jaxdl.search.objective: a val headline, never test).

Persistent study: `storage` is an SQLAlchemy URL (sqlite:///path.db) or an Optuna journal
file path; the study `study_name` is loaded if it exists. A relaunch of the same command
continues it: `n_trials` counts the finished trials of the whole study (COMPLETE, PRUNED,
FAIL), so only the rest run; a trial left RUNNING by a killed sweep is told from its run
dir's summary.json when its job had finished, else launched again under its own number
and params (its run dir resumes from its checkpoint when the sweep dir is the same).
One sweep process per study at a time: a relaunch takes over every RUNNING trial.

Pruning (`pruner`: none | median | hyperband | threshold, `pruner_kwargs` for optuna's class): each
trial reports its val headline after every evaluated epoch and stops when the pruner
says so (jaxdl.search.trial); it is told PRUNED, with its last reported value. The trials
reach the study from their own processes, so pruning needs a storage they can open:
without `storage`, the study lives in the journal file `<sweep dir>/optuna.journal`.

The sweep dir gets trials.json (every trial: number, state, value, params, run dir,
pruned_at) and optimization_results.yaml (best params and value) after every batch.
Bad settings stop the sweep before any trial runs, naming the key and the fix."""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

PRUNERS = ("none", "median", "hyperband", "threshold")
TRIAL_VALUES = ("selected", "mean")
DEFAULT_STUDY = "study"
JOURNAL = "optuna.journal"


def complete_asks(study, space: dict, trials) -> None:
    """Suggest the parameters a kill left out of the trials' asks (`study.ask` writes the
    trial, then its parameters one by one), as `study.ask` would have."""
    import optuna
    for t in trials:
        if set(t.params) != set(space):
            trial = optuna.Trial(study, t._trial_id)
            for k, d in space.items():
                if k not in t.params:
                    trial._suggest(k, d)     # what study.ask(fixed_distributions) calls


class SweepConfigError(ValueError):
    """A bad hydra.sweeper.* setting; the message starts with the key."""


def study_name(name) -> str:
    return str(name) if name else DEFAULT_STUDY


def storage_url(storage, pruner: str, sweep_dir) -> str | None:
    """Where the study lives: `storage`; without it, a journal file in the sweep dir when
    trials must reach the study (a pruner), else None (in memory)."""
    if storage:
        return str(storage)
    if pruner != "none":
        return str(Path(sweep_dir).absolute() / JOURNAL)
    return None


def open_storage(url: str | None):
    """An Optuna storage: None (in memory), an RDB URL (contains "://"), else a journal file."""
    import optuna
    if url is None:
        return None
    if "://" in url:
        return optuna.storages.RDBStorage(url)
    Path(url).absolute().parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(url)))


def make_pruner(name: str, kwargs: dict):
    """optuna's pruner for `name` (PRUNERS) built with `kwargs`."""
    import optuna
    if name not in PRUNERS:
        raise SweepConfigError(f"hydra.sweeper.pruner: unknown pruner {name!r}; use one of {', '.join(PRUNERS)}")
    cls = {"none": optuna.pruners.NopPruner, "median": optuna.pruners.MedianPruner,
           "hyperband": optuna.pruners.HyperbandPruner, "threshold": optuna.pruners.ThresholdPruner}[name]
    try:
        return cls(**dict(kwargs or {}))
    except (TypeError, ValueError) as e:
        raise SweepConfigError(f"hydra.sweeper.pruner_kwargs: {cls.__name__} refuses {dict(kwargs)} ({e}); "
                               f"give arguments of optuna.pruners.{cls.__name__}") from None


def distribution(override) -> Any:
    """A parsed Hydra override -> an optuna distribution (a sweep) or its value as a string
    (fixed): choice(...) categorical, range(...) int/float steps, interval(a, b) float
    (int when both ends are ints), tag(log, interval(...)) on a log scale."""
    from hydra.core.override_parser.types import Transformer
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
    if not override.is_sweep_override():
        return override.get_value_element_as_str()
    value = override.value()
    if override.is_choice_sweep() or (override.is_range_sweep() and value.shuffle):
        return CategoricalDistribution(list(override.sweep_iterator(transformer=Transformer.encode)))
    if override.is_range_sweep():
        if any(isinstance(x, float) for x in (value.start, value.stop, value.step)):
            return FloatDistribution(value.start, value.stop - value.step, step=value.step)
        return IntDistribution(int(value.start), int(value.stop) - int(value.step), step=int(value.step))
    if override.is_interval_sweep():
        log_scale = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(value.start, value.end, log=log_scale)
        return FloatDistribution(float(value.start), float(value.end), log=log_scale)
    raise SweepConfigError(f"hydra.sweeper.params.{override.get_key_element()}: {override.input_line!r} is not "
                           f"a sweep the Optuna sweeper reads; use choice(...), range(...) or interval(a, b)")


def search_space(arguments: list[str]) -> tuple[dict, dict]:
    """Overrides -> ({key: distribution}, {key: fixed value string})."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    space, fixed = {}, {}
    for o in OverridesParser.create().parse_overrides(arguments):
        d = distribution(o)
        (fixed if isinstance(d, str) else space)[o.get_key_element()] = d
    return space, fixed


def population_clash(space: dict, fixed: dict, config: DictConfig) -> str | None:
    """A key the sweep varies that is also a population key of the trials (population.<key>
    set in the config or the fixed overrides): the message, or None."""
    pop = OmegaConf.to_container(config.get("population") or {}, resolve=False) or {}
    given = {k[len("population."):] for k in fixed if k.startswith("population.")}

    def set_in(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict) and not ({"uniform", "loguniform"} & set(v)):
                yield from set_in(v, f"{prefix}{k}.")
            elif v is not None:
                yield f"{prefix}{k}"
    inside = set(set_in(pop)) | given
    for key in space:
        if key in inside:
            return (f"hydra.sweeper.params.{key}: the trials also vary it as population.{key}; vary it in one "
                    f"place: remove population.{key} or drop {key} from the sweeper's params")
        if key.startswith("population."):
            return (f"hydra.sweeper.params.{key}: a population setting cannot be a sweep dimension; sweep the "
                    f"key itself ({key[len('population.'):]}) or keep population.* fixed in the trials")
    return None


def _fail(msg: str) -> None:
    print(f"[jaxdl] config error: {msg}", file=sys.stderr)
    sys.exit(2)


class Sweep:
    """What OptunaSweeper (the Hydra plugin) does; settings are hydra.sweeper.*."""

    def __init__(self, sampler: Any, direction: Any = "minimize", storage: str | None = None,
                 study_name: str | None = None, n_trials: int = 20, n_jobs: int = 1, max_failure_rate: float = 0.0,
                 params: DictConfig | None = None, pruner: str = "none", pruner_kwargs: DictConfig | None = None,
                 trial_value: str = "selected", trial: int | None = None):
        self.sampler, self.direction, self.storage, self.study_name = sampler, direction, storage, study_name
        self.n_trials, self.n_jobs, self.max_failure_rate = n_trials, n_jobs, max_failure_rate
        self.params = dict(params or {})
        self.pruner, self.pruner_kwargs = pruner, dict(pruner_kwargs or {})
        self.trial_value = trial_value
        self.config = self.launcher = None

    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(config=config, hydra_context=hydra_context,
                                                                 task_function=task_function)
        self.sweep_dir = Path(config.hydra.sweep.dir)

    # ------------------------------------------------------------------ checks
    def check(self, space: dict, fixed: dict) -> None:
        """Every setting, before the study is opened: raises SweepConfigError."""
        if isinstance(self.direction, (list, tuple)) or str(self.direction) not in ("minimize", "maximize"):
            raise SweepConfigError(f"hydra.sweeper.direction: {self.direction!r}; jaxdl trials return one value "
                                   f"(the val headline): set minimize or maximize")
        if self.trial_value not in TRIAL_VALUES:
            raise SweepConfigError(f"hydra.sweeper.trial_value: {self.trial_value!r}; use one of "
                                   f"{', '.join(TRIAL_VALUES)}")
        if int(self.n_trials) < 1 or int(self.n_jobs) < 1:
            raise SweepConfigError(f"hydra.sweeper.n_trials/n_jobs: must be >= 1, got {self.n_trials}/{self.n_jobs}")
        if not 0.0 <= float(self.max_failure_rate) <= 1.0:
            raise SweepConfigError(f"hydra.sweeper.max_failure_rate: must be in [0, 1], got {self.max_failure_rate}")
        if not space:
            raise SweepConfigError("hydra.sweeper.params: nothing to search; give e.g. "
                                   "hydra.sweeper.params.optim.lr='tag(log, interval(0.001, 0.1))'")
        make_pruner(self.pruner, self.pruner_kwargs)
        clash = population_clash(space, fixed, self.config)
        if clash:
            raise SweepConfigError(clash)

    def open_study(self, space: dict):
        """The study, created or loaded; refuses a storage that cannot be opened and a study
        of the same name that searched another space or direction."""
        import optuna
        url = storage_url(self.storage, self.pruner, self.sweep_dir)
        try:
            storage = open_storage(url)
        except Exception as e:   # sqlalchemy's and the journal's own errors: one line with the fix
            raise SweepConfigError(f"hydra.sweeper.storage: cannot open {url!r} ({type(e).__name__}: "
                                   f"{str(e).splitlines()[0]}); use sqlite:///<writable path>.db or a "
                                   f"journal file path in a writable directory") from None
        name = study_name(self.study_name)
        if storage is not None and name in [s.study_name for s in optuna.get_all_study_summaries(storage)]:
            old = optuna.load_study(study_name=name, storage=storage)
            if old.direction.name.lower() != str(self.direction):
                raise SweepConfigError(f"hydra.sweeper.study_name: study {name!r} in {url} was run to "
                                       f"{old.direction.name.lower()}; pick another study_name or that direction")
            for t in old.get_trials(deepcopy=False):
                # a RUNNING trial may hold a part of the space: a kill cut its ask short
                cut_short = t.state.name == "RUNNING" and set(t.distributions) < set(space)
                if (set(t.distributions) != set(space) and not cut_short) or any(
                        space.get(k) != d for k, d in t.distributions.items()):
                    raise SweepConfigError(
                        f"hydra.sweeper.study_name: study {name!r} in {url} searched another space "
                        f"(trial {t.number}: {dict(t.distributions)}; now: {space}); pick a new study_name "
                        f"or the same hydra.sweeper.params")
        self.url = url
        return optuna.create_study(study_name=name, storage=storage, sampler=self.sampler,
                                   pruner=make_pruner(self.pruner, self.pruner_kwargs),
                                   direction=str(self.direction), load_if_exists=True)

    # ------------------------------------------------------------------ the sweep
    def sweep(self, arguments: list[str]):
        import optuna
        from optuna.trial import TrialState
        params = [f"{k}={v}" for k, v in self.params.items()] + list(arguments)
        try:
            space, fixed = search_space(params)
            for k in fixed:
                space.pop(k, None)
            self.check(space, fixed)
            if _is_grid(self.sampler):
                self.sampler = self.sampler(search_space=_grid_choices(space))
            study = self.open_study(space)
        except SweepConfigError as e:
            _fail(str(e))
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        self.study, self.space, self.fixed = study, space, fixed
        finished = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
        stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING))
        log.info(f"Study {study.study_name} ({self.url or 'in memory'}): {len(finished)} finished, "
                 f"{len(stale)} left running by an earlier sweep, {self.n_trials} wanted")
        complete_asks(study, space, stale)
        relaunch = [t.number for t in stale if not self._tell_from_run_dir(t)]
        if relaunch:
            self._run(relaunch)
        while (left := self.n_trials - self._finished()) > 0:
            numbers = [study.ask(self.space).number for _ in range(min(left, int(self.n_jobs)))]
            self._run(numbers)
        self._write_records()
        return None

    def _finished(self) -> int:
        return sum(t.state.is_finished() for t in self.study.get_trials(deepcopy=False))

    def _overrides(self, number: int) -> tuple[str, ...]:
        t = self.study.get_trials(deepcopy=False)[number]
        return tuple([f"{k}={_override_value(v)}" for k, v in t.params.items()]
                     + [f"{k}={v}" for k, v in self.fixed.items()] + [f"hydra.sweeper.trial={number}"])

    def _run(self, numbers: list[int]) -> None:
        """Launch the trials (one launch per run of consecutive numbers: job number = trial
        number) and tell the study each one's outcome."""
        runs, cur = [], [numbers[0]]
        for n in numbers[1:]:
            if n == cur[-1] + 1:
                cur.append(n)
            else:
                runs.append(cur)
                cur = [n]
        runs.append(cur)
        for run in runs:
            rets = self.launcher.launch([self._overrides(n) for n in run], initial_job_idx=run[0])
            failures = [n for n, ret in zip(run, rets) if not self._tell(n, ret)]
            self._write_records()
            if len(failures) / len(rets) > float(self.max_failure_rate):
                log.error(f"trials {failures} failed (max_failure_rate={self.max_failure_rate})")
                for ret in rets:
                    ret.return_value      # raises the first job's error, with its traceback
                raise RuntimeError(f"trials {failures} returned no value (max_failure_rate={self.max_failure_rate})")

    def _tell(self, number: int, ret) -> bool:
        """Tell the study trial `number`'s outcome from its JobReturn; False: it failed."""
        from optuna.trial import TrialState
        t = self.study.get_trials(deepcopy=False)[number]
        attrs = self.study._storage.get_trial(t._trial_id).user_attrs
        try:
            value = ret.return_value
            if attrs.get("pruned_at") is not None:
                self.study.tell(number, state=TrialState.PRUNED)
                return True
            self.study.tell(number, float(value))
            return True
        except Exception as e:     # a failed job, or no value (a task without a val split)
            log.warning(f"trial {number} failed: {type(e).__name__}: {e}")
            self.study.tell(number, state=TrialState.FAIL)
            return False

    def _tell_from_run_dir(self, t) -> bool:
        """A RUNNING trial whose job finished (its run dir has summary.json) before the sweep
        was killed: tell it from there. False when it has to run (again)."""
        from optuna.trial import TrialState
        from jaxdl.search.objective import objective
        run_dir = t.user_attrs.get("run_dir")
        if not run_dir or not (Path(run_dir) / "summary.json").exists():
            return False
        s = json.loads((Path(run_dir) / "summary.json").read_text())
        if (s.get("trial") or {}).get("pruned_at") is not None:
            self.study.tell(t.number, state=TrialState.PRUNED)
        elif (v := objective(s)) is not None:
            self.study.tell(t.number, v)
        else:
            self.study.tell(t.number, state=TrialState.FAIL)
        return True

    def _write_records(self) -> None:
        trials = [{"number": t.number, "state": t.state.name, "value": t.value, "params": t.params,
                   "run_dir": t.user_attrs.get("run_dir"), "pruned_at": t.user_attrs.get("pruned_at"),
                   "epochs_reported": len(t.intermediate_values)}
                  for t in self.study.get_trials(deepcopy=False)]
        (self.sweep_dir / "trials.json").write_text(json.dumps(
            {"study_name": self.study.study_name, "storage": self.url, "direction": str(self.direction),
             "n_trials": int(self.n_trials), "pruner": self.pruner, "trial_value": self.trial_value,
             "trials": trials}, indent=1))
        done = [t for t in self.study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
        if done:
            best = self.study.best_trial
            OmegaConf.save(OmegaConf.create({"name": "optuna", "study_name": self.study.study_name,
                                             "best_params": best.params, "best_value": best.value,
                                             "best_trial": best.number}),
                           self.sweep_dir / "optimization_results.yaml")


def _override_value(v) -> str:
    return repr(v) if isinstance(v, float) else str(v)


def _is_grid(sampler) -> bool:
    import functools

    import optuna
    return isinstance(sampler, functools.partial) and sampler.func is optuna.samplers.GridSampler


def _grid_choices(space: dict) -> dict:
    from optuna.distributions import CategoricalDistribution, IntDistribution
    out = {}
    for k, d in space.items():
        if isinstance(d, CategoricalDistribution):
            out[k] = list(d.choices)
        elif isinstance(d, IntDistribution) and not d.log:
            out[k] = list(range(d.low, d.high + 1, d.step))
        else:
            raise SweepConfigError(f"hydra.sweeper.params.{k}: the grid sampler needs discrete values; use "
                                   f"choice(...) or an int range(...)")
    return out
