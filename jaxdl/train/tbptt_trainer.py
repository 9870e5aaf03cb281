"""The TBPTT trainer: a sequence task's pure training functions for jaxdl's one
training loop (jaxdl.train.loop), and the stateful evaluation of a stream.

Everything here takes plain values; config parsing happens at the entry point.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.config.schema import CELL_OPTIONS, OptimConfig, RecurrentConfig, TBPTTConfig, TrainConfig
from jaxdl.data.batch import Batch
from jaxdl.data.prepared import SeqTask
from jaxdl.models.rnn import rnn_apply, rnn_carry, rnn_init
from jaxdl.objectives import get_objective
from jaxdl.optimizers import optimizers
from jaxdl.run.budget import check_window
from jaxdl.train.loop import Trainer
from jaxdl.train.tbptt import make_schedule, make_tbptt, summarize


def stream_apply(task: SeqTask, model: RecurrentConfig):
    """apply(params, x [t, B, ...], carry, mask [t, B]) -> (preds, carry) of the model's cell
    stack on the task's inputs (integer tokens one-hot encoded inside)."""
    cdt = {"float32": None, "bfloat16": jnp.bfloat16}[model.dtype]
    rm = None if model.remat == "none" else model.remat

    def apply(p, x, c, m):
        x = jax.nn.one_hot(x, task.in_dim) if task.token_inputs else x
        return rnn_apply(p, x, c, m, hoist=model.hoist, compute_dtype=cdt, remat=rm, form=model.scan)
    return apply


def init_params(key, task: SeqTask, model: RecurrentConfig, hp: dict):
    """The stack's params for the task's sizes (model.block around every layer, with
    model.conv's convolution inside); the cell's init options set in model (CELL_OPTIONS);
    a population member's model.forget_bias (hp) wins over model.forget_bias."""
    options = {k: getattr(model, k) for k in CELL_OPTIONS if getattr(model, k) is not None}
    fb = hp.get("model.forget_bias", model.forget_bias)
    if fb is not None:
        options["forget_bias"] = fb
    return rnn_init(key, task.in_dim, model.hidden, task.out_dim, model.layers, model.name,
                    block=model.block, conv=model.conv, **options)


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
    return summarize({"sums": sums, "weight": w})


def engine_steps(run_epoch: Callable, run_updates: Callable) -> tuple[Callable, Callable]:
    """(train_epoch, train_chunk) of a trainer whose state is {"params", "opt_state", "seq"},
    over an engine with make_tbptt's contract: run_epoch(params, opt_state, seq, batches) and
    run_updates(..., start, count) -> (params, opt_state, seq, out), out = {"sums", "weight"}
    per update. An epoch's metrics from its chunks' parts are tbptt.summarize(parts)."""
    def train_epoch(state, data):
        p, o, s, out = run_epoch(state["params"], state["opt_state"], state["seq"], data)
        return ({"params": p, "opt_state": o, "seq": s},
                {"losses": out["sums"]["loss"].reshape(-1), "metrics": summarize(out)})

    def train_chunk(state, data, start, count):
        p, o, s, out = run_updates(state["params"], state["opt_state"], state["seq"], data, start, count)
        return {"params": p, "opt_state": o, "seq": s}, {"losses": out["sums"]["loss"], "parts": out}

    return train_epoch, train_chunk


def _shuffle(batches: Batch, rng: np.random.Generator) -> Batch:
    """Permute independent sequences across batches (only for reset='batch')."""
    N, T, B = batches.mask.shape

    def perm(a, p):
        flat = np.asarray(a).swapaxes(1, 2).reshape(N * B, T, *a.shape[3:])[p]
        return flat.reshape(N, B, T, *a.shape[3:]).swapaxes(1, 2)
    p = rng.permutation(N * B)
    return jax.tree.map(lambda a: perm(a, p), batches)


def tbptt_trainer(task: SeqTask, model: RecurrentConfig, optim: OptimConfig, tbptt: TBPTTConfig,
                  train: TrainConfig, seed: int = 0, injectable: bool = False) -> Trainer:
    """A Trainer (jaxdl.train.loop) for a stream task: one member's state is
    {"params", "opt_state", "seq": (carry, tail)}; one epoch is `make_tbptt`'s run_epoch,
    one jitted scan over the updates of all batches; splits are evaluated statefully
    (evaluate_stream). model: the cell stack (model.name, hidden, layers, forget_bias;
    dtype "bfloat16": bf16 matmul inputs, f32 accumulation, state and weights; remat
    "sqrt": activations recomputed in the backward pass, jaxdl.models.remat). With
    reset="batch" and train.shuffle, the independent sequences are reshuffled across
    batches every epoch (numpy, seeded by (seed, epoch)). injectable: the optimizer's
    values are state, so a population's members (hp) each carry their own."""
    reset = task.reset or tbptt.reset
    objective = get_objective(task.loss, task.metrics)
    opt, member_optimizer = optimizers(optim, injectable)
    apply_fn = stream_apply(task, model)
    N, T, B = task.train.mask.shape
    check_window(tbptt.k1, tbptt.k2, N, T)
    eng = make_tbptt(apply_fn, objective, opt, rnn_carry, make_schedule(T, tbptt.k1, tbptt.k2), reset=reset)
    first = jax.tree.map(lambda a: jnp.asarray(a[0]), task.train)
    train_static = jax.tree.map(jnp.asarray, task.train)

    def init(key, hp):
        params = init_params(key, task, model, hp)
        opt_m = member_optimizer(hp) if injectable else opt
        return {"params": params, "opt_state": opt_m.init(params), "seq": eng.fresh_state(params, first)}

    train_epoch, train_chunk = engine_steps(eng.run_epoch, eng.run_updates)

    def evaluate(state, split):
        return evaluate_stream(apply_fn, objective, rnn_carry, reset, state["params"], split)

    def epoch_inputs(epoch):
        if reset == "batch" and train.shuffle:
            return jax.tree.map(jnp.asarray, _shuffle(task.train, np.random.default_rng([seed, epoch])))
        return train_static

    splits = {name: jax.tree.map(jnp.asarray, b) for name, b in (("val", task.val), ("test", task.test))
              if b is not None}
    # batches and splits are [N, T, B, ...]: their B streams are the data-parallel axis (jaxdl.run.mesh)
    return Trainer(init, train_epoch, evaluate, epoch_inputs, splits, N * eng.schedule.updates, data_axes=2,
                   train_chunk=train_chunk, epoch_metrics=summarize)
