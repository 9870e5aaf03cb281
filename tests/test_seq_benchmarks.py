"""The copy task and sequential / permuted MNIST (jaxdl/tasks/copytask.py, smnist.py): the
layouts, the permutation's determinism across processes, the label-only loss, short runs
everywhere the stream engine runs (cells, TBPTT windows, an online estimator, replicas, a
stop mid-epoch), bad inputs refused before compute; and the task registry they live in."""
import inspect
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.configure import ConfigError, parse
from jaxdl.tasks import copytask, smnist
from tests.helpers import (QUIET, ROOT, TINY_COPY, assert_same_checkpoint, compose_cfg, preempt_mid_epoch,
                           run_inprocess)


def _rows(d):
    return [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------- the registry

def test_tasks_are_found_from_their_modules_and_every_kind_has_a_trainer():
    """copy and smnist are declared only in their own modules: the package, the runner and
    the config checks name neither, yet all three know them."""
    import jaxdl.configure as configure
    import jaxdl.runner as runner
    import jaxdl.tasks as pkg
    from jaxdl.tasks.registry import KINDS, tasks
    found = tasks()
    assert found["copy"].build is copytask.copy and found["smnist"].build is smnist.smnist
    assert found["smnist"].needs == ("data_dir",) and found["copy"].kind == found["smnist"].kind == "stream"
    for mod in (pkg, runner, configure):
        src = inspect.getsource(mod)
        assert "smnist" not in src and "copytask" not in src, mod.__name__
    assert set(KINDS) == set(runner.TRAINERS) == set(configure.MODEL_KINDS) == set(configure.USES)
    assert {"echo", "adding", "sine", "textgen", "marschall_add", "forecast", "seqclass", "addition", "and", "or",
            "xor", "salary", "digits", "mnist"} <= set(found)


# ---------------------------------------------------------------- copy

def test_a_copy_sequence_has_the_papers_layout():
    cfg = copytask.CopyConfig(pattern=3, bits=2, delay=2, train_size=8, val_size=0, test_size=4, batch=4)
    t = copytask.copy(cfg, seed=5)
    N, T, B, D = t.train.x.shape
    assert (N, T, B, D) == (2, 9, 4, 3) and t.train.y.shape == (2, 9, 4, 2) and cfg.steps() == 9
    x, y, w = (np.asarray(a).swapaxes(1, 2).reshape(-1, *a.shape[1:2], *a.shape[3:])
               for a in (t.train.x, t.train.y, t.train.weight))       # [n, T, ...]
    pattern = x[:, :3, :2]
    assert set(np.unique(pattern)) == {0.0, 1.0}
    np.testing.assert_array_equal(y[:, 6:], pattern)                    # reproduced on the last P steps
    assert not x[:, 3:, :2].any() and not y[:, :6].any()                # blank after the pattern; no target before
    np.testing.assert_array_equal(x[:, :, 2], np.tile(np.eye(9)[5], (8, 1)))     # the marker at step P + D only
    np.testing.assert_array_equal(w, np.tile([0, 0, 0, 0, 0, 0, 1, 1, 1], (8, 1)))
    assert t.reset == "batch" and t.chance == 0.5 and t.loss == "binary_xent"
    again, other = copytask.copy(cfg, seed=5), copytask.copy(cfg, seed=6)
    np.testing.assert_array_equal(again.train.x, t.train.x)
    assert not np.array_equal(other.train.x, t.train.x)


def test_exact_match_needs_every_bit_of_every_scored_step():
    y = jnp.array([[[1, 0]], [[0, 1]]], jnp.float32).repeat(3, 1)          # [T=2, B=3, bits=2]
    w = jnp.array([[0.0] * 3, [1.0] * 3])                                 # only step 1 is scored
    logits = jnp.where(y > 0.5, 1.0, -1.0)
    logits = logits.at[1, 1, 0].set(5.0)                                 # sequence 1: one wrong bit, scored
    logits = logits.at[0, 2, 0].set(-5.0)                                # sequence 2: wrong, but unscored
    assert float(copytask.exact_match(logits, y, w)) == pytest.approx(2 / 3)


def test_copy_trains_and_records_the_whole_sequence_match(tmp_path):
    s, _ = run_inprocess(tmp_path, TINY_COPY)
    f = s["final"]
    assert 0.0 <= f["test/exact_match"] <= 1.0 and 0.0 <= f["val/exact_match"] <= 1.0
    assert f["test/accuracy"] > 0.5 and s["tbptt"] == {"k1": 9, "k2": 9, "reset": "batch"}


@pytest.mark.parametrize("cell", ["gru", "rnn"])
def test_copy_runs_every_cell_with_a_truncated_window(tmp_path, cell):
    s, _ = run_inprocess(tmp_path, TINY_COPY + [f"model={cell}", "tbptt.k1=3", "tbptt.k2=4", "train.epochs=1"])
    assert np.isfinite(s["final"]["train/loss"]) and s["updates_per_epoch"] == 4 * 3


def test_copy_runs_an_online_estimator_and_replicas(tmp_path):
    online = [o for o in TINY_COPY if not o.startswith(("tbptt.", "model.hidden", "train.epochs"))]
    s, _ = run_inprocess(tmp_path, online + ["model.hidden=4", "estimator=rtrl", "estimator.every=3",
                                             "train.epochs=1", "train.replicas=2"], "rtrl")
    assert s["estimator"] == "rtrl" and len(s["per_member"]["test/accuracy"]) == 2
    assert np.isfinite(s["final"]["train/loss"])


@pytest.mark.slow
def test_copy_is_learned_with_full_bptt_and_not_with_k2_below_the_delay(tmp_path):
    """The truncation study on the copy task at a small size: k1 = k2 = T learns it; k2
    shorter than the span from the pattern to the output steps leaves it near chance."""
    base = ["task=copy", "task.pattern=5", "task.bits=3", "task.delay=10", "task.train_size=4000",
            "task.val_size=0", "task.test_size=500", "task.batch=50", "model.hidden=64", "optim.lr=0.01",
            "train.epochs=30"] + QUIET
    full, _ = run_inprocess(tmp_path, base + ["tbptt.k1=21", "tbptt.k2=21"], "full")
    short, _ = run_inprocess(tmp_path, base + ["tbptt.k1=3", "tbptt.k2=6"], "short")
    assert full["final"]["test/accuracy"] > 0.99, full["final"]
    assert short["final"]["test/accuracy"] < 0.6, short["final"]


@pytest.mark.slow
def test_a_stop_in_mid_epoch_of_copy_resumes_bit_identical(tmp_path):
    """Independent, reshuffled sequences: a SIGTERM inside epoch 2 and the relaunch end
    exactly where an uninterrupted run ends (orbax checkpoints and metrics). Slow (600
    one-update chunks, twice); CI runs the same mechanism on echo in tests/test_rundir.py."""
    base = ["task=copy", "task.pattern=2", "task.bits=2", "task.delay=1", "task.train_size=600",
            "task.val_size=0", "task.test_size=20", "task.batch=2", "tbptt.k1=6", "tbptt.k2=6", "model.hidden=4",
            "train.epochs=2", "train.chunk_s=1e-9", "train.checkpoint_every_s=0.2",
            "train.checkpoint_every=100"] + QUIET
    run_inprocess(tmp_path, base, "ref")
    preempt_mid_epoch(tmp_path, base, "r", epoch=2, updates=300)
    run_inprocess(tmp_path, base, "r")
    assert_same_checkpoint(tmp_path, "ref", "r", 2)
    assert _rows(tmp_path / "ref") == _rows(tmp_path / "r")


# ---------------------------------------------------------------- smnist without the files

def test_the_permutation_is_the_same_in_every_process():
    code = ("from jaxdl.tasks.smnist import permutation; import hashlib; "
            "print(hashlib.sha256(permutation(784, {}).tobytes()).hexdigest())")
    outs = [subprocess.run([sys.executable, "-c", code.format(s)], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.strip() for s in (3, 3, 4)]
    import hashlib
    here = hashlib.sha256(smnist.permutation(784, 3).tobytes()).hexdigest()
    assert outs[0] == outs[1] == here != outs[2]
    p = smnist.permutation(784, 3)
    assert sorted(p) == list(range(784)) and (p != np.arange(784)).mean() > 0.9


def test_sequences_in_row_and_pixel_order_and_permuted():
    img = np.arange(2 * 784, dtype=np.float32).reshape(2, 784)
    row = smnist.as_sequences(img, "row", None)
    pix = smnist.as_sequences(img, "pixel", None)
    assert row.shape == (2, 28, 28) and pix.shape == (2, 784, 1)
    np.testing.assert_array_equal(row[1, 3], img[1, 84:112])           # step 3 is the fourth row
    np.testing.assert_array_equal(pix[0, :, 0], img[0])
    perm = smnist.permutation(784, 0)
    np.testing.assert_array_equal(smnist.as_sequences(img, "pixel", perm)[0, :, 0], img[0, perm])


def test_the_label_is_scored_at_the_last_step_only():
    """label_batches: weight 1 at the last step of every real image, 0 elsewhere and on the
    filler; through the engine's evaluation the loss equals the cross-entropy of the last
    step's readout alone."""
    from jaxdl.config.schema import RecurrentConfig
    from jaxdl.data.prepared import SeqTask
    from jaxdl.models.rnn import rnn_apply, rnn_carry, rnn_init
    from jaxdl.objectives import softmax_xent
    from jaxdl.train.tbptt_trainer import evaluate_stream, stream_apply
    rng = np.random.default_rng(0)
    x = rng.random((5, 6, 3), dtype=np.float32)
    labels = np.array([1, 4, 0, 9, 2])
    b = smnist.label_batches(x, labels, 4)                              # 5 images -> 2 batches of 4, 3 fillers
    assert b.x.shape == (2, 6, 4, 3) and b.y.shape == (2, 6, 4)
    w = np.asarray(b.weight).swapaxes(1, 2).reshape(8, 6)
    np.testing.assert_array_equal(w[:5], np.tile([0, 0, 0, 0, 0, 1], (5, 1)))
    assert not w[5:].any()
    task = SeqTask("t", b, b, 3, 10, "xent", "test/accuracy", 0.1, "", reset="batch")
    params = rnn_init(jax.random.PRNGKey(1), 3, 8, 10, 1, "lstm")
    got = evaluate_stream(stream_apply(task, RecurrentConfig(hidden=8)), softmax_xent, rnn_carry, "batch", params,
                          jax.tree.map(jnp.asarray, b))
    logits, _ = rnn_apply(params, jnp.asarray(x.swapaxes(0, 1)), rnn_carry(params, 5))
    want = softmax_xent(logits[-1], jnp.asarray(labels))
    np.testing.assert_allclose(got["loss"], want["loss"].mean(), rtol=1e-5)
    np.testing.assert_allclose(got["accuracy"], want["accuracy"].mean(), rtol=1e-6)


# ---------------------------------------------------------------- bad inputs

@pytest.mark.parametrize("overrides, message", [
    (["task=smnist", "task.order=diagonal"], r"task\.order: must be one of \['row', 'pixel'\]"),
    (["task=copy", "task.pattern=0"], r"task\.pattern: must be >= 1"),
    (["task=smnist", "task.permutation_seed=3"], r"task\.permutation_seed=3: acts only with task\.permute=true"),
    (["task=smnist", "tbptt.k2=29"], r"tbptt\.k2=29: is longer than the sequences of task 'smnist' \(28 steps.*"
                                     r"tbptt\.k2 <= 28"),
    (["task=smnist", "task.order=pixel", "tbptt.k1=785", "tbptt.k2=785"], r"tbptt\.k1=785: .*\(784 steps"),
    (["task=copy", "task.delay=0", "tbptt.k1=10"], r"tbptt\.k2=48: is longer than the sequences of task 'copy' \(41 "),
])
def test_bad_inputs_are_refused_naming_the_key_and_the_fix(overrides, message):
    with pytest.raises(ConfigError, match=message):
        parse(compose_cfg(overrides), overrides)


def test_a_bad_input_exits_2_with_one_line_before_any_compute(tmp_path):
    p = subprocess.run([sys.executable, "-m", "jaxdl.main", "task=smnist", "task.order=diagonal",
                        f"hydra.run.dir={tmp_path / 'r'}"] + QUIET, cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "JAXDL_DATA": str(tmp_path / "nowhere")})
    assert p.returncode == 2, p.stderr[-2000:]
    last = p.stderr.strip().splitlines()[-1]
    assert "task.order" in last and "row" in last
    assert not (tmp_path / "r" / "metrics.jsonl").exists()


def test_missing_mnist_names_the_path_the_files_and_the_fix(tmp_path):
    overrides = ["task=smnist", f"task.path={tmp_path}"]
    with pytest.raises(FileNotFoundError, match=rf"task\.path={tmp_path}.*train-images-idx3-ubyte.*task\.source=tfds"):
        run_inprocess(tmp_path, overrides + QUIET)


# ---------------------------------------------------------------- smnist on the real files

def test_smnist_learns_from_a_few_hundred_images(tmp_path, shared_data):
    s, _ = run_inprocess(tmp_path, ["task=smnist", "task.limit=384", "task.batch=64", "task.val_size=5000",
                                    "model.hidden=32", "optim.lr=0.01", "train.epochs=3",
                                    f"data_dir={shared_data}"] + QUIET)
    assert s["smnist"] == {"order": "row", "steps": 28, "permute": False,
                           "images": {"train": 384, "val": 384, "test": 384}}
    assert s["final"]["test/accuracy"] > 0.3, s["final"]                # chance 0.1
    assert s["updates_per_epoch"] == 6


def test_permuted_pixel_smnist_records_its_permutation(tmp_path, shared_data):
    s, _ = run_inprocess(tmp_path, ["task=smnist", "task.order=pixel", "task.permute=true",
                                    "task.permutation_seed=7", "task.limit=64", "task.batch=32", "model.hidden=4",
                                    "tbptt.k1=784", "tbptt.k2=784", "train.epochs=1",
                                    f"data_dir={shared_data}"] + QUIET)
    import hashlib
    want = hashlib.sha256(smnist.permutation(784, 7).astype(np.int64).tobytes()).hexdigest()[:16]
    assert s["smnist"]["permutation_seed"] == 7 and s["smnist"]["permutation_sha256"] == want
    assert s["smnist"]["steps"] == 784 and np.isfinite(s["final"]["train/loss"])
