"""The feed-forward classifier trainer (the source text's MNIST network and modern MLPs)
for jaxdl's one training loop: one epoch is one jitted lax.scan over minibatches
(batch_size=1 is the source text's one-sample-per-update SGD); evaluation reports the error
rate (wrong / total, as the source text). Stop-on-rise, checkpoints, resume and replicas
are the loop's."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxdl.classic.backprop import delta_rule_value_and_grad
from jaxdl.config.schema import MLPConfig, OptimConfig, TrainConfig
from jaxdl.models.mlp import mlp_apply, mlp_init
from jaxdl.objectives import get_objective
from jaxdl.train.loop import Trainer
from jaxdl.optimizers import optimizers


def encode_targets(labels, classes: int, loss: str, on: float = 0.9, off: float = 0.1):
    """Integer labels -> what the loss compares against: the source text's 0.9/0.1 vectors
    for squared error, the labels themselves for cross-entropy."""
    if loss == "half_sse":
        return np.where(np.eye(classes, dtype=bool)[labels], on, off).astype(np.float32)
    return labels


def make_epoch(grad_fn, opt, batch_size: int, n: int, shuffle: bool):
    """-> epoch(params, opt_state, key, x, t) -> (params, opt_state, losses [nb]), one scan
    over nb = n // batch_size minibatches."""
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
        return params, opt_state, losses
    return epoch, nb


def classifier_sizes(data, model: MLPConfig) -> list[int]:
    """[n_in, *model.hidden, classes] for data {"train": (x, labels), ...}."""
    classes = int(max(int(np.max(y)) for _, y in data.values())) + 1
    return [data["train"][0].shape[1], *model.hidden, classes]


def classifier_trainer(data, model: MLPConfig, optim: OptimConfig, train: TrainConfig, seed: int = 0,
                       injectable: bool = False, announce: bool = True) -> Trainer:
    """A Trainer (jaxdl.train.loop) for a feed-forward classifier of layer sizes
    [n_in, *model.hidden, classes] (`classifier_sizes`).

    data: {"train": (x [N, n_in], labels [N]), "val": ..., "test": ...} (val optional).
    One member's state is {"params", "opt_state"}; an epoch's minibatch order (train.batch_size,
    train.shuffle) comes from the key fold_in(PRNGKey(seed + 1), epoch), the same for every
    member. Splits report loss, accuracy and the error rate (wrong / total, as the source
    text); `announce` prints its "after epoch N, error ratio is ..." after each evaluation.

    On a device mesh (jaxdl.run.mesh) the members shard along `replica`; the data is not
    split along `data` (data_axes=None: replicated): an epoch draws its minibatches from the
    whole training set inside the jitted scan, so config refuses mesh.data > 1 for it."""
    sizes = classifier_sizes(data, model)
    hidden_act, output_act, loss, backprop = model.hidden_act, model.output_act, model.loss, model.backprop
    batch_size = train.batch_size
    x_tr, y_tr = data["train"]
    classes = sizes[-1]
    objective = get_objective(loss)
    t_tr = jnp.asarray(encode_targets(y_tr, classes, loss))
    x_tr = jnp.asarray(x_tr)
    apply = lambda p, x: mlp_apply(p, x, hidden_act, output_act)

    def mean_loss(p, x, t):
        return objective(apply(p, x), t)["loss"].mean()

    if backprop == "delta":
        if not (hidden_act == output_act == "sigmoid" and loss == "half_sse"):
            raise ValueError("model.backprop=delta is the source text's rule for sigmoid layers and squared "
                             "error; use model.backprop=autodiff for other activations or losses")
        grad_fn = delta_rule_value_and_grad
    elif backprop == "autodiff":
        grad_fn = jax.value_and_grad(mean_loss)
    else:
        raise ValueError(f"model.backprop must be delta or autodiff, got {backprop!r}")
    if batch_size < 1 or batch_size > len(x_tr):
        raise ValueError(f"train.batch_size must be in 1..{len(x_tr)}, got {batch_size}")
    opt, member_optimizer = optimizers(optim, injectable)
    epoch_fn, nb = make_epoch(grad_fn, opt, batch_size, len(x_tr), train.shuffle)

    def init_state(key, hp):
        params = mlp_init(key, sizes, model.init)
        return {"params": params, "opt_state": (member_optimizer(hp) if injectable else opt).init(params)}

    def train_epoch(state, inputs):
        key, x, t = inputs
        p, o, losses = epoch_fn(state["params"], state["opt_state"], key, x, t)
        return {"params": p, "opt_state": o}, {"losses": losses, "metrics": {"loss": losses.mean()}}

    def evaluate(state, split):
        x, t, labels = split
        out = apply(state["params"], x)                     # one forward pass over the split
        acc = (jnp.argmax(out, -1) == labels).mean()
        return {"loss": objective(out, t)["loss"].mean(), "accuracy": acc, "error": 1.0 - acc}

    splits = {name: (jnp.asarray(x), jnp.asarray(encode_targets(y, classes, loss)), jnp.asarray(y))
              for name, (x, y) in data.items() if name != "train"}
    first = next(iter(splits), None)

    def say(epoch, row):
        return f"[jaxdl] after epoch {epoch}, error ratio is {row[f'{first}/error']:.4f}"

    return Trainer(init_state, train_epoch, evaluate,
                   lambda epoch: (jax.random.fold_in(jax.random.PRNGKey(seed + 1), epoch), x_tr, t_tr),
                   splits, nb, say if announce and first else None)
