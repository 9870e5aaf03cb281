"""The seed's small datasets: truth tables (chapter 1) and salary by years worked
(chapter 2), plus the image tasks of chapter 3 (digits, MNIST)."""
from __future__ import annotations

import numpy as np

from jaxdl.data import images

# The seed's sample order: [1,1], [0,0], [1,0], [0,1]
TRUTH_INPUTS = np.array([[1, 1], [0, 0], [1, 0], [0, 1]], np.float32)
TRUTH_LABELS = {"and": [1, 0, 0, 0], "or": [1, 0, 1, 1], "xor": [0, 0, 1, 1]}


def truth_table(op: str):
    """-> (x [4, 2], t [4]) in the seed's order."""
    return TRUTH_INPUTS, np.array(TRUTH_LABELS[op], np.float32)


def and_(seed: int = 0):
    return truth_table("and")


def or_(seed: int = 0):
    return truth_table("or")


def xor(seed: int = 0):
    return truth_table("xor")


def salary(seed: int = 0):
    """The seed's five people: years worked -> monthly salary."""
    return (np.array([[5], [3], [8], [1.4], [10.1]], np.float32),
            np.array([5500, 2300, 7600, 1800, 11400], np.float32))


def digits(seed: int = 0, test_fraction: float = 0.25):
    return images.digits(test_fraction, seed)


def mnist(seed: int = 0, source: str = "idx", path: str = "", limit: int = 0, data_dir: str = ""):
    return images.mnist(source, path or None, data_dir or None, limit)
