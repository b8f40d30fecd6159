"""Activation functions of the study: the kernel activation function (KAF), k-WTA and named fixed ones.

KAF (Scardapane et al. 2019): per channel c, f_c(x) = sum_i alpha_ci exp(-gamma (x - d_i)^2) on a
fixed dictionary d of D points equally spaced on [-boundary, boundary].

Two ways to evaluate it (``mode``):
- ``"exact"`` expands x to (..., C, D) and sums D Gaussians. Simple, but it streams a D-times larger
  tensor through memory forward and backward (8x a ReLU step on CPU).
- ``"table"`` (default) tabulates each f_c on a fine uniform grid (1024 points) once per call, then looks x up with
  one gather and linear interpolation. The table is a differentiable product of alpha (and of d and
  gamma for KAF_Free), so autodiff gives every gradient. Its error is bounded in the tests.
"""

from __future__ import annotations

import functools
import math
from typing import Callable

import keras
import numpy as np
from keras import ops

_INITS = {
    "relu": lambda x: np.maximum(x, 0.0),
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0.0))),
    "swish": lambda x: x / (1.0 + np.exp(-x)),
    "tanh": np.tanh,
    "identity": lambda x: np.asarray(x, dtype=float),
}


def dictionary(num_kernels: int = 20, boundary: float = 3.0) -> np.ndarray:
    return np.linspace(-boundary, boundary, num_kernels)


def thesis_gamma(d: np.ndarray, factor: float = 6.0) -> float:
    """gamma = 1 / (factor * spacing^2); the thesis uses factor 6 (Scardapane's code uses 8)."""
    spacing = float(d[1] - d[0])
    return 1.0 / (factor * spacing ** 2)


def ridge_alpha(fn: str | Callable, d: np.ndarray, gamma: float, eps: float = 1e-6) -> np.ndarray:
    """Mixing coefficients that make the KAF mimic ``fn`` on the dictionary: (K + eps I)^-1 fn(d)."""
    if isinstance(fn, str):
        if fn not in _INITS:
            raise ValueError(f"unknown KAF init {fn!r}; use 'random', one of {sorted(_INITS)} or a callable")
        fn = _INITS[fn]
    k = np.exp(-gamma * (d[:, None] - d[None, :]) ** 2)
    return solve_elementwise(k + eps * np.eye(len(d)), np.asarray(fn(d), dtype=np.float64))


