"""Sequential models and the define / compile / fit / evaluate / predict workflow.

    model = Sequential([LSTM(32), Dense(1)], input_shape=(10, 1))          # define
    c = model.compile(optimizer="adam", loss="mse", metrics=["mae"])      # compile
    ts = c.init(jax.random.PRNGKey(0))                                    # params, optimizer, recurrent state
    ts, history = c.fit(ts, X, y, batch_size=32, epochs=10, validation_data=(Xv, yv), verbose=2)
    c.evaluate(ts, X, y); c.predict(ts, X); c.predict_classes(ts, X)

Everything is a pure function of its arguments: `fit` returns a new TrainState.
A stateful model (any recurrent layer, LSTM / GRU / SimpleRNN, with stateful=True and
batch_input_shape) keeps its recurrent state in TrainState.state across batches and
calls; `c.reset_states(ts)` zeroes it.
One epoch is one jitted lax.scan over batches.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxdl.objectives import KERAS_LOSSES as LOSSES
from jaxdl.objectives import keras_mse as _mse
from jaxdl.optimizers import make_optimizer
from jaxdl.workflow.layers import Recurrent, RepeatVector



class TrainState(NamedTuple):
    params: Any
    opt_state: Any
    state: Any          # per-layer recurrent state (stateful models), else None entries


def _accuracy(loss_name):
    def acc(p, y):
        if loss_name == "binary_crossentropy":
            hit = (p > 0.5) == (y > 0.5)
        elif loss_name == "sparse_categorical_crossentropy":
            hit = jnp.argmax(p, -1) == y
        else:
            hit = jnp.argmax(p, -1) == jnp.argmax(y, -1)
        return hit.astype(jnp.float32).reshape(p.shape[0], -1).mean(-1)
    return acc


def _metric(name, loss_name):
    if name in ("accuracy", "acc"):
        return _accuracy(loss_name)
    if name == "mae":
        return lambda p, y: jnp.abs(p - y).reshape(p.shape[0], -1).mean(-1)
    if name in ("mse", "mean_squared_error"):
        return _mse
    raise ValueError(f"unknown metric {name!r}; use accuracy, mae or mse")


@dataclass(frozen=True)
class Sequential:
    """Layers applied in order. input_shape=(steps, features) excludes the batch;
    batch_input_shape=(batch, steps, features) fixes the batch (needed when stateful)."""
    layers: tuple
    input_shape: tuple | None = None
    batch_input_shape: tuple | None = None

    def __init__(self, layers, input_shape=None, batch_input_shape=None):
        object.__setattr__(self, "layers", tuple(layers))
        if batch_input_shape is not None:
            input_shape = tuple(batch_input_shape[1:])
        if input_shape is None:
            raise ValueError("Sequential needs input_shape=(steps, features) or "
                             "batch_input_shape=(batch, steps, features)")
        object.__setattr__(self, "input_shape", tuple(input_shape))
        object.__setattr__(self, "batch_input_shape", tuple(batch_input_shape) if batch_input_shape else None)
        if self.stateful and self.batch_input_shape is None:
            raise ValueError("a stateful recurrent layer needs a fixed batch: give "
                             "batch_input_shape=(batch, steps, features)")

    @property
    def stateful(self) -> bool:
        return any(isinstance(l, Recurrent) and l.stateful for l in self.layers)

    def init(self, key):
        shape, params = self.input_shape, []
        for k, layer in zip(jax.random.split(key, len(self.layers)), self.layers):
            p, shape = layer.init(k, shape)
            params.append(p)
        return params

    def initial_state(self, params, batch: int):
        return [l.initial_state(p, batch) for l, p in zip(self.layers, params)]

    def check_input(self, x, check_batch: bool = True):
        x = jnp.asarray(x)
        if x.ndim != len(self.input_shape) + 1:
            raise ValueError(f"input has shape {x.shape}; the model takes "
                             f"[samples, {', '.join(map(str, self.input_shape))}] "
                             "- reshape the data to [samples, time steps, features]")
        if x.shape[-1] != self.input_shape[-1]:
            raise ValueError(f"input has {x.shape[-1]} features per step but the model was built for "
                             f"{self.input_shape[-1]} (input_shape={self.input_shape})")
        if check_batch and self.stateful and x.shape[0] != self.batch_input_shape[0]:
            raise ValueError(f"this stateful model was built for batches of {self.batch_input_shape[0]} "
                             f"but got {x.shape[0]}; use batch_size={self.batch_input_shape[0]} (a stateful "
                             "model's batch size is fixed)")
        return x

    def apply(self, params, x, state=None, mask=None):
        """x [B, ...] -> (y, new state). state None: every recurrent layer starts from zero."""
        if state is None:
            state = self.initial_state(params, x.shape[0])
        new = []
        for layer, p, s in zip(self.layers, params, state):
            x, s2 = layer.apply(p, x, s, mask)
            new.append(s2)
            if isinstance(layer, RepeatVector) or (isinstance(layer, Recurrent) and not layer.return_sequences):
                mask = None                     # the time axis the mask described is gone
        return x, new

    def compile(self, optimizer="adam", loss="mse", metrics=(), lr: float | None = None,
                clip: float = 0.0) -> "Compiled":
        if isinstance(optimizer, str):
            defaults = {"sgd": 0.01, "adam": 1e-3, "rmsprop": 1e-3, "adamw": 1e-3}
            if optimizer not in defaults:
                raise ValueError(f"unknown optimizer {optimizer!r}; use sgd, adam, rmsprop or an optax transformation")
            optimizer = make_optimizer(optimizer, lr or defaults[optimizer], clip)
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; use one of {sorted(LOSSES)}")
        return Compiled(self, optimizer, loss, tuple(metrics))


@dataclass(frozen=True)
class Compiled:
    model: Sequential
    optimizer: optax.GradientTransformation
    loss: str
    metrics: tuple = ()
    _cache: dict = field(default_factory=dict, compare=False, hash=False, repr=False)

    # ---- state -------------------------------------------------------------
    def init(self, key) -> TrainState:
        params = self.model.init(key)
        return self.reset_states(TrainState(params, self.optimizer.init(params), None))

    def reset_states(self, ts: TrainState) -> TrainState:
        """Zero every recurrent layer's state (the source text's model.reset_states())."""
        b = self.model.batch_input_shape[0] if self.model.stateful else 1
        return ts._replace(state=self.model.initial_state(ts.params, b))

    # ---- pieces ------------------------------------------------------------
    def _per_sample(self, params, x, y, state, mask):
        p, state = self.model.apply(params, x, state, mask)
        out = {"loss": LOSSES[self.loss](p, y)}
        for m in self.metrics:
            out[m] = _metric(m, self.loss)(p, y)
        return out, state

    def _batches(self, n, batch_size):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if self.model.stateful:
            b = self.model.batch_input_shape[0]
            if batch_size != b:
                raise ValueError(f"this stateful model was built for batches of {b}; call fit, evaluate and "
                                 f"predict with batch_size={b}")
            if n % b:
                raise ValueError(f"a stateful model needs the number of samples ({n}) to be a multiple of its "
                                 f"batch size ({b}); trim or pad the data")
        return math.ceil(n / batch_size)

    def _prepare(self, x, y, batch_size, mask):
        """Pad to whole batches with zero-weight samples: [nb, B, ...] arrays."""
        x = self.model.check_input(x, check_batch=False)
        n = x.shape[0]
        nb = self._batches(n, batch_size)
        pad = nb * batch_size - n
        w = jnp.ones(n)
        padt = lambda a: jnp.concatenate([a, jnp.zeros((pad, *a.shape[1:]), a.dtype)]) if pad else a
        shape = lambda a: padt(jnp.asarray(a)).reshape(nb, batch_size, *jnp.asarray(a).shape[1:])
        m = None if mask is None else shape(jnp.asarray(mask, jnp.float32))
        return shape(x), (None if y is None else shape(y)), shape(w), m, n

    # ---- the verbs ---------------------------------------------------------
    def fit(self, ts: TrainState, x, y, batch_size: int = 32, epochs: int = 1, shuffle: bool = True,
            validation_data=None, verbose: int = 1, mask=None, seed: int = 0,
            checkpoint_dir: str | Path | None = None, checkpoint_every: int = 1, resume: bool = False):
        """Train; returns (TrainState, history {metric: [per epoch]}). The epochs run in
        jaxdl's one training loop (jaxdl.train.loop) with a FitRecorder for the history.

        checkpoint_dir: save {params, opt_state, recurrent state} with orbax every
        `checkpoint_every` epochs, and the history so far beside them.
        resume: continue from the latest checkpoint there (as Keras' BackupAndRestore):
        restore it, keep its history and train epochs `latest+1 .. epochs` only, so a
        killed fit finishes bit-identical to one never interrupted. Without resume, epoch
        numbers in the directory keep counting across fit calls."""
        from jaxdl.train.loop import LoopPlan, Progress, train_loop
        from jaxdl.workflow.fit_recorder import FitRecorder, keras_name
        if self.model.stateful and shuffle:
            raise ValueError("a stateful model keeps the order of its samples: fit it with shuffle=False")
        if epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        if resume and checkpoint_dir is None:
            raise ValueError("fit(resume=True) needs the checkpoint_dir to resume from")
        splits = {}
        if validation_data is not None:
            splits["val"] = self.split(validation_data[0], validation_data[1], batch_size)
        trainer = self.trainer(x, y, batch_size=batch_size, shuffle=shuffle, mask=mask, seed=seed,
                               splits=splits)
        rec = FitRecorder(checkpoint_dir, checkpoint_every, resume, epochs, self.model.stateful)
        try:
            res = train_loop(trainer, rec, LoopPlan(epochs, members=None), state=dict(ts._asdict()),
                             progress=Progress(verbose, label=keras_name))
        finally:
            rec.close()
        return TrainState(**res.state), rec.history

    def split(self, x, y, batch_size: int = 32, mask=None, extra=None):
        """An evaluation split for `trainer`: (x batches, mask batches, (y, extra))."""
        xb, _, _, mb, _ = self._prepare(x, None, batch_size, mask)
        return xb, mb, (jnp.asarray(y), extra)

    def score(self, preds, target) -> dict:
        """The compiled loss and metrics, means over the samples: preds, y [n, ...]."""
        y, _ = target
        out = {"loss": LOSSES[self.loss](preds, y).mean()}
        for m in self.metrics:
            out[m] = _metric(m, self.loss)(preds, y).mean()
        return out

    def trainer(self, x, y, *, batch_size: int = 32, shuffle: bool = True, mask=None, seed: int = 0,
                splits: dict | None = None, score=None):
        """This model's pure training functions for jaxdl's loop (a Trainer): one epoch is one
        jitted scan over batches (reshuffled each epoch with key fold_in(PRNGKey(seed), epoch)
        unless stateful); each split from `split()` is evaluated as predict + score(preds,
        (y, extra)) -> {metric: scalar} (default: the compiled loss and metrics)."""
        from jaxdl.train.loop import Trainer
        data = self._prepare(x, y, batch_size, mask)
        xb, yb, wb, mb, n = data
        nb = xb.shape[0]
        score = score or self.score
        stateful = self.model.stateful

        def init(key, hp):
            return dict(self.init(key)._asdict())

        def train_epoch(st, key):
            params, opt_state, state, per_batch, sums = self._epoch(
                st["params"], st["opt_state"], st["state"], key, (xb, yb, wb, mb), shuffle)
            new = {"params": params, "opt_state": opt_state, "state": state if stateful else st["state"]}
            return new, {"losses": per_batch, "metrics": {k: v / n for k, v in sums.items()}}

        def evaluate(st, split):
            xs, ms, target = split
            n_split = target[0].shape[0]

            def body(params, s, x, m):
                p, s2 = self.model.apply(params, x, s, m)
                return s2, p
            _, preds = self._scan_batches("predict", body)(st["params"], st["state"], xs, ms)
            preds = preds.reshape(-1, *preds.shape[2:])[:n_split]
            return score(preds, target)

        return Trainer(init, train_epoch, evaluate,
                       lambda epoch: jax.random.fold_in(jax.random.PRNGKey(seed), epoch),
                       dict(splits or {}), nb)

    def _epoch(self, params, opt_state, state, key, data, shuffle):
        stateful = self.model.stateful      # fit refuses shuffle for stateful models
        xb, yb, wb, mb = data
        nb = xb.shape[0]
        order = jax.random.permutation(key, nb * xb.shape[1]) if shuffle else None

        def get(a, i):
            if a is None:
                return None
            if order is None:
                return a[i]
            flat = a.reshape(-1, *a.shape[2:])
            return flat[jax.lax.dynamic_slice_in_dim(order, i * xb.shape[1], xb.shape[1])]

        def step(c, i):
            params, opt_state, state = c
            x, y, w, m = get(xb, i), get(yb, i), get(wb, i), get(mb, i)

            def lossf(p):
                out, st = self._per_sample(p, x, y, state if stateful else None, m)
                return (out["loss"] * w).sum() / jnp.maximum(w.sum(), 1.0), (out, st)
            (l, (out, st)), g = jax.value_and_grad(lossf, has_aux=True)(params)
            upd, opt_state = self.optimizer.update(g, opt_state, params)
            params = optax.apply_updates(params, upd)
            st = jax.lax.stop_gradient(st) if stateful else state
            return (params, opt_state, st), (l, {k: (v * w).sum() for k, v in out.items()})

        (params, opt_state, state), (losses, sums) = jax.lax.scan(step, (params, opt_state, state), jnp.arange(nb))
        return params, opt_state, state, losses, jax.tree.map(jnp.sum, sums)

    def _scan_batches(self, key, body):
        """One jitted scan over the batch axis, compiled once per verb (`key`).

        body(params, state, *batch_arrays) -> (new_state, out); the state carries only for
        stateful models. Returns f(params, state, *arrays [nb, B, ...]) -> (state, outs [nb, ...])."""
        f = self._cache.get(key)
        if f is None:
            stateful = self.model.stateful

            def f(params, state, *arrays):
                def step(st, i):
                    st2, out = body(params, st if stateful else None, *(None if a is None else a[i] for a in arrays))
                    return (st2 if stateful else st), out
                return jax.lax.scan(step, state, jnp.arange(arrays[0].shape[0]))
            f = self._cache[key] = jax.jit(f)
        return f

    def evaluate(self, ts: TrainState, x, y, batch_size: int = 32, mask=None) -> dict:
        """Loss and metrics over (x, y), means over the samples (`score` of `predict`). Starts
        from ts.state for stateful models (call reset_states before if it should not carry)."""
        preds = jnp.asarray(self.predict(ts, x, batch_size, mask))
        return {k: float(v) for k, v in self.score(preds, (jnp.asarray(y), None)).items()}

    def predict(self, ts: TrainState, x, batch_size: int = 32, mask=None, return_state: bool = False):
        """Model outputs for x (batch-major). With return_state, also the TrainState
        whose recurrent state advanced over x (stateful models)."""
        xb, _, _, mb, n = self._prepare(x, None, batch_size, mask)

        def body(params, st, x, m):
            p, st2 = self.model.apply(params, x, st, m)
            return st2, p
        state, preds = self._scan_batches("predict", body)(ts.params, ts.state, xb, mb)
        preds = np.asarray(preds).reshape(-1, *preds.shape[2:])[:n]
        return (preds, ts._replace(state=state)) if return_state else preds

    def predict_classes(self, ts: TrainState, x, batch_size: int = 32, mask=None):
        """Class indices: argmax of a softmax output, or 0/1 for a single sigmoid unit."""
        p = self.predict(ts, x, batch_size, mask)
        return (p[..., 0] > 0.5).astype(np.int64) if p.shape[-1] == 1 else np.argmax(p, -1)
