"""population.* config (a plain dict) -> a validated SearchSpec.

    population.optim.lr=[0.001,0.01]                 a grid: every value
    population.optim.lr={loguniform:[1e-4,1e-1]}     drawn: log-uniform on [1e-4, 1e-1]
    population.model.forget_bias={uniform:[0,2]}     drawn: uniform on [0, 2]
    population.samples=8                             8 draws (from the run's seed)
    population.schedule=halving population.every=2 population.keep=0.5
    population.group=auto                            halving: members trained at once (auto | all | n)
    population.schedule=pbt population.every=2 population.truncate=0.25 population.perturb=[0.8,1.25]

The mapping form is what Hydra's override grammar accepts unquoted; the string form
'loguniform(1e-4,1e-1)' (quoted on the command line, plain in a YAML file) is the same.
Members = grid combinations x samples x train.replicas (jaxdl.search.draw). Every bad
value raises SearchConfigError naming the key and the fix; a setting that would have no
effect (keep without halving, perturb without pbt, samples without a distribution) is
refused, never ignored."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

# the keys a population may vary (one compiled program), and those that change shapes
from jaxdl.config.fields import did_you_mean
from jaxdl.train.population import KEYS, SHAPE_KEYS

DISTRIBUTIONS = ("uniform", "loguniform")
SCHEDULES = ("none", "halving", "pbt")
SETTINGS = ("samples", "schedule", "every", "keep", "truncate", "perturb", "group")
OPTIM_KEYS = tuple(k for k in KEYS if k.startswith("optim."))   # explorable: optimizer state
DEFAULTS = {"keep": 0.5, "truncate": 0.25, "perturb": (0.8, 1.25)}


class SearchConfigError(ValueError):
    """A bad population.* value; the message starts with the key."""


@dataclass(frozen=True)
class Dist:
    """A distribution to draw a member's value from: uniform or log-uniform on [low, high]."""
    kind: str
    low: float
    high: float

    def as_config(self) -> dict:
        return {self.kind: [self.low, self.high]}


@dataclass(frozen=True)
class SearchSpec:
    grid: dict = field(default_factory=dict)        # key -> [values]: every combination
    draws: dict = field(default_factory=dict)       # key -> Dist: `samples` draws
    samples: int = 0
    schedule: str = "none"
    every: int = 0                                  # epochs per rung (halving) / between exploits (pbt)
    keep: float = DEFAULTS["keep"]
    truncate: float = DEFAULTS["truncate"]
    perturb: list = field(default_factory=lambda: list(DEFAULTS["perturb"]))   # a list: as JSON writes it
    group: str | int = "auto"                       # halving: members trained at once (SearchRun.group_size)

    @property
    def varied(self) -> dict:
        """key -> its list or distribution, as summary.json records the population."""
        return {**self.grid, **{k: d.as_config() for k, d in self.draws.items()}}

    def count(self, replicas: int) -> int:
        """The number of members: grid combinations x samples x replicas."""
        n = replicas * (self.samples if self.draws else 1)
        for v in self.grid.values():
            n *= len(v)
        return n

    def summary(self) -> dict:
        """The schedule's settings, as summary.json records them."""
        own = {"halving": {"keep": self.keep}, "pbt": {"truncate": self.truncate, "perturb": list(self.perturb)}}
        return {"schedule": self.schedule, "every": self.every, **own.get(self.schedule, {})}

    def __bool__(self) -> bool:
        return bool(self.grid or self.draws)


def _need(cond: bool, key: str, msg: str) -> None:
    if not cond:
        raise SearchConfigError(f"{key}: {msg}")


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


_CALL = re.compile(r"^\s*(\w+)\s*\(\s*([^,()]+?)\s*,\s*([^,()]+?)\s*\)\s*$")


def _dist(key: str, v) -> Dist:
    """{kind: [low, high]} or 'kind(low,high)' -> Dist."""
    if isinstance(v, str):
        m = _CALL.match(v)
        _need(m is not None, key, f"cannot read {v!r}; write {{loguniform:[1e-4,1e-1]}} or 'loguniform(1e-4,1e-1)'")
        try:
            kind, bounds = m.group(1), [float(m.group(2)), float(m.group(3))]
        except ValueError:
            raise SearchConfigError(f"{key}: the bounds of {v!r} must be numbers") from None
    else:
        _need(len(v) == 1, key, f"a distribution is one of {DISTRIBUTIONS} with [low, high], e.g. "
                                f"{{loguniform:[1e-4,1e-1]}}; got {v!r}")
        (kind, bounds), = v.items()
        _need(isinstance(bounds, list) and len(bounds) == 2 and all(_number(b) for b in bounds), key,
              f"{kind} takes [low, high], two numbers, e.g. {{{kind}:[0.001,0.1]}}; got {bounds!r}")
    _need(kind in DISTRIBUTIONS, key, f"unknown distribution {kind!r}; use one of {DISTRIBUTIONS}")
    low, high = float(bounds[0]), float(bounds[1])
    _need(low < high, key, f"{kind} needs low < high, got [{low}, {high}]")
    if kind == "loguniform":
        _need(low > 0, key, f"loguniform needs low > 0, got {low}; use uniform for a range that reaches 0")
    return Dist(kind, low, high)


