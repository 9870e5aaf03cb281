"""Composed Hydra config -> a typed, checked Config (jaxdl.config.schema), once, at the
entry point. Nothing below sees Hydra or OmegaConf.

Each group is merged into its schema class (OmegaConf structured configs: an unknown
key or a value of the wrong type is refused naming the key), then every declared bound
and choice is enforced (jaxdl.config.fields.check), then the checks across groups: the
model fits the task, a population varies what one program can vary, the mesh divides
the members and streams, and every key given on the command line is one the chosen
task's trainer uses (a setting is never accepted and then ignored).
"""
from __future__ import annotations

import dataclasses
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from jaxdl.config.fields import ConfigError, check, did_you_mean, settings_of
from jaxdl.search import spec as search_spec
from jaxdl.config.schema import (FEEDFORWARD_MODELS, Config, DistConfig, EstimatorConfig, LoggerConfig,
                                 MeshConfig, OptimConfig, RecurrentConfig, TBPTTConfig, TrainConfig)

__all__ = ["ConfigError", "parse", "effective"]

# the models each kind of task runs (recurrent: every registered cell)
MODEL_KINDS = {"stream": "recurrent", "workflow": "recurrent", "classify": ("mlp",),
               "perceptron": ("perceptron",), "linear": ("linear",)}
STREAM_KEYS = ("streams", "batch")      # the task setting that is a stream batch's B (split along mesh.data)
TOP = ("task", "model", "optim", "tbptt", "estimator", "train", "logger", "seed", "data_dir", "experiment",
       "population", "mesh", "dist")

# What each kind's trainer reads. A key given on the command line outside these is refused
# (with the reason); keys set by yaml defaults are not "given".
_ALL_TRAIN = {"epochs", "replicas", "eval_every", "checkpoint_every", "progress", "stop_on_rise",
              "checkpoint_every_s", "resume"}
USES = {
    "stream": {"task": "*", "model": "*", "optim": "*", "tbptt": "*", "estimator": "*",
               "train": _ALL_TRAIN | {"shuffle", "chunk_s"}, "population": "*", "mesh": "*"},
    "workflow": {"task": "*", "model": {"name", "hidden", "layers", "forget_bias"}, "optim": "*",
                 "train": _ALL_TRAIN | {"shuffle", "batch_size"}},
    "classify": {"task": "*", "model": "*", "optim": "*", "train": _ALL_TRAIN | {"shuffle", "batch_size"},
                 "population": "*"},
    "perceptron": {"task": "*", "model": "*", "train": _ALL_TRAIN - {"epochs"}},
    "linear": {"task": "*", "model": "*", "train": _ALL_TRAIN - {"epochs"}},
}
# read by every kind (the mesh's own checks refuse what a trainer cannot split)
EVERYWHERE = {"seed", "data_dir", "logger", "experiment", "dist", "mesh", "hydra"}
WHY_NOT = {
    "tbptt": "TBPTT settings act on the stream tasks ({stream}) only",
    "estimator": "gradient estimators act on the stream tasks ({stream}) only",
    "optim": "the perceptron and the linear unit follow their own rule at model.rate",
    "train.epochs": "the perceptron and the linear unit count passes in model.iterations",
    "train.batch_size": "a stream task's batch is its streams (task.streams / task.batch)",
    "model.hoist": "the Keras-style tasks run their own layers (no hoist, dtype or remat there)",
    "model.dtype": "the Keras-style tasks run their own layers (no hoist, dtype or remat there)",
    "model.remat": "the Keras-style tasks run their own layers (no hoist, dtype or remat there)",
    "population": "this task's trainer trains one fixed configuration; sweep with Hydra multirun (-m)",
}


def why_not(key: str) -> str | None:
    """WHY_NOT[key] with {stream} filled by the registered stream tasks' names."""
    from jaxdl.tasks import tasks
    why = WHY_NOT.get(key)
    stream = ", ".join(sorted(n for n, t in tasks().items() if t.kind == "stream"))
    return why and why.format(stream=stream)


_WORDS = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string",
          "List[int]": "a list of integers, e.g. [300]", "List[str]": "a list of strings"}


