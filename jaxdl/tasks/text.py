"""Sequence generation (the source text's third problem): a character-level LSTM trained
statefully with TBPTT on a text, reporting bits per character on held-out text,
and "dreaming" new text by sampling at a chosen temperature.

source=file reads `path` (default: <data_dir>/tinyshakespeare/input.txt, or any
UTF-8 file); source=tfds asks TFDS for `tiny_shakespeare` (needs a network once).
The text is split into val (its start, val_fraction), train and test (its last
test_fraction); each is cut into B contiguous streams (char-rnn style) trained and
evaluated statefully.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.config.fields import setting
from jaxdl.data.batch import Batch
from jaxdl.data.prepared import SeqTask
from jaxdl.models.rnn import rnn_apply, rnn_carry
from jaxdl.tasks.registry import Task


def read_text(source: str, path: str, data_dir: str) -> str:
    if source == "file":
        p = Path(path) if path else Path(data_dir) / "tinyshakespeare" / "input.txt"
        if not p.exists():
            looked = (f"task.path={p}" if path else
                      f"{p} (data_dir/tinyshakespeare/input.txt; data_dir is $JAXDL_DATA, else data/)")
            raise FileNotFoundError(
                f"text file not found: looked at {looked}. Get it either way: (1) task.source=tfds, which downloads "
                "tiny_shakespeare through tensorflow-datasets (needs a network once); (2) save tiny-shakespeare's "
                f"input.txt (or any UTF-8 text) as {p}, or set task.path=FILE")
        try:
            return p.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"task.path={p}: not UTF-8 text ({e.reason} at byte {e.start}); "
                             "give a UTF-8 text file as task.path") from None
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


def _streams(ids: np.ndarray, B: int, part: str = "the text") -> Batch:
    """Characters -> B contiguous streams, time-major [1, T, B] (x = ids, y = the next id).
    `part` names the split for the error message."""
    T = (len(ids) - 1) // B
    if T < 2:
        raise ValueError(f"{part}: {len(ids)} characters are too few for task.streams={B} (each stream needs at "
                         f"least 2 steps, so at least {2 * B + 1} characters); lower task.streams, or give a "
                         "longer text (task.path, task.max_chars)")
    x = ids[: T * B].reshape(B, T).T                 # [T, B]
    y = ids[1: T * B + 1].reshape(B, T).T
    ones = np.ones((T, B), np.float32)
    return Batch(x[None].astype(np.int32), y[None].astype(np.int32), ones[None], ones[None])


@dataclass(frozen=True)
class TextgenConfig:
    name: str = "textgen"
    source: str = setting("file", choices=("file", "tfds"))
    path: str = setting("", doc="default: <data_dir>/tinyshakespeare/input.txt")
    max_chars: int = setting(300000, ge=0, doc="0: the whole text")
    streams: int = setting(32, ge=1)
    test_fraction: float = setting(0.1, gt=0, lt=1)
    val_fraction: float = setting(0.05, ge=0, lt=1, doc="held out for validation, from where val_at says")
    val_at: str = setting("start", choices=("start", "before_test"),
                          doc="the val block: the text's start, or the text just before the test part")
    temperature: float = setting(0.8, gt=0)
    sample_chars: int = setting(400, ge=0)
    prime: str = "ROMEO:\n"


def textgen(cfg: TextgenConfig, seed: int, data_dir: str = "") -> SeqTask:
    """The text -> val, train and test (the last `test_fraction`), each cut into `streams`
    contiguous streams. val is the first `val_fraction` of the text (val_at="start": train
    is all the text between val and test, so it ends where test begins, as with no val
    split), or the `val_fraction` just before test (val_at="before_test": the test part's
    own play is then held out of training, which costs ~0.25 test bits/char here). After
    training, replica 0 dreams `sample_chars` characters into sample.txt."""
    source, path, max_chars, streams = cfg.source, cfg.path, cfg.max_chars, cfg.streams
    test_fraction, val_fraction = cfg.test_fraction, cfg.val_fraction
    temperature, sample_chars, prime = cfg.temperature, cfg.sample_chars, cfg.prime
    text = read_text(source, path, data_dir)
    if max_chars:
        text = text[:max_chars]
    for key, v in (("test_fraction", test_fraction), ("val_fraction", val_fraction)):
        if not 0 <= v < 1 or (key == "test_fraction" and v == 0):
            raise ValueError(f"task.{key} must be in {'(0' if key == 'test_fraction' else '[0'}, 1), got {v}")
    vocab = sorted(set(text))
    index = {c: i for i, c in enumerate(vocab)}
    ids = np.array([index[c] for c in text], np.int32)
    n_test, n_val = int(len(ids) * test_fraction), int(len(ids) * val_fraction)
    test = ids[len(ids) - n_test:]
    if cfg.val_at == "start":
        val, train = ids[:n_val], ids[n_val:len(ids) - n_test]
    else:
        train, val = ids[:len(ids) - n_test - n_val], ids[len(ids) - n_test - n_val:len(ids) - n_test]
    counts = np.bincount(train, minlength=len(vocab)) + 1e-9
    pr = counts / counts.sum()
    unigram_bpc = float(-(pr * np.log2(pr)).sum())
    vocab = tuple(vocab)

    def after(state, run_dir):
        params = jax.tree.map(lambda a: a[0], state["params"])     # replica 0
        text = sample(params, vocab, prime, sample_chars, temperature, jax.random.PRNGKey(seed))
        (run_dir / "sample.txt").write_text(text)
        print(f"[jaxdl] dreamed at temperature {temperature} (sample.txt):\n{text}\n")
        return {}

    where = f"task.path={path or 'tinyshakespeare/input.txt'}"
    parts = {name: _streams(a, streams, f"{where}, its {name} part ({len(ids)} characters in all)")
             for name, a in (("train", train), ("test", test), ("val", val)) if name != "val" or n_val}
    return SeqTask("textgen", parts["train"], parts["test"], len(vocab), len(vocab),
                   "xent", "test/bpc", unigram_bpc,
                   f"a unigram model of the training characters gives {unigram_bpc:.3f} bits/char "
                   f"(uniform over {len(vocab)}: {math.log2(len(vocab)):.3f})",
                   higher_is_better=False, token_inputs=True, vocab=vocab,
                   val=parts.get("val"), after=after, metrics=("bpc",))


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


TASKS = (Task("textgen", textgen, TextgenConfig, "stream", ("data_dir",)),)
