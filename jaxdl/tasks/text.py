"""Sequence generation (the seed's third problem): a character-level LSTM trained
statefully with TBPTT on a text, reporting bits per character on held-out text,
and "dreaming" new text by sampling at a chosen temperature.

source=file reads `path` (default: <data_dir>/tinyshakespeare/input.txt, or any
UTF-8 file); source=tfds asks TFDS for `tiny_shakespeare` (needs a network once).
The text is split into train (first 1 - test_fraction) and test (the rest); each
is cut into B contiguous streams (char-rnn style) trained/evaluated statefully.
"""
from __future__ import annotations

import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.models.rnn import rnn_apply, rnn_carry
from jaxdl.tasks.base import SeqTask
from jaxdl.train.tbptt import Batch


def read_text(source: str, path: str, data_dir: str) -> str:
    if source == "file":
        p = Path(path) if path else Path(data_dir) / "tinyshakespeare" / "input.txt"
        if not p.exists():
            raise FileNotFoundError(f"text file not found: {p}; set task.path=FILE (any UTF-8 text) "
                                    "or task.source=tfds where there is a network")
        return p.read_text(encoding="utf-8")
    if source == "tfds":
        try:
            import tensorflow_datasets as tfds
            b = tfds.builder("tiny_shakespeare", data_dir=path or None)
            b.download_and_prepare()
            ds = b.as_data_source(split="train")
            return ds[0]["text"].decode("utf-8")
        except Exception as e:
            raise RuntimeError(f"TFDS could not provide tiny_shakespeare ({type(e).__name__}: {str(e)[:200]}); "
                               "use task.source=file task.path=FILE") from e
    raise ValueError(f"task.source must be file or tfds, got {source!r}")


def _streams(ids: np.ndarray, B: int) -> Batch:
    T = (len(ids) - 1) // B
    if T < 2:
        raise ValueError(f"{len(ids)} characters are too few for {B} streams")
    x = ids[: T * B].reshape(B, T).T                 # [T, B]
    y = ids[1: T * B + 1].reshape(B, T).T
    ones = np.ones((T, B), np.float32)
    return Batch(x[None].astype(np.int32), y[None].astype(np.int32), ones[None], ones[None])


def textgen(seed: int = 0, source: str = "file", path: str = "", data_dir: str = "",
            max_chars: int = 300000, streams: int = 32, test_fraction: float = 0.1,
            temperature: float = 0.8, sample_chars: int = 400, prime: str = "ROMEO:\n") -> SeqTask:
    text = read_text(source, path, data_dir)
    if max_chars:
        text = text[:max_chars]
    if not 0 < test_fraction < 1:
        raise ValueError(f"task.test_fraction must be in (0, 1), got {test_fraction}")
    vocab = sorted(set(text))
    index = {c: i for i, c in enumerate(vocab)}
    ids = np.array([index[c] for c in text], np.int32)
    n_test = int(len(ids) * test_fraction)
    train, test = ids[:-n_test], ids[-n_test:]
    counts = np.bincount(train, minlength=len(vocab)) + 1e-9
    pr = counts / counts.sum()
    unigram_bpc = float(-(pr * np.log2(pr)).sum())
    return SeqTask("textgen", _streams(train, streams), _streams(test, streams), len(vocab), len(vocab),
                   "xent", "test/bpc", unigram_bpc,
                   f"a unigram model of the training characters gives {unigram_bpc:.3f} bits/char "
                   f"(uniform over {len(vocab)}: {math.log2(len(vocab)):.3f})",
                   higher_is_better=False, token_inputs=True, vocab=tuple(vocab),
                   sampling={"prime": prime, "chars": sample_chars, "temperature": temperature})


def sample(params, vocab, prime: str, n: int, temperature: float, key) -> str:
    """Dream n characters after `prime` at `temperature` (lower: more conservative)."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    V = len(vocab)
    index = {c: i for i, c in enumerate(vocab)}
    prime = "".join(c for c in prime if c in index) or vocab[0]
    carry = rnn_carry(params, 1)
    xs = jax.nn.one_hot(jnp.array([index[c] for c in prime])[:, None], V)
    logits, carry = rnn_apply(params, xs, carry)

    def step(c, k):
        carry, last = c
        nxt = jax.random.categorical(k, last / temperature)
        out, carry = rnn_apply(params, jax.nn.one_hot(nxt[None, None], V), carry)
        return (carry, out[0, 0]), nxt
    _, ids = jax.lax.scan(step, (carry, logits[-1, 0]), jax.random.split(key, n))
    return prime + "".join(vocab[int(i)] for i in np.asarray(ids))
