"""Every loss of jaxdl, in one module.

OBJECTIVES (task.loss, model.loss): per-step losses and metrics on logits or outputs. Each
returns a dict of arrays shaped like the targets' leading axes ([T, B] for sequences, [B]
for feed-forward batches); the trainers take weighted means. "loss" is the quantity that
is differentiated. DERIVED: metrics a task adds to its objective's by declaring them
(SeqTask.metrics), e.g. bits per character for a text model.

KERAS_LOSSES (the Keras-style compile(loss=...), jaxdl.workflow): Keras' names, on the
model's outputs (probabilities after softmax/sigmoid), one value per sample [B]."""
from __future__ import annotations

import jax.numpy as jnp
import optax


def softmax_xent(logits, labels):
    """Categorical cross-entropy on integer labels, plus accuracy.
    logits [..., C], labels [...] int."""
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    acc = (jnp.argmax(logits, -1) == labels).astype(logits.dtype)
    return {"loss": loss, "accuracy": acc}


def mse(preds, targets):
    """Mean squared error over the feature axis. preds, targets [..., F]."""
    err = ((preds - targets) ** 2).mean(-1)
    return {"loss": err, "mse": err}


def half_sse(preds, targets):
    """The source text's E_d = 1/2 * sum_i (t_i - y_i)^2, plus accuracy by argmax."""
    return {"loss": 0.5 * ((targets - preds) ** 2).sum(-1),
            "accuracy": (jnp.argmax(preds, -1) == jnp.argmax(targets, -1)).astype(preds.dtype)}


def binary_xent(logits, targets):
    """Sigmoid cross-entropy on 0/1 targets [..., F], plus accuracy at 0.5."""
    loss = optax.sigmoid_binary_cross_entropy(logits, targets).mean(-1)
    acc = ((logits > 0) == (targets > 0.5)).astype(logits.dtype).mean(-1)
    return {"loss": loss, "accuracy": acc}


# metric names (the part after "split/") where a higher value is better; every other
# metric (loss, error, mse, rmse, bpc) is better lower
HIGHER_IS_BETTER = frozenset({"accuracy", "exact_match", "char_accuracy", "r2"})

OBJECTIVES = {"xent": softmax_xent, "mse": mse, "half_sse": half_sse, "binary_xent": binary_xent}

# metric -> its value from an objective's per-step outputs; a task lists the ones it reports
# in SeqTask.metrics. bpc: bits per character, the cross-entropy (nats) / ln 2.
DERIVED = {"bpc": lambda m: m["loss"] / jnp.log(2.0)}


EPS = 1e-7      # the Keras losses clip probabilities to [EPS, 1 - EPS] before the log


def keras_mse(p, y):
    return ((p - y) ** 2).reshape(p.shape[0], -1).mean(-1)


def _keras_bce(p, y):
    p = jnp.clip(p, EPS, 1 - EPS)
    return -(y * jnp.log(p) + (1 - y) * jnp.log(1 - p)).reshape(p.shape[0], -1).mean(-1)


def _keras_cce(p, y):
    p = jnp.clip(p, EPS, 1.0)
    return -(y * jnp.log(p)).sum(-1).reshape(p.shape[0], -1).mean(-1)


def _keras_scce(p, y):
    p = jnp.clip(p, EPS, 1.0)
    ll = jnp.take_along_axis(jnp.log(p), y[..., None].astype(jnp.int32), -1)[..., 0]
    return -ll.reshape(p.shape[0], -1).mean(-1)


KERAS_LOSSES = {"mse": keras_mse, "mean_squared_error": keras_mse, "binary_crossentropy": _keras_bce,
                "categorical_crossentropy": _keras_cce, "sparse_categorical_crossentropy": _keras_scce}


def get_objective(name: str, metrics: tuple = ()):
    """OBJECTIVES[name], plus the DERIVED metrics named in `metrics` (a task's declaration)."""
    try:
        fn = OBJECTIVES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; use one of {sorted(OBJECTIVES)}") from None
    unknown = [m for m in metrics if m not in DERIVED]
    if unknown:
        raise ValueError(f"unknown derived metric(s) {unknown} in the task's metrics; known: {sorted(DERIVED)}")
    if not metrics:
        return fn

    def with_derived(preds, targets):
        out = fn(preds, targets)
        return {**out, **{m: DERIVED[m](out) for m in metrics}}
    return with_derived

