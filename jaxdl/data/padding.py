"""Sequences of different lengths -> one array [samples, maxlen, ...]: padding and
truncation, each 'pre' (at the start, the default as in Keras) or 'post'."""
from __future__ import annotations

import numpy as np


def pad_sequences(sequences, maxlen: int | None = None, padding: str = "pre", truncating: str = "pre",
                  value=0, dtype=None, return_mask: bool = False):
    """-> array [N, maxlen, ...] (and the mask [N, maxlen], 1 at real steps, if return_mask)."""
    if padding not in ("pre", "post") or truncating not in ("pre", "post"):
        raise ValueError(f"padding and truncating must be 'pre' or 'post', got {padding!r}, {truncating!r}")
    seqs = [np.asarray(s) for s in sequences]
    if not seqs:
        raise ValueError("pad_sequences: no sequences given")
    if maxlen is not None and (not isinstance(maxlen, (int, np.integer)) or maxlen < 1):
        raise ValueError(f"pad_sequences: maxlen must be an integer >= 1 (or None for the longest), got {maxlen!r}")
    L = maxlen if maxlen is not None else max(len(s) for s in seqs)
    if L < 1:
        raise ValueError("pad_sequences: every sequence is empty")
    tails = {s.shape[1:] for s in seqs if len(s)}
    if len(tails) > 1:
        raise ValueError(f"pad_sequences: steps have different shapes {sorted(tails)}")
    tail = tails.pop() if tails else ()
    nonempty = [s for s in seqs if len(s)]
    dtype = dtype or (np.result_type(*[s.dtype for s in nonempty]) if nonempty else np.float64)
    out = np.full((len(seqs), L, *tail), value, dtype=dtype)
    mask = np.zeros((len(seqs), L), np.float32)
    for i, s in enumerate(seqs):
        if len(s) == 0:
            continue
        s = s[-L:] if truncating == "pre" else s[:L]
        if padding == "pre":
            out[i, L - len(s):] = s
            mask[i, L - len(s):] = 1
        else:
            out[i, :len(s)] = s
            mask[i, :len(s)] = 1
    return (out, mask) if return_mask else out
