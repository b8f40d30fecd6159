"""CIFAR-10 from three sources, class-balanced subsets and the thesis' augmentation.

Sources:
- ``"keras"``: the official archive through Keras' downloader and cache;
- a path to a local ``.npz`` (keys ``x_train, y_train, x_test, y_test``);
- ``"sample"``: the small class-balanced sample bundled with the package;
- ``"auto"``: ``$KAFNOTES_CIFAR10`` if set, otherwise the official archive.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

ENV_VAR = "KAFNOTES_CIFAR10"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
           "dog", "frog", "horse", "ship", "truck")
KEYS = ("x_train", "y_train", "x_test", "y_test")
SAMPLE_FILE = "cifar10-sample.npz"


class DataError(ValueError):
    """Raised for a CIFAR-10 source that cannot be used; the message says how to fix it."""


@dataclass(frozen=True)
class Cifar10:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str  # a human-readable label for tables and run records

    def __iter__(self):  # allows ``(x, y), (xt, yt) = ...``-style unpacking in two steps
        return iter(((self.x_train, self.y_train), (self.x_test, self.y_test)))

    @cached_property
    def checksum(self) -> str:
        """SHA-256 (first 16 hex digits) of every image and label, in order: what run records are keyed
        by, so a record is reused on the same data whatever its file is called, and never on other data."""
        h = hashlib.sha256()
        for a in (self.x_train, self.y_train, self.x_test, self.y_test):
            h.update(str((a.dtype, a.shape)).encode())
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()[:16]


def sample_path() -> Path:
    return Path(__file__).with_name("_data") / SAMPLE_FILE


def describe_source(source: str) -> str:
    """The label a table should carry for numbers measured on ``source``."""
    if source == "sample" or Path(source).resolve() == sample_path().resolve():
        return "bundled sample of the JPEG-q75 CIFAR-10 stand-in"
    if source == "keras":
        return "CIFAR-10"
    name = Path(source).name
    if "jpeg75" in name:
        return f"CIFAR-10 (JPEG-q75 stand-in, {name})"
    return f"CIFAR-10 from {name}"


def resolve_source(source: str | os.PathLike | None) -> str:
    if source is None or source == "auto":
        return os.environ.get(ENV_VAR) or "keras"
    return os.fspath(source)


def load_cifar10(source: str | os.PathLike | None = "auto", n_train: int | None = None,
                 n_test: int | None = None, seed: int = 0) -> Cifar10:
    """Float32 NHWC images in [0, 1] and int32 labels, optionally a class-balanced subset.

    ``n_train``/``n_test`` must be multiples of 10 (the same count per class); the
    subset is deterministic for a given ``seed``.
    """
    src = resolve_source(source)
    if src == "sample":
        arrays = _read_npz(sample_path())
    elif src == "keras":
        arrays = _download()
    else:
        arrays = _read_npz(Path(src))
    x_tr, y_tr = _validate(arrays["x_train"], arrays["y_train"], "train", src)
    x_te, y_te = _validate(arrays["x_test"], arrays["y_test"], "test", src)
    rng = np.random.default_rng(seed)
    i_tr = balanced_indices(y_tr, n_train, rng, "n_train")
    i_te = balanced_indices(y_te, n_test, rng, "n_test")
    return Cifar10(_to_float(x_tr[i_tr]), y_tr[i_tr], _to_float(x_te[i_te]), y_te[i_te],
                   describe_source(src))


def balanced_indices(y: np.ndarray, n: int | None, rng: np.random.Generator,
                     what: str = "n") -> np.ndarray:
    """Sorted indices of ``n`` examples, ``n/10`` per class; all indices if ``n`` is None."""
    if n is None:
        return np.arange(len(y))
    if n <= 0 or n % 10:
        raise DataError(f"{what}={n}: use a positive multiple of 10 so every class gets the same count.")
    per_class = n // 10
    picks = []
    for c in range(10):
        members = np.flatnonzero(y == c)
        if len(members) < per_class:
            raise DataError(f"{what}={n} needs {per_class} images of class {c} but the source has "
                            f"{len(members)}: lower {what} or use a bigger source (see {ENV_VAR}).")
        picks.append(rng.choice(members, per_class, replace=False))
    return np.sort(np.concatenate(picks))


def _read_npz(path: Path) -> dict:
    if not path.is_file():
        raise DataError(f"CIFAR-10 file not found: {path}. Point {ENV_VAR} (or source=) at an .npz "
                        f"with keys {', '.join(KEYS)}, or use source='sample'.")
    with np.load(path, allow_pickle=False) as f:
        missing = [k for k in KEYS if k not in f.files]
        if missing:
            raise DataError(f"{path} lacks keys {missing} (has {sorted(f.files)}). Save it with "
                            f"np.savez(path, x_train=..., y_train=..., x_test=..., y_test=...).")
        return {k: f[k] for k in KEYS}


def _download() -> dict:
    import keras
    try:
        (x_tr, y_tr), (x_te, y_te) = keras.datasets.cifar10.load_data()
    except Exception as e:  # urllib raises several kinds offline
        raise DataError(
            f"Could not download CIFAR-10 ({type(e).__name__}: {e}). Offline, set {ENV_VAR} to a local "
            f".npz with keys {', '.join(KEYS)}, or use source='sample' (the bundled sample).") from e
    return dict(x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)


def _validate(x, y, split: str, src: str):
    if x.ndim != 4 or x.shape[1:] != (32, 32, 3):
        raise DataError(f"x_{split} in {src} has shape {x.shape}; CIFAR-10 needs (N, 32, 32, 3), "
                        f"channels last. Transpose NCHW data with x.transpose(0, 2, 3, 1).")
    if not (x.dtype == np.uint8 or np.issubdtype(x.dtype, np.floating)):
        raise DataError(f"x_{split} in {src} has dtype {x.dtype}; use uint8 (0..255) or float (0..1).")
    if np.issubdtype(x.dtype, np.floating) and (x.min() < 0 or x.max() > 1):
        raise DataError(f"x_{split} in {src} is float with values in [{x.min():.3g}, {x.max():.3g}]; "
                        f"float images must lie in [0, 1] (divide uint8 pixels by 255).")
    y = np.asarray(y).reshape(-1)
    if len(y) != len(x):
        raise DataError(f"y_{split} in {src} has {len(y)} labels for {len(x)} images.")
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"y_{split} in {src} has dtype {y.dtype}; labels must be integers 0..9.")
    if len(y) and (y.min() < 0 or y.max() > 9):
        raise DataError(f"y_{split} in {src} has labels in [{y.min()}, {y.max()}]; CIFAR-10 labels are "
                        f"0..9 (sparse, not one-hot).")
    return x, y.astype(np.int32)


def _to_float(x: np.ndarray) -> np.ndarray:
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 255.0
    return x.astype(np.float32)


def make_sample(src: str | os.PathLike, dst: str | os.PathLike, n_train: int = 1000,
                n_test: int = 300, seed: int = 0) -> Path:
    """Cut a class-balanced uint8 sample from a CIFAR-10 .npz (how the bundled one was made)."""
    arrays = _read_npz(Path(src))
    rng = np.random.default_rng(seed)
    i_tr = balanced_indices(np.asarray(arrays["y_train"]).reshape(-1), n_train, rng, "n_train")
    i_te = balanced_indices(np.asarray(arrays["y_test"]).reshape(-1), n_test, rng, "n_test")
    dst = Path(dst)
    tmp = dst.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, x_train=arrays["x_train"][i_tr], y_train=arrays["y_train"].reshape(-1)[i_tr],
                        x_test=arrays["x_test"][i_te], y_test=arrays["y_test"].reshape(-1)[i_te])
    os.replace(tmp, dst)
    return dst


# --- tf.data pipelines -------------------------------------------------------------------------

def augment_batch(x, seed):
    """Thesis augmentation on a batch: 4-pixel zero pad, random 32x32 crop, random horizontal flip.

    ``seed`` is a stateless seed (shape [2]) so an epoch's augmentation is reproducible on resume.
    """
    import tensorflow as tf
    n = tf.shape(x)[0]
    padded = tf.pad(x, [[0, 0], [4, 4], [4, 4], [0, 0]])
    offsets = tf.random.stateless_uniform([n, 2], seed, 0, 9, dtype=tf.int32)
    flips = tf.random.stateless_uniform([n], seed + 1, 0, 1) < 0.5
    # Crop by gathering rows then columns: vectorised, no per-image Python loop.
    rows = offsets[:, 0:1] + tf.range(32)[None, :]
    cols = offsets[:, 1:2] + tf.range(32)[None, :]
    cols = tf.where(flips[:, None], tf.reverse(cols, axis=[1]), cols)
    out = tf.gather(padded, rows, axis=1, batch_dims=1)
    return tf.gather(out, cols, axis=2, batch_dims=1)


def train_batches(x, y, batch_size: int, epoch: int, seed: int = 0, augment: bool = False):
    """One epoch of shuffled batches; the order and augmentation depend only on (seed, epoch)."""
    import tensorflow as tf
    order = np.random.default_rng([seed, epoch]).permutation(len(x))
    ds = tf.data.Dataset.from_tensor_slices((x[order], y[order])).batch(batch_size)
    if augment:
        ds = ds.enumerate().map(
            lambda i, xy: (augment_batch(xy[0], tf.stack([tf.cast(seed * 100003 + epoch, tf.int64), i])), xy[1]),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(2)


def eval_batches(x, y, batch_size: int = 256):
    import tensorflow as tf
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)
