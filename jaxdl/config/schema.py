"""The typed config: one dataclass per config group, each field declared once with its
type, default and allowed values (jaxdl.config.fields.setting). conf/*.yaml hold values
only; jaxdl.configure merges them into these classes at the entry point and everything
below takes the objects (a trainer takes model / optim / tbptt / train configs).

The task groups' classes live beside their builders (jaxdl.tasks.*: EchoConfig, ...).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional

from jaxdl.config.fields import setting

OPTIMIZERS = ("sgd", "adam", "rmsprop", "adamw")
RESET_POLICIES = ("batch", "epoch", "never")
ESTIMATORS = ("tbptt", "rtrl", "uoro", "snap1", "zucchet")
# init options; a cell lists those it takes
CELL_OPTIONS = ("forget_bias", "candidate_init", "r_min", "r_max", "max_phase")


@dataclass(frozen=True)
class RecurrentConfig:
    """model=lstm | gru | rnn | lru | mingru | minlstm: a stack of recurrent layers
    (jaxdl.models.cell) with a Dense readout."""
    name: str = setting("lstm", doc="the cell: a module of jaxdl.models with a CELL")
    hidden: int = setting(64, ge=1, doc="units per layer")
    layers: int = setting(1, ge=1, doc="stacked layers")
    forget_bias: Optional[float] = setting(None, doc="LSTM only: the forget gate's initial bias (null: 1.0)")
    candidate_init: Optional[str] = setting(None, choices=("orthogonal", "identity"),
                                            doc="LSTM only: the candidate (g) block of the recurrent weights "
                                                "starts orthogonal or as the identity (null: orthogonal)")
    hoist: Optional[bool] = setting(None, doc="input projection outside the scan (null: GPU yes, CPU no)")
    dtype: str = setting("float32", choices=("float32", "bfloat16"),
                         doc="matmul inputs; params, state and accumulation stay float32")
    remat: str = setting("none", choices=("none", "sqrt"), doc="recompute activations from sqrt(k2) checkpoints")
    block: str = setting("none", choices=("none", "glu", "mlp"),
                         doc="each layer inside the LRU paper's block: + position-wise GLU or MLP, residual")
    conv: int = setting(0, ge=0, doc="blocks only: a causal depthwise convolution of this many steps before "
                                     "the recurrence (0: none)")
    scan: str = setting("auto", choices=("auto", "sequential", "parallel"),
                        doc="linear cells: lax.scan or associative_scan (auto: the faster on this platform)")
    r_min: Optional[float] = setting(None, ge=0, lt=1, doc="LRU only: smallest initial |lambda| (null: 0)")
    r_max: Optional[float] = setting(None, gt=0, doc="LRU only: largest initial |lambda|, <= 1 (null: 1)")
    max_phase: Optional[float] = setting(None, gt=0, doc="LRU only: largest initial phase of lambda (null: 2 pi)")


@dataclass(frozen=True)
class MLPConfig:
    """model=mlp: the feed-forward classifier (the source text's 784-300-10 network)."""
    name: str = "mlp"
    hidden: List[int] = setting(factory=lambda: [300], each_ge=1, doc="hidden layer sizes")
    hidden_act: str = setting("sigmoid", choices=("sigmoid", "relu", "tanh"))
    output_act: str = setting("sigmoid", choices=("sigmoid", "none"))
    loss: str = setting("half_sse", choices=("half_sse", "xent"))
    backprop: str = setting("delta", choices=("delta", "autodiff"), doc="the delta rule (式3-式10) or jax.grad")
    init: str = setting("uniform_0.1", choices=("uniform_0.1", "glorot", "he"))


@dataclass(frozen=True)
class PerceptronConfig:
    """model=perceptron: the perceptron rule, `iterations` passes over the samples."""
    name: str = "perceptron"
    iterations: int = setting(10, ge=1, doc="passes over the samples (the source text's epochs)")
    rate: float = setting(0.1, gt=0)


@dataclass(frozen=True)
class LinearConfig:
    """model=linear: the linear unit, per-sample (sgd) or batch gradient descent."""
    name: str = "linear"
    rule: str = setting("sgd", choices=("sgd", "batch"))
    iterations: int = setting(10, ge=1)
    rate: float = setting(0.01, gt=0)


FEEDFORWARD_MODELS = {"mlp": MLPConfig, "perceptron": PerceptronConfig, "linear": LinearConfig}


@dataclass(frozen=True)
class OptimConfig:
    """optim=sgd | adam | adamw | rmsprop (optax), with global-norm clipping."""
    name: str = setting("adam", choices=OPTIMIZERS)
    lr: float = setting(0.01, gt=0)
    clip: float = setting(0.0, ge=0, doc="global-norm clipping; 0 disables")
    momentum: float = setting(0.0, ge=0, lt=1, doc="sgd only")
    weight_decay: float = setting(0.0, ge=0, doc="adamw only")


@dataclass(frozen=True)
class TBPTTConfig:
    """Every k1 steps, BPTT over the last k2 steps (jaxdl.train.tbptt)."""
    k1: int = setting(10, ge=1, doc="forward steps between updates")
    k2: int = setting(20, ge=1, doc="steps of BPTT per update")
    reset: str = setting("epoch", choices=RESET_POLICIES, doc="when the recurrent state goes back to zero")


@dataclass(frozen=True)
class EstimatorConfig:
    """estimator=tbptt | rtrl | uoro | snap1 | zucchet: how a stream task's gradient is computed."""
    name: str = setting("tbptt", choices=ESTIMATORS)
    every: int = setting(10, ge=1, doc="online estimators: an update every `every` steps")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = setting(20, ge=1)
    replicas: int = setting(1, ge=1, doc="seeds trained together by vmap in one program")
    eval_every: int = setting(1, ge=1, doc="epochs")
    checkpoint_every: int = setting(5, ge=1, doc="epochs")
    shuffle: bool = setting(True, doc="independent samples only; stateful training never shuffles")
    batch_size: int = setting(32, ge=1, doc="feed-forward and Keras-style tasks")
    stop_on_rise: bool = setting(False, doc="stop when the monitored val metric gets worse")
    progress: bool = setting(True, doc="a progress bar")
    chunk_s: Optional[float] = setting(2.0, gt=0, doc="seconds per chunk of updates (stream tasks): stop requests "
                                                      "and mid-epoch checkpoints wait at most this; null: one chunk "
                                                      "per epoch")
    checkpoint_every_s: Optional[float] = setting(None, gt=0, doc="also checkpoint mid-epoch this often (null: off)")
    resume: str = setting("check", choices=("check", "amend"),
                          doc="check: a relaunch with another config is refused; amend: continue, recording it")


@dataclass(frozen=True)
class LoggerConfig:
    mode: str = setting("offline", choices=("offline", "online", "disabled"))
    project: str = "jaxdl"
    group: Optional[str] = None
    tags: List[str] = setting(factory=list)


@dataclass(frozen=True)
class MeshConfig:
    """Devices: members split along `replica`, a stream batch's B along `data` (-1: the rest)."""
    replica: int = setting(1, ge=-1)
    data: int = setting(1, ge=-1)
    cpu_threads: int = setting(0, ge=0, doc="threads of XLA:CPU's intra-op pool (PJRT_NPROC); 0: one for a "
                                            "recurrent model on one device with k2 x streams x hidden^2 "
                                            "under 2^23 (the default job), else every core")


@dataclass(frozen=True)
class DistConfig:
    """jax.distributed: all three for a run started by hand, or none."""
    coordinator: Optional[str] = None
    num_processes: Optional[int] = None
    process_id: Optional[int] = None


@dataclass(frozen=True)
class Config:
    """A parsed, checked run config (jaxdl.configure.parse)."""
    task: Any                  # the task's config class (jaxdl.tasks.*Config)
    kind: str                  # the task's kind: stream | workflow | classify | perceptron | linear
    model: Any                 # RecurrentConfig or one of FEEDFORWARD_MODELS
    optim: OptimConfig
    tbptt: TBPTTConfig
    estimator: EstimatorConfig
    train: TrainConfig
    logger: LoggerConfig
    seed: int
    data_dir: str
    population: dict           # "optim.lr" -> [values] (jaxdl.train.population)
    # the mesh: replica/data (-1 resolved by the entry point against the devices), members and
    # streams (the counts they must divide); dist: {} or coordinator/num_processes/process_id
    mesh: dict
    dist: dict
    search: Any = None         # jaxdl.search.spec.SearchSpec: grid, draws, samples, schedule (jaxdl.configure)
