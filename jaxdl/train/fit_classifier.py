"""Train a feed-forward classifier (the seed's MNIST network and modern MLPs).

One epoch is one jitted lax.scan over minibatches (batch_size=1 is the seed's
one-sample-per-update SGD). Evaluation every `eval_every` epochs reports the error
rate (wrong / total, as the seed); with `stop_on_rise` training stops when the
test error rises (the seed's rule). Checkpoints every `checkpoint_every` epochs;
a rerun in the same run dir resumes. `replicas` seeds are trained together (vmap).
"""
from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from jaxdl.classic.backprop import delta_rule_value_and_grad
from jaxdl.models.mlp import mlp_apply, mlp_init
from jaxdl.objectives import get_objective
from jaxdl.run.context import RunContext
from jaxdl.train.errors import TrainingDiverged
from jaxdl.train.optim import make_optimizer

HIGHER_IS_BETTER = {"accuracy": True}


def encode_targets(labels, classes: int, loss: str, on: float = 0.9, off: float = 0.1):
    """Integer labels -> what the loss compares against: the seed's 0.9/0.1 vectors
    for squared error, the labels themselves for cross-entropy."""
    if loss == "half_sse":
        return np.where(np.eye(classes, dtype=bool)[labels], on, off).astype(np.float32)
    return labels


def make_epoch(grad_fn, opt, batch_size: int, n: int, shuffle: bool):
    """-> epoch(params, opt_state, key, x, t) -> (params, opt_state, mean loss), one scan."""
    nb = n // batch_size

    def epoch(params, opt_state, key, x, t):
        idx = jax.random.permutation(key, n) if shuffle else jnp.arange(n)
        idx = idx[: nb * batch_size].reshape(nb, batch_size)

        def step(c, ib):
            params, opt_state = c
            loss, g = grad_fn(params, x[ib], t[ib])
            upd, opt_state = opt.update(g, opt_state, params)
            return (optax.apply_updates(params, upd), opt_state), loss

        (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), idx)
        return params, opt_state, losses.mean()
    return epoch, nb


