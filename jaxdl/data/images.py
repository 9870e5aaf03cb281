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
            try:
                img, lab = load_mnist_idx(d, split)
            except FileNotFoundError as e:
                raise FileNotFoundError(missing_mnist(d, bool(path), str(e))) from None
            out += [img.reshape(len(img), -1).astype(np.float32) / 255.0, lab.astype(np.int32)]
    elif source == "tfds":
        out = _tfds_mnist(path, data_dir)
    else:
        raise ValueError(f"task.source must be idx or tfds, got {source!r}")
    if limit:
        out = [out[0][:limit], out[1][:limit], out[2][:limit], out[3][:limit]]
    return tuple(out)


IDX_NAMES = ("train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
             "t10k-labels-idx1-ubyte.gz")


def missing_mnist(where: Path, from_path: bool, detail: str) -> str:
    """The error for MNIST IDX files that are not there: where it looked and the two ways to get them."""
    looked = f"task.path={where}" if from_path else f"{where} (data_dir/mnist; data_dir is $JAXDL_DATA, else data/)"
    return (f"MNIST not found: looked in {looked}: {detail}. Get it either way: (1) task.source=tfds, which "
            f"downloads MNIST through tensorflow-datasets (needs a network once); (2) put the four IDX files "
            f"({IDX_NAMES}, gzipped or not) in {where}, or point JAXDL_DATA at a folder whose mnist/ holds them")


def _tfds_mnist(tfds_dir: str | None, data_dir: str | None = None):
    """TFDS `mnist` by name (needs network on first use, or a prepared TFDS data dir `tfds_dir`)."""
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:  # pragma: no cover
        raise RuntimeError("task.source=tfds needs tensorflow-datasets; use task.source=idx") from e
    try:
        builder = tfds.builder("mnist", data_dir=tfds_dir or None)
        builder.download_and_prepare()
        out = []
        for split in ("train", "test"):
            ds = builder.as_data_source(split=split)
            ex = [ds[i] for i in range(len(ds))]
            out += [np.stack([e["image"] for e in ex]).reshape(len(ex), -1).astype(np.float32) / 255.0,
                    np.asarray([e["label"] for e in ex], np.int32)]
        return tuple(out)
    except Exception as e:
        idx_dir = Path(data_dir or "data") / "mnist"
        raise RuntimeError(
            f"TFDS could not provide mnist ({type(e).__name__}: {str(e)[:200]}). Without a network use the "
            f"IDX files: put {IDX_NAMES} in {idx_dir} (data_dir/mnist; data_dir is $JAXDL_DATA, else data/) "
            "and run with task.source=idx, or task.path=DIR for another folder") from e


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
