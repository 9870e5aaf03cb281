"""MNIST from IDX files (validated), digits, and the classifier trainer."""
import gzip
import json
import struct

import numpy as np
import pytest

from jaxdl.data.idx import IDXError, load_mnist_idx, read_idx
from tests.helpers import run_inprocess


def _write_idx(path, arr, magic, gz=True, cut=0):
    data = struct.pack(">I", magic) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.astype(np.uint8).tobytes()
    data = data[: len(data) - cut]
    path.write_bytes(gzip.compress(data) if gz else data)


def test_idx_roundtrip_and_validation(tmp_path):
    img = np.random.default_rng(0).integers(0, 256, (5, 28, 28))
    _write_idx(tmp_path / "a.gz", img, 2051)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.gz", 2051), img)
    _write_idx(tmp_path / "raw", img, 2051, gz=False)
    np.testing.assert_array_equal(read_idx(tmp_path / "raw", 2051), img)
    with pytest.raises(IDXError, match=r"a\.gz: magic number 2051 .* is not 2049"):
        read_idx(tmp_path / "a.gz", 2049)
    _write_idx(tmp_path / "cut.gz", img, 2051, cut=100)
    with pytest.raises(IDXError, match=r"cut\.gz: header says .* truncated"):
        read_idx(tmp_path / "cut.gz", 2051)
    good = (tmp_path / "a.gz").read_bytes()
    (tmp_path / "broken.gz").write_bytes(good[: len(good) // 2])      # a download cut short
    with pytest.raises(IDXError, match=r"broken\.gz: .*(gzip stream|truncated)"):
        read_idx(tmp_path / "broken.gz")
    with pytest.raises(FileNotFoundError, match="nothere"):
        read_idx(tmp_path / "nothere")


def test_mismatched_image_and_label_counts(tmp_path):
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((4, 28, 28)), 2051)
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(3), 2049)
    with pytest.raises(IDXError, match="4 images but .* 3 labels"):
        load_mnist_idx(tmp_path, "train")
    with pytest.raises(FileNotFoundError, match="t10k-images"):
        load_mnist_idx(tmp_path, "test")


def test_real_mnist_is_the_real_mnist(shared_data):
    img, lab = load_mnist_idx(shared_data / "mnist", "train")
    assert img.shape == (60000, 28, 28)
    assert np.bincount(lab).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert lab[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert abs(img.mean() / 255 - 0.1307) < 1e-4 and abs(img.std() / 255 - 0.3081) < 1e-4
    _, lab_te = load_mnist_idx(shared_data / "mnist", "test")
    assert np.bincount(lab_te).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_seed_recipe_learns_a_slice_of_mnist(tmp_path, shared_data):
    """784-300-10 sigmoid, squared error, per-sample SGD, delta rule: one epoch over
    5000 images already classifies most of the 5000 first test images."""
    s, d = run_inprocess(tmp_path, ["experiment=mnist_seed", "task.limit=5000", "train.epochs=1",
                                    "train.eval_every=1", f"data_dir={shared_data}", "logger.mode=disabled",
                                    "train.progress=false"])
    assert s["num_params"] == 238510          # the source text's count: 300*(784+1) + 10*(300+1)
    assert s["final"]["test/error"] < 0.15
    assert (d / "checkpoints" / "1").exists()


def test_digits_runs_anywhere_and_stops_when_error_rises(tmp_path):
    base = ["task=digits", "model=mlp", "model.hidden=[16]", "optim=sgd", "optim.lr=2.0",
            "train.batch_size=16", "train.epochs=40", "train.eval_every=1", "train.stop_on_rise=true",
            "logger.mode=disabled", "train.progress=false"]
    s, d = run_inprocess(tmp_path, base)
    rows = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
    errs = [r["val/error"] for r in rows]           # the rule watches the held-out val split, never test
    if s["stopped_early_at"] is not None:
        assert errs[-1] > errs[-2]                          # it stopped because the error rose
        assert all(b <= a for a, b in zip(errs[:-2], errs[1:-1]))  # and not before
    else:
        assert all(b <= a for a, b in zip(errs, errs[1:]))
    assert s["final"]["test/error"] < 0.5                   # chance is 0.9


def test_classifier_resumes_bit_identical(tmp_path):
    import orbax.checkpoint as ocp
    base = ["task=digits", "model=mlp", "model.hidden=[20]", "optim=sgd", "optim.lr=0.5",
            "train.batch_size=8", "train.eval_every=1", "train.checkpoint_every=2",
            "logger.mode=disabled", "train.progress=false"]
    run_inprocess(tmp_path, base + ["train.epochs=6"], "full")
    run_inprocess(tmp_path, base + ["train.epochs=4"], "part")      # "killed" after epoch 4
    run_inprocess(tmp_path, base + ["train.epochs=6"], "part")      # rerun in the same dir resumes
    get = lambda n: ocp.CheckpointManager(tmp_path / n / "checkpoints").restore(
        6, args=ocp.args.StandardRestore())
    a, b = get("full"), get("part")
    for k in a:
        np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]))
    strip = lambda n: [{k: v for k, v in json.loads(x).items() if k != "epoch_time_s"}
                       for x in (tmp_path / n / "metrics.jsonl").read_text().splitlines()]
    assert strip("full") == strip("part")
