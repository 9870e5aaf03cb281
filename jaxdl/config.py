"""Config -> plain, validated values, at the edge. Nothing below the entry point
sees Hydra: `parse(cfg)` checks every key that matters and returns a RunSpec of
plain dataclasses, or raises ConfigError naming the key and the fix.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf

from jaxdl.search import spec as search_spec
from jaxdl.train.optim import NAMES as OPTIMIZERS
from jaxdl.train.tbptt import RESET_POLICIES


class ConfigError(ValueError):
    """A bad config value; the message names the key."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    params: dict


@dataclass(frozen=True)
class RunSpec:
    task: str
    task_kind: str
    task_params: dict
    model: ModelSpec
    optim: dict
    tbptt: dict
    train: dict
    logger: dict
    seed: int
    data_dir: str
    extra: dict = field(default_factory=dict)
    population: dict = field(default_factory=dict)   # "optim.lr" -> [values] or a distribution (summary.json)
    search: search_spec.SearchSpec = field(default_factory=search_spec.SearchSpec)   # jaxdl.search.spec
    # device mesh (jaxdl.run.mesh): {"replica", "data"} (-1: the devices left, resolved by the entry
    # point once the devices are known), "members" and "streams" (the counts they must divide)
    mesh: dict = field(default_factory=lambda: {"replica": 1, "data": 1, "members": 1, "streams": None})
    dist: dict = field(default_factory=dict)         # jax.distributed: coordinator, num_processes, process_id


MODELS_FOR_KIND = {"sequence": ("lstm",), "workflow": ("lstm",), "perceptron": ("perceptron",), "linear": ("linear",),
                   "classify": ("mlp",)}
MODEL_KEYS = {
    "lstm": {"hidden": int, "layers": int, "forget_bias": float, "hoist": (bool, type(None)),
             "dtype": ("float32", "bfloat16"), "remat": ("none", "sqrt")},
    "perceptron": {"iterations": int, "rate": float},
    "linear": {"rule": ("sgd", "batch"), "iterations": int, "rate": float},
    "mlp": {"hidden": list, "hidden_act": ("sigmoid", "relu", "tanh"), "output_act": ("sigmoid", "none"),
            "loss": ("half_sse", "xent"), "backprop": ("delta", "autodiff"),
            "init": ("uniform_0.1", "glorot", "he")},
}


def _registry():
    from jaxdl.tasks import CLASSIC_TASKS, SEQUENCE_TASKS, WORKFLOW_TASKS
    reg = {name: (fn, "sequence") for name, fn in SEQUENCE_TASKS.items()}
    reg.update({name: (fn, "workflow") for name, fn in WORKFLOW_TASKS.items()})
    reg.update(CLASSIC_TASKS)
    return reg


def _need(cond: bool, key: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"{key}: {msg}")


def _int(d: dict, key: str, prefix: str, lo: int = 1) -> int:
    v = d.get(key)
    _need(isinstance(v, int) and not isinstance(v, bool), f"{prefix}.{key}",
          f"must be an integer, got {v!r}")
    _need(v >= lo, f"{prefix}.{key}", f"must be >= {lo}, got {v} (set {prefix}.{key}=<a value >= {lo}>)")
    return v


ZERO_MEANS_ALL = ("limit", "max_chars", "val_length", "val_size")   # task integers where 0 means "none" or "no limit"


def _check_task_params(fn, params: dict, name: str) -> dict:
    sig = inspect.signature(fn)
    from jaxdl.tasks import WORKFLOW_RUN_ARGS, WORKFLOW_TASKS
    skip = WORKFLOW_RUN_ARGS if name in WORKFLOW_TASKS else {"seed", "data_dir"}
    known = [p for p in sig.parameters if p not in skip]
    str_params = {p for p in known if isinstance(sig.parameters[p].default, str)}
    for k, v in params.items():
        _need(k in known, f"task.{k}", f"is not a parameter of task {name!r}; it takes {known}")
        default = sig.parameters[k].default
        if k in str_params:
            _need(isinstance(v, str), f"task.{k}", f"must be a string, got {v!r}")
        elif isinstance(default, bool):
            _need(isinstance(v, bool), f"task.{k}", f"must be true/false, got {v!r}")
        elif isinstance(default, int):
            _need(isinstance(v, int) and not isinstance(v, bool), f"task.{k}",
                  f"must be an integer, got {v!r}")
            lo = 0 if k in ZERO_MEANS_ALL else 1
            _need(v >= lo, f"task.{k}", f"must be >= {lo}, got {v}")
        elif isinstance(default, float):
            _need(isinstance(v, (int, float)) and not isinstance(v, bool), f"task.{k}",
                  f"must be a number, got {v!r}")
            _need(v >= 0, f"task.{k}", f"must be >= 0, got {v}")
    return params