def _typed(cls, values: Any, prefix: str, what: str):
    """Merge `values` (a mapping) into schema class `cls` and build the instance; the
    declared bounds and choices are checked. Errors name `prefix.key`."""
    if not isinstance(values, dict):
        raise ConfigError(f"{prefix}: must be a mapping of settings, got {values!r}")
    try:
        node = OmegaConf.merge(OmegaConf.structured(cls), values)
        obj = OmegaConf.to_object(node)
    except ConfigKeyError as e:
        key = str(e.key) if getattr(e, "key", None) is not None else str(e).split("'")[1]
        hint = did_you_mean(key, settings_of(cls), f"{prefix}.")
        raise ConfigError(f"{prefix}.{key}: is not a setting of {what}{hint}; it takes {settings_of(cls)}") from None
    except ValidationError as e:
        key = e.full_key or ""
        field = next((f for f in dataclasses.fields(cls) if f.name == key.split(".")[0]), None)
        want = _WORDS.get(str(field.type).replace("Optional[", "").rstrip("]"), str(field.type)) if field else "?"
        raise ConfigError(f"{prefix}.{key}: must be {want}, got {e.value!r}") from None
    except OmegaConfBaseException as e:
        raise ConfigError(f"{prefix}: {e}") from None
    check(obj, prefix)
    return obj


def _cells() -> tuple[str, ...]:
    return tuple(sorted(cells_of()))


def cells_of() -> dict:
    from jaxdl.models.cell import cells
    return cells()


def _model(values: dict, kind: str, task: str):
    name = values.get("name")
    recurrent = _cells()
    known = {**{n: RecurrentConfig for n in recurrent}, **FEEDFORWARD_MODELS}
    if name not in known:
        raise ConfigError(f"model.name: unknown model {name!r}; known models: {sorted(known)}")
    fits = recurrent if MODEL_KINDS[kind] == "recurrent" else MODEL_KINDS[kind]
    if name not in fits:
        raise ConfigError(f"model: model {name!r} cannot run task {task!r}; use model={'|'.join(fits)} "
                          f"(or leave model= out: task={task} picks model={fits[0]} by itself)")
    m = _typed(known[name], values, "model", f"model {name!r}")
    if isinstance(m, RecurrentConfig):
        from jaxdl.config.schema import CELL_OPTIONS
        from jaxdl.models.cell import get_cell
        cell = get_cell(name)
        if m.forget_bias is not None and "forget_bias" not in cell.options:
            raise ConfigError(f"model.forget_bias: model {name!r} has no forget gate; only model=lstm takes it "
                              "(remove model.forget_bias)")
        for opt in CELL_OPTIONS:
            if getattr(m, opt) is not None and opt not in cell.options:
                takers = sorted(n for n, c in cells_of().items() if opt in c.options)
                raise ConfigError(f"model.{opt}: model {name!r} does not take it; only model={'|'.join(takers)} "
                                  f"does (remove model.{opt})")
        if m.scan not in ("auto", *cell.forms):
            raise ConfigError(f"model.scan={m.scan}: model {name!r} has the forms {list(cell.forms)} only (it is "
                              "not linear in its state); set model.scan=auto")
        if m.conv and m.block == "none":
            raise ConfigError(f"model.conv={m.conv}: the causal convolution sits inside a block (before its "
                              "recurrence); set model.block=glu|mlp or model.conv=0")
        if m.hoist is False and cell.elementwise is not None:
            raise ConfigError(f"model.hoist=false: model {name!r} projects its inputs for all steps at once (its "
                              "recurrence is element-wise, no matmul to keep in the loop); remove model.hoist")
    return m


def _optim(values: dict) -> OptimConfig:
    o = _typed(OptimConfig, values, "optim", "the optimizer")
    if o.momentum and o.name != "sgd":
        raise ConfigError(f"optim.momentum: only optim=sgd has a momentum setting (optimizer now: {o.name})")
    if o.weight_decay and o.name != "adamw":
        raise ConfigError(f"optim.weight_decay: only optim=adamw has a weight decay; add optim=adamw "
                          f"(optimizer now: {o.name})")
    return o


def _given(overrides) -> list[str]:
    """The dotted keys (or group names) that command-line overrides set."""
    keys = []
    for o in overrides or ():
        key = o.split("=", 1)[0].lstrip("+~")
        keys.append(key.split("@")[0])
    return keys


def _check_uses(keys: list[str], kind: str, task: str) -> None:
    uses = USES[kind]
    for key in keys:
        group, _, rest = key.partition(".")
        if group in EVERYWHERE or group not in TOP:
            continue
        allowed = uses.get(group)
        sub = rest.split(".")[0]
        if allowed == "*" or (allowed and (not rest or sub in allowed)):
            continue
        why = why_not(f"{group}.{sub}") or why_not(group) or "its trainer does not read it"
        raise ConfigError(f"{key}: task {task!r} does not use this setting: {why}; remove {key}")


