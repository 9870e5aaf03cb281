"""Train a sequence model with TBPTT on a SeqTask: epochs as single jitted
programs, `replicas` models (different init seeds) trained together with vmap,
evaluation, metrics.jsonl, orbax checkpoints and resume.

Everything here takes plain values; config parsing happens at the entry point.
"""
from __future__ import annotations

import math
import time

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxdl.models.rnn import rnn_apply, rnn_carry, rnn_init
from jaxdl.objectives import get_objective
from jaxdl.run.context import RunContext
from jaxdl.tasks.base import SeqTask
from jaxdl.train.errors import TrainingDiverged
from jaxdl.train.optim import make_optimizer
from jaxdl.train.tbptt import Batch, make_tbptt

HIGHER_IS_BETTER = {"accuracy": True, "exact_match": True}


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


def fit_sequence(task: SeqTask, run: RunContext, *, seed: int = 0, hidden: int = 64,
                 layers: int = 1, forget_bias: float = 1.0, optimizer: str = "adam",
                 lr: float = 1e-2, clip: float = 0.0, k1: int = 10, k2: int = 10,
                 reset: str = "epoch", epochs: int = 10, replicas: int = 1,
                 eval_every: int = 1, shuffle: bool = True, hoist: bool | None = None) -> dict:
    """Returns the summary dict (also written to run_dir/summary.json)."""
    reset = task.reset or reset
    objective = get_objective(task.loss)
    opt = make_optimizer(optimizer, lr, clip)
    if task.token_inputs:
        apply_fn = lambda p, x, c, m: rnn_apply(p, jax.nn.one_hot(x, task.in_dim), c, m, hoist=hoist)
    else:
        apply_fn = lambda p, x, c, m: rnn_apply(p, x, c, m, hoist=hoist)
    N, T, B = task.train.mask.shape
    eng = make_tbptt(apply_fn, objective, opt, rnn_carry, T, k1, k2, reset=reset)
    updates_per_epoch = N * eng.schedule.updates

    # replica r's init key does not depend on how many replicas run beside it
    keys = jax.vmap(lambda r: jax.random.fold_in(jax.random.PRNGKey(seed), r))(jnp.arange(replicas))
    init = lambda k: rnn_init(k, task.in_dim, hidden, task.out_dim, layers, forget_bias)
    params = jax.vmap(init)(keys)
    first = jax.tree.map(lambda a: jnp.asarray(a[0]), task.train)
    state = {"params": params,
             "opt_state": jax.vmap(opt.init)(params),
             "seq": jax.vmap(eng.fresh_state, in_axes=(0, None))(params, first),
             "epoch": jnp.zeros((), jnp.int32)}
    num_params = sum(int(np.prod(a.shape[1:])) for a in jax.tree.leaves(params))

    state, start, wall = run.resume(state)
    last_ckpt = start or None

    run_epoch = jax.jit(jax.vmap(eng.run_epoch, in_axes=(0, 0, 0, None)))
    evaluate = jax.jit(jax.vmap(
        lambda p, b: evaluate_stream(apply_fn, objective, rnn_carry, reset, p, b), in_axes=(0, None)))
    test = jax.tree.map(jnp.asarray, task.test)
    train_static = jax.tree.map(jnp.asarray, task.train)

    bar = tqdm(range(start, epochs), initial=start, total=epochs, disable=not run.progress,
               desc=f"{task.name} TBPTT({k1},{k2})", unit="epoch", dynamic_ncols=True)
    timed_updates, timed_s = 0, 0.0
    per_replica = {}
    for epoch in bar:
        t0 = time.perf_counter()
        data = train_static
        if reset == "batch" and shuffle:
            data = jax.tree.map(jnp.asarray, _shuffle(task.train, np.random.default_rng([seed, epoch])))
        p, o, s, out = run_epoch(state["params"], state["opt_state"], state["seq"], data)
        loss_sum = out["sums"]["loss"]                           # [R, N, U]
        jax.block_until_ready(loss_sum)
        dt = time.perf_counter() - t0
        if epoch > start:  # the first epoch after (re)start includes compilation
            timed_updates += updates_per_epoch * replicas
            timed_s += dt
        bad = ~np.isfinite(np.asarray(loss_sum))
        if bad.any():
            r, n, u = (int(i[0]) for i in np.nonzero(bad))
            raise TrainingDiverged(epoch + 1, epoch * updates_per_epoch + n * eng.schedule.updates + u + 1,
                                   last_ckpt)
        state = {"params": p, "opt_state": o, "seq": s, "epoch": jnp.asarray(epoch + 1, jnp.int32)}
        wall += dt
        w = out["weight"].sum(axis=(1, 2))
        train_m = {f"train/{k}": np.asarray(v.sum(axis=(1, 2)) / np.maximum(w, 1.0))
                   for k, v in out["sums"].items()}
        row = {"epoch": epoch + 1, "step": (epoch + 1) * updates_per_epoch}
        row.update({k: float(v.mean()) for k, v in train_m.items()})
        if (epoch + 1) % eval_every == 0 or epoch + 1 == epochs:
            test_m = {f"test/{k}": np.asarray(v) for k, v in evaluate(state["params"], test).items()}
            row.update({k: float(v.mean()) for k, v in test_m.items()})
            per_replica = {k: v.tolist() for k, v in {**train_m, **test_m}.items()}
        run.log(row)
        bar.set_postfix(loss=f"{row['train/loss']:.4f}",
                        upd_s=f"{timed_updates / timed_s:.0f}" if timed_s else "-")
        if (epoch + 1) % run.checkpoint_every == 0 or epoch + 1 == epochs:
            run.save_checkpoint(epoch + 1, state, wall_time_s=wall)
            last_ckpt = epoch + 1
    bar.close()

    extra = {"task": task.name, "headline": task.headline, "chance": task.chance,
             "chance_text": task.chance_text, "higher_is_better": task.higher_is_better, "seed": seed, "replicas": replicas,
             "num_params": num_params, "epochs": epochs, "updates_per_epoch": updates_per_epoch,
             "tbptt": {"k1": k1, "k2": k2, "reset": reset},
             "wall_time_s": wall,
             "steps_per_s": (timed_updates / timed_s) if timed_s else None}
    summary = run.finish(extra, per_replica, HIGHER_IS_BETTER)
    summary["_params"] = state["params"]
    return summary


def chance_report(summary: dict) -> str:
    """Closing lines: the headline metric against its chance level."""
    name = summary["headline"]
    v = summary["final"].get(name, float("nan"))
    hib = summary["higher_is_better"]
    ratio = v / summary["chance"] if summary["chance"] else math.nan
    # "clearly": at least 10% better than the chance level / baseline
    better = (ratio > 1.1) if hib else (ratio < 1 / 1.1)
    if hib:
        verdict = "clearly above chance" if better else "NOT clearly above chance"
    else:
        verdict = "clearly better than the baseline" if better else "NOT clearly better than the baseline"
    return (f"{name} = {v:.4f}  ({summary['chance_text']}; {verdict}, ratio {ratio:.2f})")