def solve_elementwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Solve a x = b by Gaussian elimination with partial pivoting, in elementwise NumPy only.

    ``np.linalg.solve`` calls OpenBLAS, whose kernels (chosen per CPU) round differently: the
    ridge-initialised KAFs then started from other weights on other machines. Elementwise float64
    arithmetic is IEEE-exact, so this gives the same bits everywhere; at D = 20 its cost is nil.
    """
    a = np.array(a, dtype=np.float64)
    x = np.array(b, dtype=np.float64)
    n = len(x)
    for col in range(n):
        pivot = col + int(np.argmax(np.abs(a[col:, col])))
        a[[col, pivot]], x[[col, pivot]] = a[[pivot, col]], x[[pivot, col]]
        factors = a[col + 1:, col] / a[col, col]
        a[col + 1:, col:] -= factors[:, None] * a[col, col:]
        x[col + 1:] -= factors * x[col]
    for row in range(n - 1, -1, -1):
        tail = a[row, row + 1:] * x[row + 1:]
        x[row] = (x[row] - _ordered_sum(tail)) / a[row, row]
    return x


def _ordered_sum(values: np.ndarray) -> float:
    total = 0.0
    for v in values:  # left to right: np.sum's pairwise order is an implementation detail
        total += float(v)
    return total


def kaf_reference(x: np.ndarray, alpha: np.ndarray, d: np.ndarray, gamma) -> np.ndarray:
    """NumPy reference: x (..., C), alpha (C, D), d (D,) or (C, D), gamma scalar or (C,)."""
    d = np.broadcast_to(d, alpha.shape)
    g = np.broadcast_to(np.asarray(gamma, dtype=np.float64).reshape(-1, 1), (alpha.shape[0], 1))
    return np.sum(alpha * np.exp(-g * (x[..., None] - d) ** 2), axis=-1)


@keras.saving.register_keras_serializable(package="kafnotes")
class KAF(keras.layers.Layer):
    """Kernel activation function with one alpha vector per channel (the last axis)."""

    def __init__(self, num_kernels: int = 20, boundary: float = 3.0, init: str | Callable = "random",
                 init_stddev: float = 0.05, ridge_eps: float = 1e-6, bandwidth_factor: float = 6.0,
                 trainable_dictionary: bool = False, trainable_bandwidth: bool = False,
                 mode: str = "table", table_size: int = 1024, table_margin: float = 8.0, **kwargs):
        super().__init__(**kwargs)
        if int(num_kernels) < 2:
            raise ValueError(f"KAF needs num_kernels >= 2 (got {num_kernels}); the thesis uses 20.")
        if not boundary > 0:
            raise ValueError(f"KAF boundary must be positive (got {boundary}); the thesis uses 3.")
        if mode not in ("table", "exact"):
            raise ValueError(f"KAF mode must be 'table' or 'exact' (got {mode!r}).")
        if not (callable(init) or init == "random" or init in _INITS):
            raise ValueError(f"unknown KAF init {init!r}; use 'random', one of {sorted(_INITS)} or a callable")
        if int(table_size) < 16:
            raise ValueError(f"KAF table_size must be >= 16 (got {table_size}).")
        self.num_kernels = int(num_kernels)
        self.boundary = float(boundary)
        self.init = init
        self.init_stddev = float(init_stddev)
        self.ridge_eps = float(ridge_eps)
        self.bandwidth_factor = float(bandwidth_factor)
        self.trainable_dictionary = bool(trainable_dictionary)
        self.trainable_bandwidth = bool(trainable_bandwidth)
        self.mode = mode
        self.table_size = int(table_size)
        self.table_margin = float(table_margin)
        self._d0 = dictionary(self.num_kernels, self.boundary)
        self._gamma0 = thesis_gamma(self._d0, self.bandwidth_factor)

    # -- Keras plumbing ------------------------------------------------------------------------
    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError("KAF needs a known channel count (last axis) to build.")
        if self.init == "random":
            alpha_init = keras.initializers.RandomNormal(stddev=self.init_stddev)
        else:
            row = ridge_alpha(self.init, self._d0, self._gamma0, self.ridge_eps)
            alpha_init = keras.initializers.Constant(np.tile(row, (channels, 1)))
        self.alpha = self.add_weight(name="alpha", shape=(channels, self.num_kernels), initializer=alpha_init)
        d_shape = (channels, self.num_kernels) if self.trainable_dictionary else (self.num_kernels,)
        self.dict = self.add_weight(name="dictionary", shape=d_shape,
                                    initializer=keras.initializers.Constant(np.broadcast_to(self._d0, d_shape)),
                                    trainable=self.trainable_dictionary)
        g_shape = (channels,) if self.trainable_bandwidth else ()
        self.gamma = self.add_weight(name="gamma", shape=g_shape,
                                     initializer=keras.initializers.Constant(self._gamma0),
                                     trainable=self.trainable_bandwidth)
        spacing = self._d0[1] - self._d0[0]
        self._lo = float(self._d0[0] - self.table_margin * spacing)
        self._hi = float(self._d0[-1] + self.table_margin * spacing)
        self._step = (self._hi - self._lo) / (self.table_size - 1)

    def get_config(self):
        config = super().get_config()
        config.update(num_kernels=self.num_kernels, boundary=self.boundary,
                      # a callable init only matters before training; the weights carry the rest
                      init=self.init if isinstance(self.init, str) else "random",
                      init_stddev=self.init_stddev, ridge_eps=self.ridge_eps,
                      bandwidth_factor=self.bandwidth_factor,
                      trainable_dictionary=self.trainable_dictionary,
                      trainable_bandwidth=self.trainable_bandwidth, mode=self.mode,
                      table_size=self.table_size, table_margin=self.table_margin)
        return config

    def compute_output_shape(self, input_shape):
        return input_shape

    # -- maths ---------------------------------------------------------------------------------
    def _kernel(self, x):
        """exp(-gamma (x - d)^2) with x (..., 1) broadcast against (C, D) or (D,)."""
        gamma = ops.maximum(ops.cast(self.gamma, x.dtype), 1e-3)  # a trained gamma must stay positive
        if self.trainable_bandwidth:
            gamma = gamma[:, None]
        return ops.exp(-gamma * ops.square(x - ops.cast(self.dict, x.dtype)))

    def call(self, x):
        if self.mode == "exact":
            return ops.sum(ops.cast(self.alpha, x.dtype) * self._kernel(x[..., None]), axis=-1)
        return self._call_table(x)

    def table(self):
        """Each channel's f on the lookup grid, shape (C, G), in the variable dtype."""
        grid = ops.linspace(self._lo, self._hi, self.table_size)
        k = self._kernel(ops.cast(grid, self.variable_dtype)[:, None, None])  # (G, C or 1, D)
        return ops.einsum("cd,gcd->cg", self.alpha, ops.broadcast_to(
            k, (self.table_size, self.alpha.shape[0], self.num_kernels)))

    def _call_table(self, x):
        # Index arithmetic runs in the variable dtype (float32 under mixed precision), since float16
        # cannot resolve a 1024-point grid; the result returns in the layer's compute dtype.
        lookup = _table_lookup if keras.backend.backend() == "tensorflow" else _table_lookup_autodiff
        y = lookup(ops.cast(x, self.variable_dtype), self.table(), self._lo, self._step)
        return ops.cast(y, self.compute_dtype)

    def shapes(self, x=None):
        """(x, f) with f of shape (C, len(x)): each channel's current function, evaluated exactly."""
        x = np.linspace(-self.boundary - 1, self.boundary + 1, 201) if x is None else np.asarray(x)
        gamma = np.asarray(self.gamma.numpy(), dtype=np.float64)
        f = kaf_reference(x[:, None], self.alpha.numpy().astype(np.float64),
                          self.dict.numpy().astype(np.float64), gamma)
        return x, f.T


