"""Training a Keras-style task from Python, without a run dir."""
from __future__ import annotations

from jaxdl.data.prepared import WorkflowTask


def fit_workflow_task(task: WorkflowTask, epochs: int, seed: int = 0, verbose: int = 0):
    """Train a workflow task from Python with its model's `fit` (no run dir) and score
    its test split: -> ({"test/<metric>": value}, history, TrainState)."""
    import jax
    import jax.numpy as jnp
    c, (x, y, mask) = task.model, task.train
    ts, history = c.fit(c.init(jax.random.PRNGKey(seed)), x, y, batch_size=task.batch_size, epochs=epochs,
                        mask=mask, seed=seed, verbose=verbose, shuffle=task.shuffle and not c.model.stateful)
    xs, ys, ms, extra = task.splits["test"]
    preds = jnp.asarray(c.predict(ts, xs, task.batch_size, ms))
    return {f"test/{k}": float(v) for k, v in task.score(preds, (jnp.asarray(ys), extra)).items()}, history, ts
