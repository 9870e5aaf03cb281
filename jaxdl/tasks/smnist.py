"""Sequential MNIST (Le et al. 2015; Arjovsky et al. 2016; Cooijmans et al. 2017): each
image is read as a sequence and classified from the state after its last step.

    order=row    28 steps of 28 pixels (one row per step)
    order=pixel  784 steps of 1 pixel (raster order)
    permute      one fixed permutation of the steps, drawn from task.permutation_seed alone
                 (the same in every run and process; recorded in summary.json): pMNIST

x [T, B, 784 / T] pixels scaled to [0, 1] (intensity / 255, as the papers); y [T, B] the
label, whose loss weight is 1 at the last step and 0 elsewhere (the readout runs at every
step; only the last one is scored). Every image is an independent sequence: the state
resets every batch. Train: the first 60,000 - val_size training images; val: the last
val_size of them; test: the 10,000 test images. A split whose size is not a multiple of
task.batch is filled up with sequences of weight 0 (they count in no loss or metric).

With TBPTT(k1, k2) below the sequence length the label's gradient reaches only the last k2
steps (k1 = k2 = T is full BPTT): the truncation is itself an ablation.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import ClassVar, Optional

import numpy as np

from jaxdl.config.fields import ConfigError, setting
from jaxdl.data import images
from jaxdl.data.batch import Batch
from jaxdl.data.idx import IDXError
from jaxdl.data.prepared import SeqTask
from jaxdl.tasks.registry import Task

PIXELS = 784


@dataclass(frozen=True)
class SmnistConfig:
    REQUIRED_RESET: ClassVar[str] = "batch"     # independent sequences: the state resets every batch
    name: str = "smnist"
    order: str = setting("row", choices=("row", "pixel"), doc="row: 28 steps of 28 pixels; pixel: 784 steps of 1")
    permute: bool = setting(False, doc="one fixed permutation of the steps (pMNIST)")
    permutation_seed: Optional[int] = setting(None, ge=0, doc="permute=true only: the permutation's own seed "
                                                              "(null: 0)")
    source: str = setting("idx", choices=("idx", "tfds"))
    path: str = setting("", doc="a folder with the four IDX files (default: <data_dir>/mnist)")
    val_size: int = setting(5000, ge=0, doc="the last training images (the usual 55,000 / 5,000 split)")
    limit: int = setting(0, ge=0, doc=">0: only the first `limit` training, val and test images")
    batch: int = setting(128, ge=1, doc="sequences per batch (the streams)")

    def steps(self) -> int:
        """T: one sequence's steps."""
        return 28 if self.order == "row" else PIXELS

    def check(self) -> None:
        if self.permutation_seed is not None and not self.permute:
            raise ConfigError(f"task.permutation_seed={self.permutation_seed}: acts only with task.permute=true; "
                              "add task.permute=true or remove task.permutation_seed")

    def data_bytes(self) -> int:
        """x, and y, mask, weight per step, of the 70,000 images (or the limit), twice."""
        n = 3 * self.limit if self.limit else 70000
        return 2 * n * (PIXELS * 4 + self.steps() * 12)


def permutation(steps: int, seed: int) -> np.ndarray:
    """The fixed permutation of `steps` steps drawn from `seed` alone (numpy's PCG64)."""
    return np.random.default_rng(seed).permutation(steps)


def as_sequences(images_flat: np.ndarray, order: str, perm: np.ndarray | None) -> np.ndarray:
    """[n, 784] -> [n, T, 784 / T] in `order`, its steps permuted by `perm`."""
    T = 28 if order == "row" else PIXELS
    seq = images_flat.reshape(len(images_flat), T, PIXELS // T)
    return seq[:, perm] if perm is not None else seq


def label_batches(x: np.ndarray, labels: np.ndarray, B: int) -> Batch:
    """x [n, T, D], labels [n] -> Batch [N, T, B, ...]: y holds the label at every step, the
    weight is 1 at the last step only; filled up to a multiple of B with weight-0 sequences."""
    n, T = x.shape[:2]
    pad = -n % B
    if pad:
        x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
        labels = np.concatenate([labels, np.zeros(pad, labels.dtype)])
    w = np.zeros((n + pad, T), np.float32)
    w[:n, -1] = 1.0
    y = np.repeat(labels.astype(np.int32)[:, None], T, 1)
    m = np.ones((n + pad, T), np.float32)
    to_tm = lambda a: a.reshape(len(a) // B, B, *a.shape[1:]).swapaxes(1, 2)     # -> [N, T, B, ...]
    return Batch(to_tm(x), to_tm(y), to_tm(m), to_tm(w))


def smnist(cfg: SmnistConfig, seed: int, data_dir: str = "") -> SeqTask:
    """The splits as Batches [N, T, B, ...] of independent sequences (the seed plays no part:
    the data and the permutation are fixed)."""
    try:
        x_tr, y_tr, x_te, y_te = images.mnist(cfg.source, cfg.path or None, data_dir or None, 0)
    except IDXError as e:
        where = f"task.path={cfg.path}" if cfg.path else "data_dir/mnist (data_dir is $JAXDL_DATA, else data/)"
        raise IDXError(f"MNIST in {where} is damaged: {e}") from None
    if not 0 <= cfg.val_size < len(x_tr):
        raise ConfigError(f"task.val_size: must be in 0..{len(x_tr) - 1}, got {cfg.val_size}")
    k = len(x_tr) - cfg.val_size
    n = min(cfg.limit, k) if cfg.limit else k
    nv = min(cfg.limit, cfg.val_size) if cfg.limit else cfg.val_size
    nt = min(cfg.limit, len(x_te)) if cfg.limit else len(x_te)
    pseed = (cfg.permutation_seed or 0) if cfg.permute else None
    perm = permutation(cfg.steps(), pseed) if cfg.permute else None
    seqs = lambda a: as_sequences(a, cfg.order, perm)
    train = label_batches(seqs(x_tr[:n]), y_tr[:n], cfg.batch)
    val = label_batches(seqs(x_tr[k:k + nv]), y_tr[k:k + nv], cfg.batch) if nv else None
    test = label_batches(seqs(x_te[:nt]), y_te[:nt], cfg.batch)
    record = {"order": cfg.order, "steps": cfg.steps(), "permute": cfg.permute, "images": {
        "train": int(n), "val": int(nv), "test": int(nt)}}
    if perm is not None:
        record.update(permutation_seed=pseed, permutation_sha256=hashlib.sha256(perm.astype(np.int64).tobytes())
                      .hexdigest()[:16])
    name = "smnist" + (" (permuted)" if cfg.permute else "")
    return SeqTask("smnist", train, test, PIXELS // cfg.steps(), 10, "xent", "test/accuracy", 0.1,
                   f"chance = 1/10 (the label is scored at the last of {cfg.steps()} steps only; {name})",
                   reset=cfg.REQUIRED_RESET, val=val, after=lambda state, run_dir: {"smnist": record})


TASKS = (Task("smnist", smnist, SmnistConfig, "stream", ("data_dir",)),)
