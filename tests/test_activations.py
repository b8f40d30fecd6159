import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from kafnotes import activations
from kafnotes.activations import KAF, KWinnersTakeAll, kaf_reference

RNG = np.random.default_rng(0)


def _kaf(mode, **kw):
    layer = KAF(mode=mode, init_stddev=0.5, **kw)
    layer.build((None, 8))
    return layer


def _naive(layer, x):
    """The straightforward KAF: expand to (..., C, D), exp, weighted sum (the speed baseline)."""
    gamma = tf.reshape(layer.gamma, (-1, 1)) if layer.trainable_bandwidth else layer.gamma
    return tf.reduce_sum(layer.alpha * tf.exp(-gamma * tf.square(x[..., None] - layer.dict)), -1)


@pytest.mark.parametrize("mode, tol", [("exact", 1e-5), ("table", 1e-3)])
@pytest.mark.parametrize("free", [False, True])
def test_kaf_values_match_numpy(mode, tol, free):
    layer = _kaf(mode, trainable_dictionary=free, trainable_bandwidth=free)
    x = RNG.normal(0, 2, (16, 4, 4, 8)).astype(np.float32)
    ref = kaf_reference(x.astype(np.float64), layer.alpha.numpy(), layer.dict.numpy(), layer.gamma.numpy())
    np.testing.assert_allclose(layer(x).numpy(), ref, atol=tol)
    np.testing.assert_allclose(_naive(layer, x).numpy(), ref, atol=1e-5)


def _grads(fn, layer, x):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.reduce_sum(fn(x) * tf.cos(tf.range(8, dtype=tf.float32)))  # a non-trivial upstream grad
    return tape.gradient(y, [x, layer.alpha])


def test_exact_gradients_match_finite_differences():
    layer = _kaf("exact")
    x = RNG.normal(0, 1.5, (6, 8)).astype(np.float64)
    alpha = layer.alpha.numpy().astype(np.float64)
    d, g = layer.dict.numpy(), float(layer.gamma.numpy())
    w = np.cos(np.arange(8))
    f = lambda xx, aa: np.sum(kaf_reference(xx, aa, d, g) * w)
    gx, ga = _grads(layer, layer, x.astype(np.float32))
    h = 1e-5
    e = np.zeros_like(x); e[2, 3] = h
    assert abs((f(x + e, alpha) - f(x - e, alpha)) / (2 * h) - gx.numpy()[2, 3]) < 1e-3
    e = np.zeros_like(alpha); e[3, 7] = h
    assert abs((f(x, alpha + e) - f(x, alpha - e)) / (2 * h) - ga.numpy()[3, 7]) < 1e-3


@pytest.mark.parametrize("free", [False, True])
def test_table_gradients_stay_close_to_the_straightforward_kaf(free):
    """Linear interpolation: d/dx within 2% of its scale (piecewise-constant slope), d/dalpha within 0.1%."""
    layer = _kaf("table", trainable_dictionary=free, trainable_bandwidth=free)
    x = RNG.normal(0, 2, (64, 8)).astype(np.float32)
    gx, ga = _grads(layer, layer, x)
    rx, ra = _grads(lambda t: _naive(layer, t), layer, x)
    assert np.abs(gx - rx).max() <= 0.02 * np.abs(rx).max() + 1e-6
    assert np.abs(ga - ra).max() <= 1e-3 * np.abs(ra).max() + 1e-6
    if free:  # the dictionary and bandwidth get gradients through the table too
        with tf.GradientTape() as tape:
            y = tf.reduce_sum(layer(x) ** 2)
        gd, gg = tape.gradient(y, [layer.dict, layer.gamma])
        assert gd is not None and gg is not None and np.isfinite(gd.numpy()).all()


def test_backend_neutral_lookup_matches_the_custom_gradient():
    """Other Keras backends (JAX, for the GPU benchmark) take the autodiff lookup: same values and
    gradients as TensorFlow's custom gradient, including clipped far inputs."""
    layer = _kaf("table", trainable_dictionary=True, trainable_bandwidth=True)
    x = np.concatenate([RNG.normal(0, 2, (62, 8)), np.full((2, 8), 40.0)]).astype(np.float32)

    def via(lookup):
        return lambda t: lookup(t, layer.table(), layer._lo, layer._step)

    np.testing.assert_allclose(via(activations._table_lookup_autodiff)(x), layer(x), atol=1e-6)
    for got, want in zip(_grads(via(activations._table_lookup_autodiff), layer, x),
                         _grads(via(activations._table_lookup), layer, x)):
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_far_inputs_give_zero_and_no_nan():
    for mode in ("table", "exact"):
        layer = _kaf(mode)
        x = np.array([[-1e4, -30, 30, 1e4, 0, 0, 0, 0]], np.float32)
        y = layer(x).numpy()
        # the table's edge value is alpha * exp(-gamma (8 spacings)^2) ~ 2e-5 * alpha
        assert np.isfinite(y).all() and np.abs(y[0, :4]).max() < 1e-4