def parse(cfg: DictConfig | dict) -> RunSpec:
    """Validate a composed config and turn it into plain values."""
    c: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    for top in ("task", "model", "optim", "tbptt", "train", "logger"):
        _need(isinstance(c.get(top), dict), top, "is missing; compose the config from conf/config.yaml")
    task = dict(c["task"])
    name = task.pop("name", None)
    reg = _registry()
    _need(name in reg, "task.name", f"unknown task {name!r}; known tasks: {sorted(reg)}")
    fn, kind = reg[name]
    _check_task_params(fn, task, name)

    model = dict(c["model"])
    mname = model.pop("name", None)
    _need(mname in MODEL_KEYS, "model.name", f"unknown model {mname!r}; known models: {sorted(MODEL_KEYS)}")
    # conf/task/<name>.yaml picks the task's natural model; a model given on the command line (or by
    # an experiment) that cannot run the task is refused here, before any compute
    _need(mname in MODELS_FOR_KIND[kind], "model",
          f"model {mname!r} cannot run task {name!r}; use model={'|'.join(MODELS_FOR_KIND[kind])} "
          f"(or leave model= out: task={name} picks model={MODELS_FOR_KIND[kind][0]} by itself)")
    for k, v in model.items():
        _need(k in MODEL_KEYS[mname], f"model.{k}",
              f"is not a setting of model {mname!r}; it takes {sorted(MODEL_KEYS[mname])}")
        kind_ = MODEL_KEYS[mname][k]
        if isinstance(kind_, tuple) and all(isinstance(o, str) for o in kind_):
            _need(v in kind_, f"model.{k}", f"must be one of {kind_}, got {v!r}")
        elif kind_ is list:
            _need(isinstance(v, list) and len(v) > 0 and all(isinstance(i, int) and not isinstance(i, bool)
                                                             and i >= 1 for i in v),
                  f"model.{k}", f"must be a non-empty list of layer sizes >= 1, e.g. [300], got {v!r}")
        elif kind_ is int:
            _int(model, k, "model")
        elif MODEL_KEYS[mname][k] is float:
            _need(isinstance(v, (int, float)) and not isinstance(v, bool), f"model.{k}",
                  f"must be a number, got {v!r}")

    optim = dict(c["optim"])
    _need(optim.get("name") in OPTIMIZERS, "optim.name",
          f"unknown optimizer {optim.get('name')!r}; use one of {OPTIMIZERS}")
    lr = optim.get("lr")
    _need(isinstance(lr, (int, float)) and not isinstance(lr, bool) and lr > 0, "optim.lr",
          f"must be a number > 0, got {lr!r}")
    _need(float(optim.get("clip", 0.0)) >= 0, "optim.clip", "must be >= 0 (0 disables clipping)")

    tb = dict(c["tbptt"])
    _int(tb, "k1", "tbptt")
    _int(tb, "k2", "tbptt")
    _need(tb.get("reset") in RESET_POLICIES, "tbptt.reset",
          f"must be one of {RESET_POLICIES}, got {tb.get('reset')!r}")

    tr = dict(c["train"])
    for k in ("epochs", "replicas", "eval_every", "checkpoint_every", "batch_size"):
        if k in tr:
            _int(tr, k, "train")

    lg = dict(c["logger"])
    _need(lg.get("mode") in ("offline", "online", "disabled"), "logger.mode",
          f"must be offline, online or disabled, got {lg.get('mode')!r}")

    seed = c.get("seed")
    _need(isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0, "seed",
          f"must be a non-negative integer, got {seed!r}")
    search = _check_population(c.get("population") or {}, kind, optim)
    mesh = _check_mesh(c.get("mesh") or {}, kind, fn, task, tr.get("replicas", 1), search)
    try:
        search_spec.check_run(search, tr.get("replicas", 1), tr.get("epochs", 1), tr.get("eval_every", 1),
                              mesh["replica"] if mesh["replica"] > 0 else 1)
    except search_spec.SearchConfigError as err:
        raise ConfigError(str(err)) from None
    dist = _check_dist(c.get("dist") or {})
    known_top = {"task", "model", "optim", "tbptt", "train", "logger", "seed", "data_dir", "experiment",
                 "population", "mesh", "dist"}
    for k in c:
        _need(k in known_top, k, f"is not a config key; known keys: {sorted(known_top)}")
    return RunSpec(name, kind, task, ModelSpec(mname, model), optim, tb, tr, lg, seed,
                   str(c.get("data_dir", "")), population=search.varied, search=search, mesh=mesh, dist=dist)