def fit_classifier(data, run: RunContext, *, sizes, hidden_act="sigmoid", output_act="sigmoid",
                   loss="half_sse", backprop="autodiff", init="uniform_0.1", optimizer="sgd",
                   lr=0.3, clip=0.0, batch_size=1, epochs=10, eval_every=1, stop_on_rise=False,
                   shuffle=True, seed=0, replicas=1, name="classifier") -> dict:
    x_tr, y_tr, x_te, y_te = data
    classes = sizes[-1]
    objective = get_objective(loss)
    t_tr = jnp.asarray(encode_targets(y_tr, classes, loss))
    t_te = jnp.asarray(encode_targets(y_te, classes, loss))
    x_tr, x_te = jnp.asarray(x_tr), jnp.asarray(x_te)
    apply = lambda p, x: mlp_apply(p, x, hidden_act, output_act)

    def mean_loss(p, x, t):
        return objective(apply(p, x), t)["loss"].mean()

    if backprop == "delta":
        if not (hidden_act == output_act == "sigmoid" and loss == "half_sse"):
            raise ValueError("model.backprop=delta is the seed's rule for sigmoid layers and squared "
                             "error; use model.backprop=autodiff for other activations or losses")
        grad_fn = delta_rule_value_and_grad
    elif backprop == "autodiff":
        grad_fn = jax.value_and_grad(mean_loss)
    else:
        raise ValueError(f"model.backprop must be delta or autodiff, got {backprop!r}")

    if batch_size < 1 or batch_size > len(x_tr):
        raise ValueError(f"train.batch_size must be in 1..{len(x_tr)}, got {batch_size}")
    opt = make_optimizer(optimizer, lr, clip)
    epoch_fn, nb = make_epoch(grad_fn, opt, batch_size, len(x_tr), shuffle)
    keys = jax.vmap(lambda r: jax.random.fold_in(jax.random.PRNGKey(seed), r))(jnp.arange(replicas))
    params = jax.vmap(lambda k: mlp_init(k, sizes, init))(keys)
    state = {"params": params, "opt_state": jax.vmap(opt.init)(params), "epoch": jnp.zeros((), jnp.int32)}
    num_params = sum(int(np.prod(a.shape[1:])) for a in jax.tree.leaves(params))
    state, start, wall = run.resume(state)
    last_ckpt = start or None

    run_epoch = jax.jit(jax.vmap(epoch_fn, in_axes=(0, 0, None, None, None)))

    @jax.jit
    @jax.vmap
    def evaluate(p):
        out = apply(p, x_te)                     # one forward pass over the test set
        m = objective(out, t_te)
        acc = (jnp.argmax(out, -1) == jnp.asarray(y_te)).mean()
        return {"loss": m["loss"].mean(), "accuracy": acc, "error": 1.0 - acc}

    prev_err = None
    for r in run.metrics.read():
        if "test/error" in r:
            prev_err = r["test/error"]
    stopped = None
    bar = tqdm(range(start, epochs), initial=start, total=epochs, disable=not run.progress,
               desc=name, unit="epoch", dynamic_ncols=True)
    timed_epochs, timed_s = 0, 0.0
    per_replica = {}
    for epoch in bar:
        t0 = time.perf_counter()
        key = jax.random.fold_in(jax.random.PRNGKey(seed + 1), epoch)
        p, o, tl = run_epoch(state["params"], state["opt_state"], key, x_tr, t_tr)
        jax.block_until_ready(tl)
        dt = time.perf_counter() - t0
        wall += dt
        if epoch > start:  # the first epoch after (re)start includes compilation
            timed_epochs += 1
            timed_s += dt
        if not np.isfinite(np.asarray(tl)).all():
            raise TrainingDiverged(epoch + 1, (epoch + 1) * nb, last_ckpt)
        state = {"params": p, "opt_state": o, "epoch": jnp.asarray(epoch + 1, jnp.int32)}
        row = {"epoch": epoch + 1, "step": (epoch + 1) * nb, "train/loss": float(np.mean(tl)),
               "epoch_time_s": dt}
        evaluated = (epoch + 1) % eval_every == 0 or epoch + 1 == epochs
        if evaluated:
            m = {f"test/{k}": np.asarray(v) for k, v in evaluate(state["params"]).items()}
            row.update({k: float(v.mean()) for k, v in m.items()})
            per_replica = {k: v.tolist() for k, v in m.items()}
            print(f"[jaxdl] after epoch {epoch + 1}, error ratio is {row['test/error']:.4f}")
        run.log(row)
        bar.set_postfix(loss=f"{row['train/loss']:.4f}", **({"err": f"{row['test/error']:.4f}"} if evaluated else {}))
        rose = evaluated and stop_on_rise and prev_err is not None and row["test/error"] > prev_err
        if (epoch + 1) % run.checkpoint_every == 0 or epoch + 1 == epochs or rose:
            run.save_checkpoint(epoch + 1, state, wall_time_s=wall)
            last_ckpt = epoch + 1
        if evaluated:
            if rose:
                stopped = epoch + 1
                print(f"[jaxdl] test error rose from {prev_err:.4f} to {row['test/error']:.4f}: stopping")
                break
            prev_err = row["test/error"]
    bar.close()
    extra = {"task": name, "seed": seed, "replicas": replicas, "num_params": num_params,
             "sizes": list(sizes), "epochs_run": int(state["epoch"]), "stopped_early_at": stopped,
             "wall_time_s": wall, "steps_per_s": (timed_epochs * nb * replicas / timed_s) if timed_s else None,
             "epoch_time_s": (timed_s / timed_epochs) if timed_epochs else None}
    summary = run.finish(extra, per_replica, HIGHER_IS_BETTER)
    summary["_params"] = state["params"]
    return summary