def _check_values(key: str, lo: float) -> None:
    """The bound every value of `key` must respect."""
    if key == "optim.lr":
        _need(lo > 0, f"population.{key}", f"values must be > 0, got a low of {lo}")
    if key in ("optim.clip", "optim.weight_decay"):
        _need(lo >= 0, f"population.{key}", f"values must be >= 0, got a low of {lo}")


def _setting(pop: dict, name: str):
    return pop.get(name)


def parse(pop: dict, kind: str, optim: str, model: str | None = None,
          population_kinds: tuple = ("stream", "classify")) -> SearchSpec:
    """The population block of a composed config -> SearchSpec. `kind` is the task's
    trainer kind; `optim` the optimizer's name (weight decay needs adamw), `model` the
    model's (forget_bias needs lstm)."""
    _need(isinstance(pop, dict), "population", "must be a mapping like population.optim.lr=[0.001,0.01]")
    grid, draws = {}, {}
    for group, keys in pop.items():
        if group in SETTINGS:
            continue
        _need(isinstance(keys, dict), f"population.{group}",
              f"must be a mapping, e.g. population.optim.lr=[...]; the settings are {list(SETTINGS)}")
        for k, v in keys.items():
            if v is None:
                continue
            key = f"{group}.{k}"
            name = f"population.{key}"
            _need(key not in SHAPE_KEYS, name,
                  "changes array shapes, so it cannot vary inside one compiled program; sweep it with Hydra "
                  f"multirun (./launch.sh -m {key}=<a>,<b>) or the Optuna sweeper "
                  "(./launch.sh -m hparams_search=echo_optuna)")
            _need(key in KEYS, name, f"cannot vary{did_you_mean(key, KEYS, 'population.')}; a population varies "
                  f"{list(KEYS)}")
            if isinstance(v, list):
                _need(len(v) > 0 and all(_number(x) for x in v), name,
                      f"must be a non-empty list of numbers, e.g. [0.001,0.01], got {v!r}")
                _check_values(key, min(v))
                grid[key] = [float(x) if isinstance(x, float) else x for x in v]
            else:
                _need(isinstance(v, (dict, str)), name,
                      f"must be a list of values or a distribution like {{loguniform:[1e-4,1e-1]}}, got {v!r}")
                d = _dist(name, v)
                _check_values(key, d.low)
                draws[key] = d

    samples = _setting(pop, "samples")
    if samples is not None:
        _need(isinstance(samples, int) and not isinstance(samples, bool) and samples >= 1, "population.samples",
              f"must be an integer >= 1, got {samples!r}")
        _need(bool(draws), "population.samples",
              "draws from distributions, and no population key has one; give one, e.g. "
              "population.optim.lr={loguniform:[1e-4,1e-1]}")
    _need(not draws or samples is not None, "population.samples",
          f"is needed with the distributions of {sorted(draws)}: how many members to draw, e.g. population.samples=8")

    schedule = _setting(pop, "schedule")
    schedule = "none" if schedule is None else schedule
    _need(schedule in SCHEDULES, "population.schedule", f"must be one of {SCHEDULES}, got {schedule!r}")
    every = _setting(pop, "every")
    if schedule == "none":
        for name in ("every", "keep", "truncate", "perturb", "group"):
            _need(_setting(pop, name) is None, f"population.{name}",
                  "has no effect without a schedule; add population.schedule=halving or population.schedule=pbt")
    else:
        _need(bool(grid or draws), "population.schedule",
              f"{schedule} ranks the members of a population; give one, e.g. population.optim.lr=[...]")
        _need(isinstance(every, int) and not isinstance(every, bool) and every >= 1, "population.every",
              f"{schedule} needs the epochs between its decisions: an integer >= 1, e.g. population.every=2; "
              f"got {every!r}")
    other = {"halving": ("truncate", "perturb"), "pbt": ("keep", "group")}.get(schedule, ())
    for name in other:
        _need(_setting(pop, name) is None, f"population.{name}",
              f"is not a setting of schedule={schedule}; "
              f"{name + ' belongs to halving' if name in ('keep', 'group') else name + ' belongs to pbt'}")

    keep = _setting(pop, "keep")
    keep = DEFAULTS["keep"] if keep is None else keep
    _need(_number(keep) and 0 < keep < 1, "population.keep",
          f"must be a fraction in (0, 1), e.g. 0.5 (keep the better half), got {keep!r}")
    truncate = _setting(pop, "truncate")
    truncate = DEFAULTS["truncate"] if truncate is None else truncate
    _need(_number(truncate) and 0 < truncate <= 0.5, "population.truncate",
          f"must be a fraction in (0, 0.5] (the bottom fraction copies the top one), got {truncate!r}")
    perturb = _setting(pop, "perturb")
    perturb = DEFAULTS["perturb"] if perturb is None else perturb
    _need(isinstance(perturb, (list, tuple)) and len(perturb) >= 1 and all(_number(f) and f > 0 for f in perturb),
          "population.perturb", f"must be a list of factors > 0, e.g. [0.8,1.25], got {perturb!r}")
    group = _setting(pop, "group")
    group = "auto" if group is None else group
    _need(group in ("auto", "all") or (isinstance(group, int) and not isinstance(group, bool) and group >= 1),
          "population.group", f"must be auto, all or an integer >= 1 (members trained at once), got {group!r}")
    if schedule == "pbt":
        _need(any(k in OPTIM_KEYS for k in {**grid, **draws}), "population.schedule",
              f"pbt explores optimizer values, and the population varies none; vary one of {list(OPTIM_KEYS)}")

    if grid or draws:
        if kind not in population_kinds:
            from jaxdl.tasks.registry import tasks
            names = ", ".join(t.name for t in tasks().values() if t.kind in population_kinds)
            _need(False, "population", f"this task's trainer ({kind}) trains one fixed configuration; populations "
                  f"run with the tasks of kind {'/'.join(population_kinds)} ({names}); sweep with Hydra multirun")
    if "optim.weight_decay" in grid or "optim.weight_decay" in draws:
        _need(optim == "adamw", "population.optim.weight_decay",
              f"only optim=adamw has a weight decay; add optim=adamw (optimizer now: {optim})")
    if "model.forget_bias" in grid or "model.forget_bias" in draws:
        _need(model == "lstm", "population.model.forget_bias",
              f"only model=lstm has a forget gate (model now: {model})")
    return SearchSpec(grid, draws, samples or 0, schedule, every or 0, float(keep), float(truncate),
                      [float(f) for f in perturb], group)


