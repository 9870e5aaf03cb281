"""The copy task (Hochreiter & Schmidhuber 1997; Arjovsky et al. 2016), in the layout of
Zucchet et al. 2023 ("Online learning of long-range dependencies", NeurIPS; their code's
online_lru/dataloaders/copy.py): a random binary pattern of P steps of `bits` bits, D blank
steps, a stop marker, then P output steps on which the pattern is to be reproduced.

    step t:        0 .. P-1         P .. P+D-1     P+D            P+D+1 .. 2P+D
    x [bits + 1]   pattern bits     zeros          marker (last)  zeros
    y [bits]       -                -              -              pattern[t - (P+D+1)]
    loss weight    0                0              0              1

T = 2P + D + 1 steps (48 at the defaults P=20, D=7, as their Table 1 runs: copy_pattern_length
20, in_dim 8 = 7 bits + the marker, pad_length 7). Loss: per-bit sigmoid cross-entropy on the
output steps only; headline the bit accuracy there (chance 0.5); after training, the
fraction of test sequences reproduced exactly (every bit of every output step) beside it.
Each sequence is independent: the state resets every batch. The gradient that teaches the
first output step must reach back P + D + 1 steps to the pattern's first step, so a
truncation k2 below that leaves the early pattern steps unlearnable.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.config.fields import setting
from jaxdl.data.batch import Batch
from jaxdl.data.prepared import SeqTask
from jaxdl.tasks.registry import Task


@dataclass(frozen=True)
class CopyConfig:
    REQUIRED_RESET: ClassVar[str] = "batch"     # independent sequences: the state resets every batch
    name: str = "copy"
    pattern: int = setting(20, ge=1, doc="P: steps of the pattern to copy (Zucchet et al. 2023: 20)")
    bits: int = setting(7, ge=1, doc="bits per pattern step (Zucchet et al. 2023: 7)")
    delay: int = setting(7, ge=0, doc="D: blank steps between the pattern and the stop marker (theirs: 7)")
    train_size: int = setting(20000, ge=1, doc="training sequences (Zucchet et al. 2023: 20000)")
    val_size: int = setting(1000, ge=0, doc="0: no val split")
    test_size: int = setting(1000, ge=1)
    batch: int = setting(50, ge=1, doc="sequences per batch (the streams; theirs: 50)")

    def steps(self) -> int:
        """T = 2P + D + 1: one sequence's steps."""
        return 2 * self.pattern + self.delay + 1

    def data_bytes(self) -> int:
        """x (bits + 1), y (bits), mask, weight per step of every sequence, twice (built, on the device)."""
        return 2 * (self.train_size + self.val_size + self.test_size) * self.steps() * 4 * (2 * self.bits + 3)


def copy_sequences(pattern: np.ndarray, delay: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """pattern [n, P, bits] of 0/1 -> x [n, T, bits + 1], y [n, T, bits], weight [n, T]."""
    n, P, bits = pattern.shape
    T = 2 * P + delay + 1
    x = np.zeros((n, T, bits + 1), np.float32)
    y = np.zeros((n, T, bits), np.float32)
    w = np.zeros((n, T), np.float32)
    x[:, :P, :bits] = pattern
    x[:, P + delay, bits] = 1.0
    y[:, T - P:] = pattern
    w[:, T - P:] = 1.0
    return x, y, w


def exact_match(logits, y, weight) -> jnp.ndarray:
    """The fraction of sequences whose every bit on every weighted step is right.
    logits, y [T, B, bits]; weight [T, B]."""
    wrong = ((logits > 0) != (y > 0.5)).any(-1) & (weight > 0)
    return (~wrong.any(0)).mean()


def copy(cfg: CopyConfig, seed: int) -> SeqTask:
    """Batches [N, T, B, ...] of independent sequences; train, val and test patterns are
    drawn in that order from one generator seeded by `seed`."""
    rng = np.random.default_rng(seed)
    B = cfg.batch

    def make(n):
        if n % B:
            raise ValueError(f"copy: size {n} is not a multiple of task.batch={B}; set the sizes to multiples "
                             f"of task.batch")
        pat = rng.integers(0, 2, (n, cfg.pattern, cfg.bits)).astype(np.float32)
        x, y, w = copy_sequences(pat, cfg.delay)
        to_tm = lambda a: a.reshape(n // B, B, *a.shape[1:]).swapaxes(1, 2)     # -> [N, T, B, ...]
        return Batch(to_tm(x), to_tm(y), to_tm(np.ones_like(w)), to_tm(w))

    train = make(cfg.train_size)
    val = make(cfg.val_size) if cfg.val_size else None
    test = make(cfg.test_size)

    def after(state, run_dir):
        """Whole-sequence exact match on test (and val): the mean over the members in "final",
        each member's in summary.json's "copy" (in the final state's order: every member, or
        halving's survivors, summary.json member_stats_over)."""
        from jaxdl.models.rnn import rnn_apply, rnn_carry
        out, each = {}, {}
        run = jax.jit(lambda p, b: exact_match(rnn_apply(p, b.x, rnn_carry(p, B), b.mask)[0], b.y, b.weight))
        for split, data in (("val", val), ("test", test)):
            if data is None:
                continue
            scores = []
            members = jax.tree.leaves(state["params"])[0].shape[0]
            for m in range(members):
                p = jax.tree.map(lambda a: a[m], state["params"])
                scores.append(np.mean([float(run(p, jax.tree.map(lambda a: jnp.asarray(a[i]), data)))
                                       for i in range(data.mask.shape[0])]))
            out[f"{split}/exact_match"] = float(np.mean(scores))
            each[f"{split}/exact_match"] = [float(x) for x in scores]
        print(f"[jaxdl] copy: whole sequences reproduced exactly: {out['test/exact_match']:.4f} of test "
              f"(bit accuracy is the headline; chance for a whole sequence is 2^-{cfg.pattern * cfg.bits})")
        return {"final": out, "copy": {"per_member": each}}

    return SeqTask("copy", train, test, cfg.bits + 1, cfg.bits, "binary_xent", "test/accuracy", 0.5,
                   "chance = 0.5 per bit (a coin flip)", reset=cfg.REQUIRED_RESET, val=val, after=after)


TASKS = (Task("copy", copy, CopyConfig, "stream"),)