@keras.saving.register_keras_serializable(package="kafnotes")
class KWinnersTakeAll(keras.layers.Layer):
    """k-WTA (Xiao et al. 2020): per sample keep the k = ceil(ratio * N) largest of all N values.

    N counts every position and channel of the sample, in its own (channels-last) layout, so no value
    moves. ``ratio`` is a non-trainable weight: assign to it to anneal during training.
    """

    def __init__(self, ratio: float = 0.2, **kwargs):
        super().__init__(**kwargs)
        _check_ratio(ratio)
        self.initial_ratio = float(ratio)

    def build(self, input_shape):
        self.ratio = self.add_weight(name="ratio", shape=(), trainable=False, dtype="float32",
                                     initializer=keras.initializers.Constant(self.initial_ratio))

    def set_ratio(self, ratio: float):
        _check_ratio(ratio)
        self.ratio.assign(ratio)

    def call(self, x):
        tf = _tensorflow("k-WTA")
        # N from the static per-sample shape: with an unknown batch size (a function traced for
        # several batch sizes) reshaping to (batch, -1) would leave N unknown too.
        n = int(np.prod(x.shape[1:]))
        flat = ops.reshape(x, (-1, n))
        k = ops.cast(ops.ceil(ops.cast(self.ratio, "float32") * n), "int32")
        k = ops.clip(k, 1, n)
        _, idx = tf.math.top_k(flat, k=k)
        mask = _topk_mask(idx, tf.shape(flat), flat.dtype)
        return ops.reshape(flat * tf.stop_gradient(mask), ops.shape(x))

    def get_config(self):
        return {**super().get_config(), "ratio": float(self.ratio.numpy()) if self.built else self.initial_ratio}

    def compute_output_shape(self, input_shape):
        return input_shape