def _emits(cell) -> bool:
    """Whether an element-wise cell's carry holds more than its state (an output that mixes
    units within a step, as the LRU's y = Re(C h) + D x)."""
    if cell.elementwise is None:
        return False
    import jax
    p = cell.init(jax.random.PRNGKey(0), 1, 2)
    carry = cell.carry(p, 1)
    return len(carry) != len(cell.elementwise(p).split(carry))


def _check_stream(keys: list[str], task, tbptt: TBPTTConfig, estimator: EstimatorConfig, model) -> None:
    """What a stream task's settings do depends on the estimator and on the task: refuse
    the given keys that would not act."""
    required = getattr(type(task), "REQUIRED_RESET", None)
    if required and "tbptt.reset" in keys and tbptt.reset != required:
        raise ConfigError(f"tbptt.reset={tbptt.reset}: task {task.name!r} holds independent sequences and always "
                          f"resets the state every {required}; remove tbptt.reset")
    if "train.shuffle" in keys and (required or tbptt.reset) != "batch":
        raise ConfigError(f"train.shuffle: stateful training (tbptt.reset={tbptt.reset}) never shuffles: the "
                          "streams are one long sequence in order; shuffling acts with tbptt.reset=batch")
    steps = task.steps() if required == "batch" and hasattr(task, "steps") else None
    if steps is not None and estimator.name == "tbptt":
        for key, v in (("tbptt.k1", tbptt.k1), ("tbptt.k2", tbptt.k2)):
            if v > steps:
                raise ConfigError(f"{key}={v}: is longer than the sequences of task {task.name!r} ({steps} steps; the "
                                  f"state resets every sequence, so the window would be padding); set {key} <= "
                                  f"{steps} (tbptt.k1=tbptt.k2={steps} is full BPTT)")
    if estimator.name == "tbptt" and "estimator.every" in keys:
        raise ConfigError("estimator.every: acts with the online estimators (estimator=rtrl|uoro|snap1); "
                          "TBPTT updates every tbptt.k1 steps")
    if estimator.name in ("snap1", "zucchet"):
        from jaxdl.models.cell import get_cell
        cell = get_cell(model.name)
        elementwise = cell.elementwise is not None
        if estimator.name == "snap1" and (_emits(cell) or model.block != "none"):
            raise ConfigError(f"estimator=snap1: model={model.name} with model.block={model.block} has outputs that "
                              "mix units within a step (no per-unit sparsity pattern); use estimator=zucchet for an "
                              "element-wise cell (SnAp-1's pattern on its state, exact per layer) or model.block=none")
        if estimator.name == "zucchet" and not elementwise:
            raise ConfigError(f"estimator=zucchet: model={model.name} is not element-wise in its state; use "
                              "model=lru|mingru|minlstm, or estimator=snap1 for a dense cell")
    if estimator.name != "tbptt":
        for k in ("tbptt.k1", "tbptt.k2"):
            if k in keys:
                raise ConfigError(f"{k}: estimator={estimator.name} truncates nothing and updates every "
                                  f"estimator.every steps; remove {k} (or use estimator=tbptt)")


def _check_population(pop: dict, kind: str, optim: OptimConfig, model) -> search_spec.SearchSpec:
    """population.* -> SearchSpec: grid lists, distributions, samples, schedule (jaxdl.search.spec)."""
    try:
        return search_spec.parse(pop, kind, optim.name, getattr(model, "name", None),
                                 population_kinds=("stream", "classify"))
    except search_spec.SearchConfigError as err:
        raise ConfigError(str(err)) from None


def _check_mesh(mesh: MeshConfig, kind: str, task, replicas: int, search, model, tbptt) -> dict:
    """-> {"replica", "data", "members", "streams", "cpu_threads", "cpu_threads_setting"}; the
    checks that need no devices (jaxdl.run.mesh.check_mesh), cpu_threads resolved for the model
    (jaxdl.run.mesh.cpu_threads_for) beside the setting it came from (0: auto). The entry point
    resolves -1 once the devices are known."""
    from jaxdl.run.mesh import MeshError, check_mesh, cpu_threads_for
    from jaxdl.tasks import tasks
    members = search.count(replicas)
    streams = None
    if kind == "stream":
        key = next((k for k in STREAM_KEYS if hasattr(task, k)), None)
        streams = getattr(task, key) if key else None
    out = {"replica": mesh.replica, "data": mesh.data, "members": members, "streams": streams,
           "cpu_threads": cpu_threads_for(mesh.cpu_threads,
                                          model.hidden if isinstance(model, RecurrentConfig) else None,
                                          mesh.replica * mesh.data, None if streams is None else tbptt.k2 * streams),
           "cpu_threads_setting": mesh.cpu_threads}
    try:
        check_mesh(out["replica"], out["data"], members, streams,
                   tuple(sorted(n for n, t in tasks().items() if t.kind == "stream")))
    except MeshError as err:
        raise ConfigError(str(err)) from None
    return out


