"""Shared helpers for tests that compose the real Hydra config."""
import json
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
TINY_ECHO = ["task.length=200", "task.streams=4", "task.test_length=200", "model.hidden=16",
             "train.progress=false"]
QUIET = ["logger.mode=disabled", "train.progress=false"]
# the copy task at 2 bits, a pattern of 3 steps, 2 blank steps: T = 2 * 3 + 2 + 1 = 9 steps, full BPTT
TINY_COPY = ["task=copy", "task.pattern=3", "task.bits=2", "task.delay=2", "task.train_size=64",
             "task.val_size=16", "task.test_size=16", "task.batch=16", "tbptt.k1=9", "tbptt.k2=9",
             "model.hidden=8", "train.epochs=2"] + QUIET


def compose_cfg(overrides=()):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=list(overrides))
    OmegaConf.set_struct(cfg, False)
    cfg.pop("hydra", None)
    return cfg


def run_inprocess(tmp_path, overrides=(), name="t"):
    from jaxdl.configure import parse
    from jaxdl.main import run
    overrides = list(overrides)
    config = parse(compose_cfg(overrides), overrides)
    run_dir = Path(tmp_path) / name
    return run(config, run_dir, overrides, None, name), run_dir


def metrics_rows(run_dir, member=None) -> list[dict]:
    """The rows of run_dir/metrics.jsonl; member=i: that member's rows only."""
    rows = [json.loads(x) for x in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    return rows if member is None else [r for r in rows if r.get("member") == member]


def preempt_mid_epoch(tmp_path, overrides, name, epoch, updates, after=300):
    """Run `overrides` in tmp_path/name and send this process a real SIGTERM (from a thread,
    once the run has installed its own handler and written a mid-epoch checkpoint past update
    `after`); asserts the run stops with Preempted inside `epoch` of `updates` updates."""
    import os
    import signal
    import threading
    import time

    import pytest

    from jaxdl.train.errors import Preempted
    mid = tmp_path / name / "checkpoints" / "mid"
    ours = signal.getsignal(signal.SIGTERM)

    def watch():
        deadline = time.time() + 300
        while time.time() < deadline:
            steps = [int(x.name) for x in mid.iterdir() if x.name.isdigit()] if mid.is_dir() else []
            if any(s > after for s in steps) and signal.getsignal(signal.SIGTERM) is not ours:
                os.kill(os.getpid(), signal.SIGTERM)       # the run's StopFlag handles it, in the main thread
                return
            time.sleep(0.01)
    t = threading.Thread(target=watch)
    t.start()
    with pytest.raises(Preempted, match=rf"stopped in epoch {epoch} after update \d+ of {updates}"):
        run_inprocess(tmp_path, overrides, name)
    t.join()


def assert_same_checkpoint(tmp_path, a, b, step):
    """Every leaf of orbax checkpoint `step` equal in run dirs tmp_path/a and tmp_path/b."""
    import numpy as np
    import orbax.checkpoint as ocp

    def leaves(d):
        with ocp.CheckpointManager(tmp_path / d / "checkpoints") as m:
            return m.restore(step, args=ocp.args.StandardRestore())
    x, y = leaves(a), leaves(b)
    assert set(x) == set(y)
    for k in x:
        np.testing.assert_array_equal(np.asarray(x[k]), np.asarray(y[k]))


def perturbed(params, key):
    """params with every leaf moved off its init by 0.1 * N(0, 1) (seeded by `key`), so no
    gradient check passes on a zero or symmetric leaf."""
    import jax
    leaves, tdef = jax.tree.flatten(params)
    ks = jax.random.split(jax.random.PRNGKey(key), len(leaves))
    return jax.tree.unflatten(tdef, [a + 0.1 * jax.random.normal(k, a.shape, a.dtype) for a, k in zip(leaves, ks)])


def held_stream(key, T, B, D, O, zero_carry, dtype=None):
    """A random stream with one held step and a NONZERO initial carry, for the estimator tests:
    -> ((xs [T, B, D], ys [T, B] in [0, O), w [T, B] in [0.5, 1.5), mask [T, B]), carry0).
    Step 2 of stream 0 is held (mask 0, weight 0); carry0 has zero_carry's structure, each
    leaf 0.5 * N(0, 1). dtype None: JAX's default float."""
    import jax
    import jax.numpy as jnp
    kw = {} if dtype is None else {"dtype": dtype}
    k = jax.random.split(jax.random.PRNGKey(key), 4)
    xs = jax.random.normal(k[0], (T, B, D), **kw)
    ys = jax.random.randint(k[1], (T, B), 0, O)
    mask = jnp.ones((T, B), **kw).at[2, 0].set(0.0)
    w = jax.random.uniform(k[2], (T, B), minval=0.5, maxval=1.5, **kw) * mask
    leaves, tdef = jax.tree.flatten(zero_carry)
    carry0 = jax.tree.unflatten(tdef, [0.5 * jax.random.normal(jax.random.fold_in(k[3], i), a.shape, **kw)
                                       for i, a in enumerate(leaves)])
    return (xs, ys, w, mask), carry0


def online_gradient(name, params, data, carry0, key=0):
    """Run estimator `name` (xent) over a stream data = (xs [T, B, D], ys, w, mask) from carry0,
    parameters held fixed -> (the sum over steps of its per-step gradients, its final state)."""
    import jax

    from jaxdl.estimators import get_estimator
    from jaxdl.objectives import get_objective
    xs, ys, w, mask = data
    est = get_estimator(name, get_objective("xent"))

    def body(c, inp):
        carry, st = c
        carry, st, g, _ = est.step(params, carry, st, *inp)
        return (carry, st), g
    (_, st), gs = jax.lax.scan(body, (carry0, est.init(params, xs.shape[1], jax.random.PRNGKey(key))),
                               (xs, ys, w, mask))
    return jax.tree.map(lambda a: a.sum(0), gs), st


def load_script(relpath: str):
    """An experiments/ script (not a package module) imported by its path under the repo root."""
    import importlib.util
    path = ROOT / relpath
    spec = importlib.util.spec_from_file_location(path.stem + "_" + path.parent.name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