def _table_lookup(x, table, lo: float, step: float):
    """Linear interpolation of per-channel tables ``table`` (C, G) at ``x`` (..., C).

    A custom gradient keeps backprop to one multiply for d/dx and two segment sums for d/dtable
    (a histogram of the upstream gradient over the grid), and stores only the index, the fraction and
    the slope: autodiff through the gather took 3.6x longer here. The per-element work runs as two
    XLA-compiled kernels (``_fused_kernels``): op by op it read and wrote the activation tensor about
    a dozen times each way, and fused the lookup's forward and backward took 2.4x less time.
    """
    import tensorflow as tf
    channels, size = table.shape
    forward, backward = _fused_kernels(int(size), float(lo), float(step))

    @tf.custom_gradient
    def lookup(x, table):
        # Flat first and last segments: clipped inputs then get a zero slope with no mask to compute.
        table_ = tf.concat([table[:, 1:2], table[:, 1:-1], table[:, -2:-1]], axis=1)
        left = tf.reshape(table_[:, :-1], [-1])
        rise = tf.reshape(table_[:, 1:] - table_[:, :-1], [-1])
        y, idx, frac, slope = forward(x, left, rise)

        def grad(dy):
            dx, d_left, d_rise = backward(dy, idx, frac, slope)
            d_left = tf.reshape(d_left, (channels, size - 1))
            d_rise = tf.reshape(d_rise, (channels, size - 1))
            # left_i = t_i and rise_i = t_{i+1} - t_i: onto table_ (C, G)
            d_full = tf.pad(d_left - d_rise, [[0, 0], [0, 1]]) + tf.pad(d_rise, [[0, 0], [1, 0]])
            # table_ copies column 1 into 0 and column G-2 into G-1: fold those gradients back.
            d_table = tf.concat([tf.zeros_like(d_full[:, :1]), d_full[:, 1:2] + d_full[:, :1], d_full[:, 2:-2],
                                 d_full[:, -2:-1] + d_full[:, -1:], tf.zeros_like(d_full[:, :1])], axis=1)
            return dx, d_table

        return y, grad

    return lookup(x, table)


@functools.lru_cache(maxsize=None)
def _fused_kernels(size: int, lo: float, step: float):
    """The lookup's per-element forward and backward for one grid, compiled by XLA (one kernel
    each, made once per grid and input shape). XLA's CPU scatter adds in input order, so the segment
    sums are deterministic; they are what TF's bincount was not (it sums in thread order)."""
    import tensorflow as tf
    inv = 1.0 / step

    @tf.function(jit_compile=True)
    def forward(x, left, rise):
        channels = x.shape[-1]
        u = tf.clip_by_value((x - lo) * inv, 0.0, size - 1.0)
        # A NaN input stays NaN through ``frac``, so divergence is reported, not hidden; its index is
        # clipped into the table either way.
        pos = tf.minimum(tf.cast(u, tf.int32), size - 2)  # u >= 0, so the cast is the floor
        frac = u - tf.cast(pos, u.dtype)
        idx = pos + (size - 1) * tf.range(channels, dtype=tf.int32)
        slope = tf.gather(rise, idx)
        return tf.gather(left, idx) + slope * frac, idx, frac, slope

    @tf.function(jit_compile=True)
    def backward(dy, idx, frac, slope):
        segments = idx.shape[-1] * (size - 1)
        i = tf.reshape(idx, [-1])
        d_left = tf.math.unsorted_segment_sum(tf.reshape(dy, [-1]), i, segments)
        d_rise = tf.math.unsorted_segment_sum(tf.reshape(dy * frac, [-1]), i, segments)
        return dy * slope * inv, d_left, d_rise

    return forward, backward


