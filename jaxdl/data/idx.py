"""IDX files, the MNIST format the source text reads: a big-endian header (magic, one
uint32 per dimension) followed by the bytes. Magic 2051 (0x803) for images
[N, rows, cols], 2049 (0x801) for labels [N]. Read gzipped or plain, validated
(magic, dimensions, length) with errors that name the file."""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

IMAGES, LABELS = 2051, 2049
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class IDXError(ValueError):
    pass


def read_idx(path: str | Path, expect_magic: int | None = None) -> np.ndarray:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"IDX file not found: {path}")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise IDXError(f"{path}: the gzip stream is damaged or cut short ({e}); download the file again") from e
    if len(raw) < 8:
        raise IDXError(f"{path}: {len(raw)} bytes is too short for an IDX header")
    magic = struct.unpack(">I", raw[:4])[0]
    if expect_magic is not None and magic != expect_magic:
        kind = {IMAGES: "images", LABELS: "labels"}.get(expect_magic, "?")
        raise IDXError(f"{path}: magic number {magic} (0x{magic:08x}) is not {expect_magic} (IDX {kind}); "
                       "is this the right file?")
    if raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise IDXError(f"{path}: magic 0x{magic:08x} is not an unsigned-byte IDX file")
    ndim = raw[3]
    if ndim not in (1, 3):
        raise IDXError(f"{path}: {ndim} dimensions; MNIST IDX files have 1 (labels) or 3 (images)")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise IDXError(f"{path}: header cut short")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    need = int(np.prod(dims))
    have = len(raw) - header
    if have != need:
        raise IDXError(f"{path}: header says {dims} = {need} bytes of data but the file holds {have}; "
                       "the file is truncated or damaged, download it again")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


def _find(directory: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (directory / name).exists():
            return directory / name
    raise FileNotFoundError(f"{stem}(.gz) not found in {directory}; it must hold the four MNIST IDX files "
                            "(set task.path=DIR)")


def load_mnist_idx(directory: str | Path, split: str):
    """-> images uint8 [N, 28, 28], labels uint8 [N], checked against each other."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"MNIST directory not found: {directory} (set task.path=DIR or JAXDL_DATA)")
    img_f, lab_f = (_find(directory, s) for s in FILES[split])
    images, labels = read_idx(img_f, IMAGES), read_idx(lab_f, LABELS)
    if images.ndim != 3 or labels.ndim != 1:
        raise IDXError(f"{img_f} / {lab_f}: expected images [N, rows, cols] and labels [N]")
    if len(images) != len(labels):
        raise IDXError(f"{img_f} has {len(images)} images but {lab_f} has {len(labels)} labels")
    if labels.max(initial=0) > 9:
        raise IDXError(f"{lab_f}: label {labels.max()} is not a digit 0-9")
    return images, labels
