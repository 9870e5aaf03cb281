"""Image classification data for the MLP tasks: MNIST from IDX files or TFDS, and
scikit-learn's bundled 8x8 digits (no download). Returns float32 [N, pixels] in [0, 1]
and int32 labels."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from jaxdl.data.idx import load_mnist_idx


def mnist(source: str = "idx", path: str | None = None, data_dir: str | None = None, limit: int = 0):
    """-> (x_train [60000, 784], y_train, x_test [10000, 784], y_test)."""
    if source == "idx":
        d = Path(path) if path else Path(data_dir or ".") / "mnist"
        out = []
        for split in ("train", "test"):
            img, lab = load_mnist_idx(d, split)
            out += [img.reshape(len(img), -1).astype(np.float32) / 255.0, lab.astype(np.int32)]
    elif source == "tfds":
        out = _tfds_mnist(path)
    else:
        raise ValueError(f"task.source must be idx or tfds, got {source!r}")
    if limit:
        out = [out[0][:limit], out[1][:limit], out[2][:limit], out[3][:limit]]
    return tuple(out)


def _tfds_mnist(data_dir: str | None):
    """TFDS `mnist` by name (needs network on first use, or a prepared data_dir)."""
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:  # pragma: no cover
        raise RuntimeError("task.source=tfds needs tensorflow-datasets; use task.source=idx") from e
    try:
        builder = tfds.builder("mnist", data_dir=data_dir)
        builder.download_and_prepare()
        out = []
        for split in ("train", "test"):
            ds = builder.as_data_source(split=split)
            ex = [ds[i] for i in range(len(ds))]
            out += [np.stack([e["image"] for e in ex]).reshape(len(ex), -1).astype(np.float32) / 255.0,
                    np.asarray([e["label"] for e in ex], np.int32)]
        return tuple(out)
    except Exception as e:
        raise RuntimeError(
            f"TFDS could not provide mnist ({type(e).__name__}: {str(e)[:200]}). Without a network use the "
            "IDX files: task.source=idx task.path=DIR (../shared/data/mnist holds them)") from e


def digits(test_fraction: float = 0.25, seed: int = 0):
    """scikit-learn's 1797 8x8 digits, shuffled and split: (x_tr, y_tr, x_te, y_te), x in [0, 1]."""
    from sklearn.datasets import load_digits
    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)
    y = d.target.astype(np.int32)
    p = np.random.default_rng(seed).permutation(len(x))
    n_te = int(round(len(x) * test_fraction))
    te, tr = p[:n_te], p[n_te:]
    return x[tr], y[tr], x[te], y[te]