def _table_lookup_autodiff(x, table, lo: float, step: float):
    """The same interpolation in backend-neutral ops, differentiated by the backend (for JAX and
    PyTorch, where XLA or the autograd engine turns the gather's gradient into one scatter-add)."""
    channels, size = table.shape
    hi = lo + step * (size - 1)
    table_ = ops.concatenate([table[:, 1:2], table[:, 1:-1], table[:, -2:-1]], axis=1)
    u = (ops.clip(x, lo, hi) - lo) * (1.0 / step)
    pos = ops.clip(ops.cast(ops.floor(u), "int32"), 0, size - 2)
    frac = u - ops.stop_gradient(ops.cast(pos, u.dtype))
    idx = pos + (size - 1) * ops.arange(channels, dtype="int32")
    left = ops.take(ops.reshape(table_[:, :-1], (-1,)), idx)
    rise = ops.take(ops.reshape(table_[:, 1:] - table_[:, :-1], (-1,)), idx)
    return left + rise * frac


def _tensorflow(what: str):
    if keras.backend.backend() != "tensorflow":
        raise NotImplementedError(f"{what} needs Keras' TensorFlow backend (KERAS_BACKEND=tensorflow); "
                                  f"this process runs {keras.backend.backend()!r}.")
    import tensorflow as tf
    return tf


def _topk_mask(idx, shape, dtype):
    import tensorflow as tf
    rows = tf.broadcast_to(tf.range(shape[0])[:, None], tf.shape(idx))
    coords = tf.stack([rows, idx], axis=-1)
    return tf.scatter_nd(coords, tf.ones(tf.shape(idx), dtype), shape)


def _check_ratio(ratio):
    if not 0 < float(ratio) <= 1:
        raise ValueError(f"k-WTA ratio must lie in (0, 1] (got {ratio}); the thesis anneals 0.30 -> 0.15.")


# -- names ---------------------------------------------------------------------------------------

def _fixed(name, fn=None):
    def factory(**kw):
        return keras.layers.Activation(fn or name, **kw)
    return factory


ACTIVATIONS: dict[str, Callable[..., keras.layers.Layer]] = {
    "relu": _fixed("relu"),
    "elu": _fixed("elu"),
    "swish": _fixed("silu"),
    "sigmoid": _fixed("sigmoid"),
    "tanh": _fixed("tanh"),
    "gelu": _fixed("gelu"),
    "leaky_relu": lambda **kw: keras.layers.LeakyReLU(negative_slope=0.1, **kw),
    "kaf": lambda **kw: KAF(**kw),
    "kaf_relu": lambda **kw: KAF(init="relu", **kw),
    "kaf_elu": lambda **kw: KAF(init="elu", **kw),
    "kaf_swish": lambda **kw: KAF(init="swish", **kw),
    "kaf_free": lambda **kw: KAF(trainable_dictionary=True, trainable_bandwidth=True, **kw),
    "kwta": lambda **kw: KWinnersTakeAll(**kw),
}

ACTIVATION_LAYERS = (keras.layers.Activation, keras.layers.LeakyReLU, KAF, KWinnersTakeAll)


def get(name: str | Callable, **options) -> Callable[..., keras.layers.Layer]:
    """A factory that makes a fresh activation layer each call (KAFs must not share weights).

    ``options`` go to the layer, e.g. ``get("kaf", mode="exact")`` or ``get("kwta", ratio=0.3)``.
    A callable is returned as is, so models accept names and factories alike.
    """
    if callable(name):
        return name
    key = str(name).lower()
    if key not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; valid names: {', '.join(sorted(ACTIVATIONS))}")
    base = ACTIVATIONS[key]

    def factory(**kw):
        return base(**{**options, **kw})

    factory.activation_name = key
    return factory


def is_activation(layer) -> bool:
    return isinstance(layer, ACTIVATION_LAYERS)
