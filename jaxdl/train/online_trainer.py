"""Training with an online gradient estimator (RTRL, UORO, SnAp-1; jaxdl.estimators): a
sequence task's pure training functions for jaxdl's one training loop (jaxdl.train.loop).

The stream is processed one step at a time: the estimator carries its influence state
beside the recurrent state, the per-step gradient estimates are summed, and every `every`
steps their weighted mean (the same normalisation as a TBPTT window: sum of w * dL_t over
sum of w) goes to the optimizer. Nothing is truncated: state and influence are carried
across updates and across batches, and reset together by the reset policy (batch: before
every batch; epoch: at the epoch start; never). A ragged end (T not a multiple of `every`)
is padded with held, unweighted steps. An epoch is one scan over its updates, or, for the
loop's chunks (train_chunk), a fori_loop over a range of them; either way an update reads
only its own steps (jaxdl.data.batch.time_rows), so its cost does not depend on the
epoch's length. The member's state has the TBPTT trainer's layout,
{"params", "opt_state", "seq": (carry, influence state)}, and its evaluation is the same
stateful forward pass (tbptt_trainer.evaluate_stream).
"""
from __future__ import annotations

import os
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxdl.data.batch import Batch, time_rows
from jaxdl.data.prepared import SeqTask
from jaxdl.estimators import ESTIMATORS, get_estimator, rtrl_memory_bytes
from jaxdl.estimators.online import run_steps
from jaxdl.models.cell import get_cell
from jaxdl.models.rnn import rnn_carry
from jaxdl.objectives import get_objective
from jaxdl.train.loop import Trainer
from jaxdl.train.tbptt import RESET_POLICIES, summarize
from jaxdl.train.tbptt_trainer import _shuffle, engine_steps, evaluate_stream, init_params, stream_apply

ONLINE = tuple(ESTIMATORS)


def device_memory_bytes() -> int:
    """Memory of the default device: an accelerator's bytes_limit, else the host's RAM."""
    d = jax.devices()[0]
    stats = d.memory_stats() if hasattr(d, "memory_stats") else None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"])
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _check(task: SeqTask, model, estimator, reset: str):
    """Refuse, naming the setting, what the online trainer cannot do."""
    if estimator.name not in ONLINE:
        raise ValueError(f"estimator.name={estimator.name!r} is not an online estimator; use one of {ONLINE} "
                         "(estimator=tbptt trains with the TBPTT trainer)")
    if int(estimator.every) < 1:
        raise ValueError(f"estimator.every must be >= 1 (steps between optimizer updates), got {estimator.every}")
    if model.remat not in (None, "none"):
        raise ValueError(f"model.remat={model.remat!r}: an online estimator stores no activations over time "
                         "(nothing to recompute); set model.remat=none")
    if model.dtype not in (None, "float32"):
        raise ValueError(f"model.dtype={model.dtype!r}: the online estimators differentiate the cells' plain step "
                         "in the parameters' dtype; set model.dtype=float32")
    if reset not in RESET_POLICIES:
        raise ValueError(f"unknown reset policy {reset!r}; use one of {RESET_POLICIES}")
    cell = get_cell(model.name)
    if model.forget_bias is not None and "forget_bias" not in cell.options:
        raise ValueError(f"model.forget_bias={model.forget_bias} but cell {model.name!r} has no forget gate; "
                         "set model.forget_bias=null")


class Online(NamedTuple):
    """The pure functions of an online estimator's trainer (make_online)."""
    run_epoch: Callable
    fresh_seq: Callable
    updates: int               # U = ceil(T / every) per batch
    run_updates: Callable