def rung_sizes(search: SearchSpec, members: int, epochs: int) -> list[tuple[int, int]]:
    """[(epoch, members after it)] of every decision before the last epoch: halving keeps
    max(1, floor(n * keep)) of n; pbt keeps them all."""
    out, n = [], members
    for e in range(search.every, epochs, search.every):
        if search.schedule == "halving":
            n = max(1, math.floor(n * search.keep))
        out.append((e, n))
    return out


def check_run(search: SearchSpec, replicas: int, epochs: int, eval_every: int, mesh_replica: int = 1) -> None:
    """The checks that need the run's size: a decision needs an evaluation on its epoch and
    an epoch after it; pbt copies at least one member; every halving rung keeps a member
    count the mesh's replica axis divides."""
    if search.schedule == "none":
        return
    m = search.count(replicas)
    _need(m >= 2, "population.schedule", f"{search.schedule} needs >= 2 members, the population has {m}")
    _need(search.every < epochs, "population.every",
          f"is {search.every} with train.epochs={epochs}: no decision before the end; set population.every < "
          "train.epochs")
    _need(search.every % eval_every == 0, "population.every",
          f"must be a multiple of train.eval_every={eval_every}: decisions rank members on val at that epoch")
    if search.schedule == "pbt":
        _need(math.floor(m * search.truncate) >= 1, "population.truncate",
              f"{search.truncate} of {m} members copies none; raise it to >= {1 / m:.3g} or add members")
    if search.schedule == "halving" and isinstance(search.group, int):
        _need(search.group <= m, "population.group",
              f"is {search.group}, more than the population's {m} members; set population.group <= {m} or auto")
        _need(search.group % mesh_replica == 0, "population.group",
              f"is {search.group}, which mesh.replica={mesh_replica} does not divide; set a multiple of "
              f"{mesh_replica} or population.group=auto")
    if search.schedule == "halving" and mesh_replica > 1:
        for e, n in rung_sizes(search, m, epochs):
            _need(n % mesh_replica == 0, "population.keep",
                  f"halving keeps {n} members after epoch {e}, which mesh.replica={mesh_replica} does not divide; "
                  f"choose keep/members so every rung is a multiple of {mesh_replica}, or mesh.replica=1")