@pytest.mark.parametrize("name, max_error", [("relu", 0.055), ("elu", 0.015), ("swish", 0.015)])
def test_ridge_init_mimics_the_function(name, max_error):
    """Max |KAF - f| on [-3, 3]: 0.050 (ReLU), 0.013 (ELU), 0.012 (Swish) with eps=1e-6."""
    layer = KAF(init=name, mode="exact")
    x = np.linspace(-3, 3, 601, dtype=np.float32)[:, None].repeat(4, 1)
    target = activations.get(name)()(x).numpy()
    assert np.abs(layer(x).numpy() - target).max() < max_error


def test_ridge_init_accepts_a_callable():
    layer = KAF(init=lambda v: 0.5 * v, mode="exact")
    x = np.linspace(-2, 2, 101, dtype=np.float32)[:, None]
    assert np.abs(layer(x).numpy() - 0.5 * x).max() < 0.01


def test_trainable_flags():
    plain = KAF(); plain.build((None, 4))
    assert [w.name for w in plain.trainable_weights] == ["alpha"]
    assert plain.alpha.shape == (4, 20) and plain.dict.shape == (20,)
    free = activations.get("kaf_free")(); free.build((None, 4))
    assert {w.name for w in free.trainable_weights} == {"alpha", "dictionary", "gamma"}
    assert free.dict.shape == (4, 20) and free.gamma.shape == (4,)
    assert abs(float(plain.gamma.numpy()) - 1 / (6 * (6 / 19) ** 2)) < 1e-5


def test_shapes_for_plots():
    layer = _kaf("table")
    x, f = layer.shapes()
    assert f.shape == (8, len(x))


def test_mixed_precision_forward_and_no_hard_coded_dtype():
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    try:
        from kafnotes import models
        model = models.resnet(20, "kaf")
        out = model(np.random.default_rng(0).random((2, 32, 32, 3)).astype(np.float32))
        assert np.isfinite(out.numpy()).all()
        kaf = model.get_layer("act0")
        assert kaf.compute_dtype == "float16" and kaf.alpha.dtype == "float32"
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    layer = KAF(dtype="float64", mode="exact")
    assert layer(np.ones((2, 3))).dtype == tf.float64


def _kwta_reference(x, ratio):
    flat = x.reshape(len(x), -1)
    k = math.ceil(ratio * flat.shape[1])
    out = np.zeros_like(flat)
    for i, row in enumerate(flat):
        keep = np.argsort(row)[-k:]
        out[i, keep] = row[keep]
    return out.reshape(x.shape), k


def test_kwta_matches_numpy_on_nhwc():
    x = RNG.normal(size=(4, 6, 6, 5)).astype(np.float32)
    layer = KWinnersTakeAll(0.2)
    y = layer(x).numpy()
    ref, k = _kwta_reference(x, 0.2)
    np.testing.assert_array_equal(y, ref)
    assert ((y != 0).reshape(4, -1).sum(1) == k).all()
    layer.set_ratio(0.1)  # annealing changes k without rebuilding
    assert ((layer(x).numpy() != 0).reshape(4, -1).sum(1) == math.ceil(0.1 * 180)).all()


def test_kwta_gradient_flows_through_kept_values_only():
    x = tf.constant(RNG.normal(size=(2, 4, 4, 3)).astype(np.float32))
    layer = KWinnersTakeAll(0.25)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
        total = tf.reduce_sum(y)
    g = tape.gradient(total, x).numpy()
    np.testing.assert_array_equal(g, (y.numpy() != 0).astype(np.float32))


def test_kwta_works_with_an_unknown_batch_size():
    """PGD's compiled function generalises to batch size None once it sees a second batch size
    (the `cpu` profile's 500 images in batches of 256); k-WTA must still know N."""
    layer = KWinnersTakeAll(0.2)
    x = RNG.normal(size=(3, 6, 6, 5)).astype(np.float32)
    fn = tf.function(layer, input_signature=[tf.TensorSpec((None, 6, 6, 5), tf.float32)])
    np.testing.assert_array_equal(fn(x).numpy(), _kwta_reference(x, 0.2)[0])


def test_named_activations_and_errors():
    for name in ["relu", "elu", "swish", "kaf", "kaf_relu", "kaf_elu", "kaf_swish", "kaf_free", "kwta",
                 "sigmoid", "tanh", "leaky_relu", "gelu"]:
        layer = activations.get(name)()
        assert activations.is_activation(layer)
    a, b = activations.get("kaf")(), activations.get("kaf")()
    assert a is not b
    with pytest.raises(ValueError, match="valid names: .*kaf_free.*relu"):
        activations.get("relu6")
    with pytest.raises(ValueError, match="mode must be"):
        KAF(mode="fast")
    with pytest.raises(ValueError, match="num_kernels"):
        KAF(num_kernels=1)
    with pytest.raises(ValueError, match="unknown KAF init"):
        KAF(init="softplus")
    with pytest.raises(ValueError, match="ratio must lie in"):
        KWinnersTakeAll(1.5)


def test_nan_inputs_propagate_instead_of_crashing():
    for mode in ("table", "exact"):
        layer = _kaf(mode)
        x = np.full((2, 8), np.nan, np.float32)
        x[1] = 0.5
        y = layer(x).numpy()
        assert np.isnan(y[0]).all() and np.isfinite(y[1]).all()