def make_online(est, opt: optax.GradientTransformation, T: int, every: int, reset: str, encode) -> Online:
    """The training functions of an online estimator over batches of T steps.

    run_epoch(params, opt_state, seq, batches [N, T, B, ...]) -> (params, opt_state, seq, out):
    seq = (carry, est_state); out {"sums": {metric: [N, U]}, "weight": [N, U]} per update,
    U = ceil(T / every). encode maps a batch's x to the model's input (one-hot for tokens).
    run_updates(params, opt_state, seq, batches, start, count) -> (params, opt_state, seq, out):
    updates start .. start+count-1 of the same epoch (flat index f = n*U + u; both traced, one
    compile for every piece); out per update of the whole epoch, [N*U] each, zero outside
    the piece. Pieces [0, c1), [c1, c2), ... train exactly what run_epoch trains.
    Update f reads its `every` steps with time_rows (zeros, so held and unweighted, past a
    ragged end), so its cost does not depend on T."""
    U = -(-T // every)

    def fresh_seq(params, seq):
        """The reset: zero recurrent state and zero influence (noise keys kept)."""
        carry, est_state = seq
        return rnn_carry(params, carry[0][0].shape[0]), est.reset(est_state)

    def update(c, f, batches: Batch):
        """Update f = n*U + u: the reset policy's reset before it, then `every` estimator steps
        and one optimizer step with their weighted mean gradient."""
        params, opt_state, seq = c
        n, u = f // U, f % U
        if reset in ("batch", "epoch"):       # a cond, not a select: RTRL's influence is large
            now = (f == 0) if reset == "epoch" else (u == 0)
            seq = jax.lax.cond(now, lambda s: fresh_seq(params, s), lambda s: s, seq)
        carry, est_state = seq
        chunk = jax.tree.map(lambda a: time_rows(a, n, u * every, every), batches)
        carry, est_state, g, sums = run_steps(est, params, carry, est_state, encode(chunk.x), chunk.y,
                                              chunk.weight, chunk.mask)
        wsum = chunk.weight.sum()
        g = jax.tree.map(lambda a: a / jnp.maximum(wsum, 1.0), g)
        upd, opt_state = opt.update(g, opt_state, params)
        params = optax.apply_updates(params, upd)
        return (params, opt_state, (carry, est_state)), {"sums": sums, "weight": wsum}

    def run_epoch(params, opt_state, seq, batches: Batch):
        N = batches.mask.shape[0]
        (params, opt_state, seq), out = jax.lax.scan(
            lambda c, f: update(c, f, batches), (params, opt_state, seq), jnp.arange(N * U))
        return params, opt_state, seq, jax.tree.map(lambda a: a.reshape((N, U) + a.shape[1:]), out)

    def run_updates(params, opt_state, seq, batches: Batch, start, count):
        N = batches.mask.shape[0]
        c0 = (params, opt_state, seq)
        shapes = jax.eval_shape(lambda: update(c0, jnp.int32(0), batches))[1]
        stats = jax.tree.map(lambda a: jnp.zeros((N * U,) + a.shape, a.dtype), shapes)

        def body(f, cs):
            c, stats = cs
            c, out = update(c, f, batches)
            return c, jax.tree.map(lambda b, v: jax.lax.dynamic_update_index_in_dim(b, v, f, 0), stats, out)

        (params, opt_state, seq), stats = jax.lax.fori_loop(start, start + count, body, (c0, stats))
        return params, opt_state, seq, stats

    return Online(run_epoch, fresh_seq, U, run_updates)


def online_trainer(task: SeqTask, model, opt, estimator, seed: int = 0, reset: str = "epoch",
                   shuffle: bool = True) -> Trainer:
    """A Trainer for a sequence task with an online estimator.

    model: a RecurrentConfig (jaxdl.config.schema: .name the cell, .hidden, .layers,
    .forget_bias (None: the cell's default), .hoist (evaluation only), .dtype "float32",
    .remat "none"); opt: the pair jaxdl.optimizers.optimizers(...) returns; estimator: an
    EstimatorConfig (.name "rtrl" | "uoro" | "snap1", .every steps per optimizer update).
    reset: the policy for state and influence (the task's own policy wins, as for TBPTT);
    shuffle: with reset="batch", the independent sequences are reshuffled every epoch.
    A member's noise key (UORO) is split from its init key, so it follows the run's seed.
    RTRL is refused before compute when its influence (rtrl_memory_bytes) exceeds the
    device's memory."""
    reset = task.reset or reset
    _check(task, model, estimator, reset)
    objective = get_objective(task.loss, task.metrics)
    est = get_estimator(estimator.name, objective)
    update_opt, member_optimizer = opt
    N, T, B = task.train.mask.shape
    if estimator.name == "rtrl":
        shapes = jax.eval_shape(lambda: init_params(jax.random.PRNGKey(0), task, model, {}))
        need, have = rtrl_memory_bytes(shapes["layers"], B), device_memory_bytes()
        if need > have:
            raise ValueError(
                f"RTRL's influence needs about {need / 2**30:.1f} GiB per member (rtrl_memory_bytes: {B} streams x "
                f"(3 n p + n^2) numbers for model.hidden={model.hidden}, model.layers={model.layers}) but the device "
                f"has {have / 2**30:.1f} GiB; use estimator=snap1 or uoro, or fewer hidden units or streams")
    encode = (lambda x: jax.nn.one_hot(x, task.in_dim)) if task.token_inputs else (lambda x: x)
    eng = make_online(est, update_opt, T, int(estimator.every), reset, encode)
    U = eng.updates
    apply_fn = stream_apply(task, model)
    train_static = jax.tree.map(jnp.asarray, task.train)

    def init(key, hp):
        params = init_params(key, task, model, hp)
        seq = (rnn_carry(params, B), est.init(params, B, jax.random.split(key)[1]))
        return {"params": params, "opt_state": member_optimizer(hp).init(params), "seq": seq}

    train_epoch, train_chunk = engine_steps(eng.run_epoch, eng.run_updates)

    def evaluate(state, split):
        return evaluate_stream(apply_fn, objective, rnn_carry, reset, state["params"], split)

    def epoch_inputs(epoch):
        if reset == "batch" and shuffle:
            return jax.tree.map(jnp.asarray, _shuffle(task.train, np.random.default_rng([seed, epoch])))
        return train_static

    splits = {name: jax.tree.map(jnp.asarray, b) for name, b in (("val", task.val), ("test", task.test))
              if b is not None}
    return Trainer(init, train_epoch, evaluate, epoch_inputs, splits, N * U, data_axes=2,
                   train_chunk=train_chunk, epoch_metrics=summarize)
