"""The TBPTT trainer: a sequence task's pure training functions for jaxdl's one
training loop (jaxdl.train.loop), and the stateful evaluation of a stream.

Everything here takes plain values; config parsing happens at the entry point.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.models.rnn import rnn_apply, rnn_carry, rnn_init
from jaxdl.objectives import get_objective
from jaxdl.run.budget import check_window
from jaxdl.tasks.base import SeqTask
from jaxdl.train.optim import optimizers
from jaxdl.train.loop import Trainer
from jaxdl.train.tbptt import Batch, make_tbptt


def evaluate_stream(apply_fn, metrics_fn, init_carry, reset, params, batches: Batch) -> dict:
    """Forward pass over batches [N, T, B, ...] from a zero state, carrying the
    state across batches unless reset == "batch"; weighted means of the metrics."""
    B = batches.mask.shape[2]

    def body(carry, b):
        if reset == "batch":
            carry = init_carry(params, B)
        preds, carry = apply_fn(params, b.x, carry, b.mask)
        m = metrics_fn(preds, b.y)
        return carry, ({k: (v * b.weight).sum() for k, v in m.items()}, b.weight.sum())

    _, (sums, w) = jax.lax.scan(body, init_carry(params, B), batches)
    return {k: v.sum() / jnp.maximum(w.sum(), 1.0) for k, v in sums.items()}


def _shuffle(batches: Batch, rng: np.random.Generator) -> Batch:
    """Permute independent sequences across batches (only for reset='batch')."""
    N, T, B = batches.mask.shape

    def perm(a, p):
        flat = np.asarray(a).swapaxes(1, 2).reshape(N * B, T, *a.shape[3:])[p]
        return flat.reshape(N, B, T, *a.shape[3:]).swapaxes(1, 2)
    p = rng.permutation(N * B)
    return jax.tree.map(lambda a: perm(a, p), batches)


def tbptt_trainer(task: SeqTask, *, seed: int = 0, hidden: int = 64, layers: int = 1,
                  forget_bias: float = 1.0, optimizer: str = "adam", lr: float = 1e-2, clip: float = 0.0,
                  k1: int = 10, k2: int = 10, reset: str = "epoch", shuffle: bool = True,
                  hoist: bool | None = None, weight_decay: float = 0.0, injectable: bool = False,
                  dtype: str = "float32", remat: str = "none") -> Trainer:
    """A Trainer (jaxdl.train.loop) for a sequence task: one member's state is
    {"params", "opt_state", "seq": (carry, tail)}; one epoch is `make_tbptt`'s run_epoch,
    one jitted scan over the updates of all batches; splits are evaluated statefully
    (evaluate_stream). With reset="batch" and shuffle, the independent sequences are
    reshuffled across batches every epoch (numpy, seeded by (seed, epoch)). injectable: the
    optimizer's values are state, so a population's members (hp) each carry their own.
    dtype "bfloat16": bf16 matmul inputs, f32 accumulation, state and weights; remat "sqrt":
    activations recomputed in the backward pass from sqrt-length checkpoints (jaxdl.models.remat)."""
    reset = task.reset or reset
    objective = get_objective(task.loss)
    opt, member_optimizer = optimizers(optimizer, lr, clip, weight_decay, injectable)
    cdt = {"float32": None, "bfloat16": jnp.bfloat16}[dtype]
    rm = None if remat == "none" else remat
    model = lambda p, x, c, m: rnn_apply(p, x, c, m, hoist=hoist, compute_dtype=cdt, remat=rm)
    apply_fn = (lambda p, x, c, m: model(p, jax.nn.one_hot(x, task.in_dim), c, m)) if task.token_inputs else model
    N, T, B = task.train.mask.shape
    check_window(k1, k2, N, T)
    eng = make_tbptt(apply_fn, objective, opt, rnn_carry, T, k1, k2, reset=reset)
    first = jax.tree.map(lambda a: jnp.asarray(a[0]), task.train)
    train_static = jax.tree.map(jnp.asarray, task.train)

    def init(key, hp):
        params = rnn_init(key, task.in_dim, hidden, task.out_dim, layers, "lstm",
                          forget_bias=hp.get("model.forget_bias", forget_bias))
        opt_m = member_optimizer(hp) if injectable else opt
        return {"params": params, "opt_state": opt_m.init(params), "seq": eng.fresh_state(params, first)}

    def train_epoch(state, data):
        p, o, s, out = eng.run_epoch(state["params"], state["opt_state"], state["seq"], data)
        w = jnp.maximum(out["weight"].sum(), 1.0)
        return ({"params": p, "opt_state": o, "seq": s},
                {"losses": out["sums"]["loss"].reshape(-1), "metrics": {k: v.sum() / w for k, v in out["sums"].items()}})

    def train_chunk(state, data, start, count):
        p, o, s, out = eng.run_updates(state["params"], state["opt_state"], state["seq"], data, start, count)
        return {"params": p, "opt_state": o, "seq": s}, {"losses": out["sums"]["loss"], "parts": out}

    def epoch_metrics(parts):
        w = jnp.maximum(parts["weight"].sum(), 1.0)
        return {k: v.sum() / w for k, v in parts["sums"].items()}

    def evaluate(state, split):
        return evaluate_stream(apply_fn, objective, rnn_carry, reset, state["params"], split)

    def epoch_inputs(epoch):
        if reset == "batch" and shuffle:
            return jax.tree.map(jnp.asarray, _shuffle(task.train, np.random.default_rng([seed, epoch])))
        return train_static

    splits = {name: jax.tree.map(jnp.asarray, b) for name, b in (("val", task.val), ("test", task.test))
              if b is not None}
    # batches and splits are [N, T, B, ...]: their B streams are the data-parallel axis (jaxdl.run.mesh)
    return Trainer(init, train_epoch, evaluate, epoch_inputs, splits, N * eng.schedule.updates, data_axes=2,
                   train_chunk=train_chunk, epoch_metrics=epoch_metrics)