STREAM_KEYS = ("streams", "batch")   # the parameter of a TBPTT task that is its batches' B (split along mesh.data)


def _check_mesh(mesh: dict, kind: str, fn, task: dict, replicas: int, search) -> dict:
    """mesh.replica / mesh.data -> {"replica", "data", "members", "streams"}; the checks that
    need no devices (jaxdl.run.mesh.check_mesh). The entry point resolves -1 against the
    devices after jax.distributed is set up."""
    from jaxdl.run.mesh import MeshError, check_mesh
    _need(isinstance(mesh, dict), "mesh", "must be a mapping like mesh.replica=4 mesh.data=1")
    for k in mesh:
        _need(k in ("replica", "data"), f"mesh.{k}", "is not a mesh setting; the mesh has replica and data")
    members = search.count(replicas)
    streams = None
    if kind == "sequence":
        params = inspect.signature(fn).parameters
        key = next((k for k in STREAM_KEYS if k in params), None)
        streams = task.get(key, params[key].default) if key else None
    out = {"replica": mesh.get("replica", 1), "data": mesh.get("data", 1), "members": members, "streams": streams}
    try:
        check_mesh(out["replica"], out["data"], members, streams)
    except MeshError as err:
        raise ConfigError(str(err)) from None
    return out


def _check_dist(dist: dict) -> dict:
    """dist.coordinator (host:port of process 0), dist.num_processes, dist.process_id: all
    three or none (none: one process, or what SLURM / a TPU pod says)."""
    _need(isinstance(dist, dict), "dist", "must be a mapping like dist.coordinator=host:port")
    for k in dist:
        _need(k in ("coordinator", "num_processes", "process_id"), f"dist.{k}",
              "is not a dist setting; dist has coordinator, num_processes and process_id")
    coord, n, pid = dist.get("coordinator"), dist.get("num_processes"), dist.get("process_id")
    if coord is None and n is None and pid is None:
        return {}
    _need(coord is not None, "dist.coordinator",
          "is needed with dist.num_processes/dist.process_id: the host:port of process 0, e.g. localhost:12355")
    host, _, port = str(coord).rpartition(":")
    _need(bool(host) and port.isdigit() and 0 < int(port) < 65536, "dist.coordinator",
          f"must be host:port (e.g. localhost:12355), got {coord!r}")
    _need(isinstance(n, int) and not isinstance(n, bool) and n >= 1, "dist.num_processes",
          f"must be an integer >= 1 with dist.coordinator, got {n!r}")
    _need(isinstance(pid, int) and not isinstance(pid, bool) and 0 <= pid < n, "dist.process_id",
          f"must be an integer in 0..{n - 1} (dist.num_processes={n}), got {pid!r}")
    return {"coordinator": str(coord), "num_processes": n, "process_id": pid}


POPULATION_KINDS = ("sequence", "classify")   # task kinds whose trainers take population values


def _check_population(pop: dict, kind: str, optim: dict) -> search_spec.SearchSpec:
    """population.* -> SearchSpec: grid lists, distributions, samples, schedule (jaxdl.search.spec)."""
    try:
        return search_spec.parse(pop, kind, optim, POPULATION_KINDS)
    except search_spec.SearchConfigError as err:
        raise ConfigError(str(err)) from None