def _check_dist(d: DistConfig) -> dict:
    """All three of coordinator / num_processes / process_id, or none (one process, or
    what SLURM / a TPU pod says)."""
    coord, n, pid = d.coordinator, d.num_processes, d.process_id
    if coord is None and n is None and pid is None:
        return {}
    if coord is None:
        raise ConfigError("dist.coordinator: is needed with dist.num_processes/dist.process_id: the host:port "
                          "of process 0, e.g. localhost:12355")
    host, _, port = str(coord).rpartition(":")
    if not (host and port.isdigit() and 0 < int(port) < 65536):
        raise ConfigError(f"dist.coordinator: must be host:port (e.g. localhost:12355), got {coord!r}")
    if n is None or n < 1:
        raise ConfigError(f"dist.num_processes: must be an integer >= 1 with dist.coordinator, got {n!r}")
    if pid is None or not 0 <= pid < n:
        raise ConfigError(f"dist.process_id: must be an integer in 0..{n - 1} (dist.num_processes={n}), got {pid!r}")
    return {"coordinator": str(coord), "num_processes": n, "process_id": pid}


def parse(cfg: DictConfig | dict, overrides=()) -> Config:
    """Validate a composed config and return it typed. `overrides`: the command line's
    overrides (Hydra's), whose keys must be ones the chosen task uses."""
    from jaxdl.tasks import tasks
    c: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    for k in c:
        if k not in TOP and k != "hydra":
            raise ConfigError(f"{k}: is not a config key{did_you_mean(k, TOP)}; known keys: {sorted(TOP)}")
    for top in ("task", "model", "optim", "tbptt", "train", "logger"):
        if not isinstance(c.get(top), dict):
            raise ConfigError(f"{top}: is missing; compose the config from conf/config.yaml")
    name = c["task"].get("name")
    known = tasks()
    if name not in known:
        raise ConfigError(f"task.name: unknown task {name!r}; known tasks: {sorted(known)}")
    entry = known[name]
    task = _typed(entry.config, c["task"], "task", f"task {name!r}")
    if hasattr(task, "check"):                  # the task's own rules across its settings
        task.check()
    seed = c.get("seed")
    if not (isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0):
        raise ConfigError(f"seed: must be a non-negative integer, got {seed!r}")
    model = _model(c["model"], entry.kind, name)
    optim = _optim(c["optim"])
    tbptt = _typed(TBPTTConfig, c["tbptt"], "tbptt", "TBPTT")
    estimator = _typed(EstimatorConfig, c.get("estimator") or {}, "estimator", "the gradient estimator")
    train = _typed(TrainConfig, c["train"], "train", "training")
    logger = _typed(LoggerConfig, c["logger"], "logger", "the logger")
    mesh_cfg = _typed(MeshConfig, c.get("mesh") or {}, "mesh", "the mesh (it has replica, data and cpu_threads)")
    dist = _check_dist(_typed(DistConfig, c.get("dist") or {}, "dist",
                              "dist (it has coordinator, num_processes and process_id)"))
    search = _check_population(c.get("population") or {}, entry.kind, optim, model)
    mesh = _check_mesh(mesh_cfg, entry.kind, task, train.replicas, search, model, tbptt)
    try:
        search_spec.check_run(search, train.replicas, train.epochs, train.eval_every, max(mesh["replica"], 1))
    except search_spec.SearchConfigError as err:
        raise ConfigError(str(err)) from None
    given = _given(overrides)
    _check_uses(given, entry.kind, name)
    if entry.kind == "stream":
        _check_stream(given, task, tbptt, estimator, model)
    return Config(task, entry.kind, model, optim, tbptt, estimator, train, logger, seed,
                  str(c.get("data_dir", "")), search.varied, mesh, dist, search)


def effective(config: Config) -> dict:
    """The typed, resolved settings as plain values (summary.json, the wandb run config)."""
    out = {}
    for f in dataclasses.fields(config):
        v = getattr(config, f.name)
        out[f.name] = dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v
    return out
