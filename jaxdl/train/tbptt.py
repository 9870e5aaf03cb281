"""Truncated backpropagation through time, TBPTT(k1, k2), as one jitted scan.

Notation of the source text (Sutskever 2013; Williams & Peng 1990): every k1 time steps,
run BPTT over the last k2 steps.

k1 <= k2: update u covers the new steps [u*k1, (u+1)*k1); its backward window is
  [(u+1)*k1 - k2, (u+1)*k1). The window starts from a detached state, the loss is
  the weighted mean of the per-step losses of its LAST k1 steps (so each step of
  the stream is counted exactly once), and the state after the window's first k1
  steps is the next window's start. Windows that would begin before step 0 start
  from the initial state with the missing steps masked (state held, loss 0), as
  does a ragged end. Streams fed in consecutive batches are exact across batch
  boundaries: the last k2 - k1 steps of a batch travel with the state ("tail").
k1 > k2: one update every k1 steps, the loss over all k1 new steps, the state
  detached every k2 steps inside the segment.
k1 = k2 = k: non-overlapping chunks with state carried; k1 = k2 = n: full BPTT.

Data layout: a batch is time-major, x [T, B, ...], y [T, B, ...], mask [T, B]
(1 = real step; 0 = padding, the state is held) and weight [T, B] (the per-step
loss weight, usually equal to mask).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxdl.data.batch import Batch, time_rows

RESET_POLICIES = ("batch", "epoch", "never")


class Schedule(NamedTuple):
    """Static shape of the updates over a batch of T steps."""
    k1: int
    k2: int
    updates: int   # U = ceil(T / k1)
    lead: int      # steps before the first new step in the first window: max(k2 - k1, 0)
    window: int    # steps scanned per update: max(k1, k2)
    T: int         # steps per batch


def make_schedule(T: int, k1: int, k2: int) -> Schedule:
    if k1 < 1 or k2 < 1:
        raise ValueError(f"TBPTT needs k1 >= 1 and k2 >= 1, got k1={k1}, k2={k2}")
    if T < 1:
        raise ValueError(f"a batch needs at least one time step, got T={T}")
    return Schedule(k1, k2, -(-T // k1), max(k2 - k1, 0), max(k1, k2), T)


def loss_steps(T: int, k1: int, k2: int) -> list[range]:
    """For each update, the stream steps whose loss it counts (the new steps)."""
    s = make_schedule(T, k1, k2)
    return [range(u * k1, min((u + 1) * k1, T)) for u in range(s.updates)]


def window_loss(apply_fn, metrics_fn, k1, k2, params, carry, w: Batch):
    """Loss of one update window (length max(k1, k2)) starting from `carry`.

    Returns (loss, (next_carry, metric_sums, weight_sum)). Gradients never
    cross the window start, nor, for k1 > k2, the k2-step chunk boundaries.
    """
    carry = jax.lax.stop_gradient(carry)
    if k1 <= k2:
        p1, c1 = apply_fn(params, w.x[:k1], carry, w.mask[:k1])
        if k2 > k1:
            p2, _ = apply_fn(params, w.x[k1:], c1, w.mask[k1:])
            preds = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), p1, p2)
        else:
            preds = p1
        nxt = c1
        sl = slice(k2 - k1, k2)
        preds = jax.tree.map(lambda a: a[sl], preds)
        ys, wt = jax.tree.map(lambda a: a[sl], w.y), w.weight[sl]
    else:
        outs, c = [], carry
        for s in range(0, k1, k2):
            e = min(s + k2, k1)
            p, c = apply_fn(params, w.x[s:e], c, w.mask[s:e])
            outs.append(p)
            if e < k1:
                c = jax.lax.stop_gradient(c)
        preds = jax.tree.map(lambda *a: jnp.concatenate(a), *outs)
        nxt, ys, wt = c, w.y, w.weight
    m = metrics_fn(preds, ys)                     # dict name -> [k1, B]
    wsum = wt.sum()
    sums = {k: (v * wt).sum() for k, v in m.items()}
    loss = sums["loss"] / jnp.maximum(wsum, 1.0)
    return loss, (jax.lax.stop_gradient(nxt), sums, wsum)


class TBPTT(NamedTuple):
    """The pure functions of a TBPTT trainer for one model/loss/optimizer."""
    run_batch: Callable
    run_epoch: Callable
    fresh_state: Callable
    schedule: Schedule
    run_updates: Callable | None = None


def make_tbptt(apply_fn: Callable, metrics_fn: Callable, optimizer: optax.GradientTransformation,
               init_carry: Callable, schedule: Schedule, reset: str = "epoch",
               collect_grads: bool = False) -> TBPTT:
    """Build the TBPTT update functions for batches of T steps, schedule =
    make_schedule(T, k1, k2).

    apply_fn(params, x [t, B, ...], carry, mask [t, B]) -> (preds [t, B, ...], carry)
    metrics_fn(preds, y) -> {"loss": [t, B], other metrics...}
    init_carry(params, B) -> initial state.
    reset: "batch" (state reset before every batch: independent sequences),
           "epoch" (reset at the epoch start, carried across batches: one long
           sequence in consecutive pieces), "never" (carried across epochs too).

    run_epoch(params, opt_state, state, batches) -> (params, opt_state, state, stats)
      with batches a Batch whose arrays have a leading batch axis [N, T, B, ...];
      state = (carry, tail) as returned by `fresh_state(params, batch)`; stats hold per-update
      metric sums and weight sums ([N, U] each), and the gradients if collect_grads.

    run_updates(params, opt_state, state, batches, start, count) -> (params, opt_state, state, stats)
      the same epoch in pieces: updates start .. start+count-1 of it (flat update index
      f = n*U + u over the N batches of U updates; both traced, so one compile serves every
      piece, a fori_loop); start + count <= N*U. Running the pieces [0, c1), [c1, c2), ... in
      turn trains exactly what run_epoch trains: the reset before the first update
      (reset="epoch") or before every batch's first ("batch"), the tail replaced after every
      batch's last update. stats are per update of the whole epoch, [N*U] each, written at
      the piece's updates and zero elsewhere.

    run_batch, run_epoch and run_updates run one update function over the flat update
    index; each update reads its window of the stream (tail + batch + zeros past its end)
    with time_rows, O(window), so no update pays for the length of the stream.
    """
    if reset not in RESET_POLICIES:
        raise ValueError(f"unknown reset policy {reset!r}; use one of {RESET_POLICIES}")
    sch = schedule
    k1, k2, U, lead = schedule.k1, schedule.k2, schedule.updates, schedule.lead
    grad_fn = jax.value_and_grad(
        lambda p, c, w: window_loss(apply_fn, metrics_fn, k1, k2, p, c, w), has_aux=True)

    def stream_rows(tail, batches: Batch, n, q, size: int) -> Batch:
        """Rows q .. q+size-1 of batch n's stream: the tail (lead steps) + the batch + zeros
        past its end; O(size) whatever T (time_rows), so no update pays for the stream."""
        rows = jax.tree.map(lambda a: time_rows(a, n, q - lead, size), batches)
        if not lead:
            return rows
        before = q + jnp.arange(size) < lead

        def pick(t, b):
            return jnp.where(before.reshape((size,) + (1,) * (b.ndim - 1)), time_rows(t[None], 0, q, size), b)
        return jax.tree.map(pick, tail, rows)

    def fresh_of(params, batches: Batch):
        """fresh_state from a stack of batches' shapes [N, T, B, ...] (reads no data)."""
        tail = jax.tree.map(lambda a: jnp.zeros((lead,) + a.shape[2:], a.dtype), batches)
        return init_carry(params, batches.mask.shape[2]), tail

    def step(c, f, batches: Batch, resets: bool):
        """Update f = n*U + u of an epoch over `batches` [N, T, B, ...]; with `resets`, the
        reset policy's reset before it (reset="epoch": f = 0; "batch": u = 0)."""
        params, opt_state, state = c
        n, u = f // U, f % U
        if resets and reset in ("batch", "epoch"):
            now = (f == 0) if reset == "epoch" else (u == 0)
            state = jax.tree.map(lambda a, b: jnp.where(now, a, b), fresh_of(params, batches), state)
        carry, tail = state
        w = stream_rows(tail, batches, n, u * k1, sch.window)
        (loss, (nxt, sums, wsum)), g = grad_fn(params, carry, w)
        upd, opt_state = optimizer.update(g, opt_state, params)
        params = optax.apply_updates(params, upd)
        if lead:                  # after a batch's last update, its stream's last lead steps
            end = stream_rows(tail, batches, n, U * k1, lead)
            tail = jax.tree.map(lambda a, b: jnp.where(u == U - 1, a, b), end, tail)
        out = {"sums": sums, "weight": wsum}
        if collect_grads:
            out["grads"] = g
        return (params, opt_state, (nxt, tail)), out

    def run_batch(params, opt_state, state, batch: Batch):
        batches = jax.tree.map(lambda a: a[None], batch)
        (params, opt_state, state), out = jax.lax.scan(
            lambda c, f: step(c, f, batches, False), (params, opt_state, state), jnp.arange(U))
        return params, opt_state, state, out

    def fresh_state(params, batch: Batch):
        return fresh_of(params, jax.tree.map(lambda a: a[None], batch))

    def run_epoch(params, opt_state, state, batches: Batch):
        N = batches.mask.shape[0]
        (params, opt_state, state), out = jax.lax.scan(
            lambda c, f: step(c, f, batches, True), (params, opt_state, state), jnp.arange(N * U))
        return params, opt_state, state, jax.tree.map(lambda a: a.reshape((N, U) + a.shape[1:]), out)

    def run_updates(params, opt_state, state, batches: Batch, start, count):
        N = batches.mask.shape[0]

        def one(c, f):
            c, out = step(c, f, batches, True)
            return c, {"sums": out["sums"], "weight": out["weight"]}

        c0 = (params, opt_state, state)
        shapes = jax.eval_shape(one, c0, jnp.int32(0))[1]
        stats = jax.tree.map(lambda a: jnp.zeros((N * U,) + a.shape, a.dtype), shapes)

        def body(f, cs):
            c, stats = cs
            c, out = one(c, f)
            return c, jax.tree.map(lambda b, v: jax.lax.dynamic_update_index_in_dim(b, v, f, 0), stats, out)

        (params, opt_state, state), stats = jax.lax.fori_loop(start, start + count, body, (c0, stats))
        return params, opt_state, state, stats

    return TBPTT(run_batch, run_epoch, fresh_state, sch, run_updates)


def summarize(out) -> dict:
    """Weighted means over an epoch's updates: {"loss": ..., other metrics}."""
    w = out["weight"].sum()
    return {k: v.sum() / jnp.maximum(w, 1.0) for k, v in out["sums"].items()}
