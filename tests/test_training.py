import json
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from kafnotes import data, records, schedules, training
from kafnotes.training import TrainConfig


@pytest.fixture(scope="module")
def tiny():
    """300 training images: enough for a tiny model to learn something in seconds."""
    c = data.load_cifar10("sample", n_train=300, n_test=100, seed=1)
    return c


def _config(**kw):
    base = dict(arch="light_cnn", activation="relu", method="standard", optimizer="adam", schedule="constant",
                lr=3e-3, epochs=3, batch_size=50, eval_images=100)
    return TrainConfig(**{**base, **kw})


def test_a_tiny_model_learns(tiny, runs):
    run = training.train(_config(epochs=4), tiny, runs=runs, verbose=False)
    losses = [h["loss"] for h in run.history]
    assert losses[-1] < losses[0]
    assert run.history[-1]["train_acc"] > 0.2  # chance is 0.1


def test_fgsm_rs_start_is_fresh_every_step_and_bounded():
    """The frozen-delta regression test: the random start must differ from one step to the next."""
    eps = 8 / 255
    seen = []

    class Probe(keras.Model):  # records what the model is fed: the attack pass, then the update pass
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(10)

        def call(self, x, training=False):
            seen.append(x)
            return self.dense(tf.reshape(x, (tf.shape(x)[0], -1)))

    model = Probe()
    x = np.full((4, 32, 32, 3), 0.5, np.float32)
    x[0] = 0.0  # on the boundary: x + delta must be clipped to [0, 1]
    y = np.zeros(4, np.int32)
    model(x)
    seen.clear()
    opt = keras.optimizers.SGD(0.0)
    opt.build(model.trainable_variables)
    noise = tf.random.Generator.from_seed(0)
    step = training.make_train_step(model, opt, TrainConfig(method="fgsm_rs", eps=eps), noise)

    state = noise.state.numpy().copy()
    step(tf.constant(x), tf.constant(y))  # compiled: the generator must advance inside the graph
    assert not np.array_equal(state, noise.state.numpy())

    seen.clear()
    step.python_function(tf.constant(x), tf.constant(y))  # eager, to look at the actual inputs
    start1, update1 = seen[0].numpy(), seen[1].numpy()
    seen.clear()
    step.python_function(tf.constant(x), tf.constant(y))
    start2 = seen[0].numpy()
    assert not np.allclose(start1, start2)
    for inp in (start1, start2, update1):
        assert np.abs(inp - x).max() <= eps + 1e-6 and inp.min() >= 0 and inp.max() <= 1
    assert np.abs(update1 - x).max() > 0.5 * eps  # the signed step moved it


def test_n_fgsm_noise_is_twice_as_wide_its_step_is_eps_and_it_is_not_projected():
    """N-FGSM's inputs reach beyond the eps-ball (up to 3 eps), FGSM-RS's never do."""
    eps = 8 / 255
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(), keras.layers.Dense(10)])
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    x = tf.constant(np.full((64, 32, 32, 3), 0.5, np.float32))  # far from 0 and 1: no image clipping
    y = tf.zeros(64, tf.int32)
    noise = tf.random.Generator.from_seed(0)
    reach = {}
    for method in ("fgsm_rs", "n_fgsm"):
        config = TrainConfig(method=method, eps=eps)
        reach[method] = np.abs(training.fgsm_examples(model, x, y, config, noise, ce).numpy() - 0.5).max()
    assert TrainConfig(method="n_fgsm", eps=eps).step_size == pytest.approx(eps)
    assert TrainConfig(method="fgsm_rs", eps=eps).step_size == pytest.approx(1.25 * eps)
    assert reach["fgsm_rs"] <= eps + 1e-6
    assert 2.5 * eps < reach["n_fgsm"] <= 3 * eps + 1e-6  # noise near 2 eps plus a step of eps, unprojected


def test_n_fgsm_trains_with_the_guard(tiny, runs):
    run = training.train(_config(method="n_fgsm", optimizer="sgd", lr=0.05, epochs=2, co_guard=True), tiny,
                         runs=runs, verbose=False)
    assert run.path.name.startswith("light_cnn-relu-n_fgsm-")
    assert all("guard_pgd5" in h for h in run.history)


def test_one_cycle_values():
    s = schedules.OneCycle(0.01, 0.8, cycle_steps=100, halve_every=10)
    at = lambda i: float(s(i))
    assert at(0) == pytest.approx(0.01) and at(50) == pytest.approx(0.8) and at(100) == pytest.approx(0.01)
    assert at(25) == pytest.approx(0.405) and at(75) == pytest.approx(0.405)
    assert at(101) == pytest.approx(0.001) and at(111) == pytest.approx(0.0005)
    with pytest.raises(ValueError, match="lr_min <= lr_max"):
        schedules.OneCycle(1.0, 0.1, 10)


def test_lr_finder_shape_and_suggestion(tiny, runs):
    result = training.lr_range_test(_config(), tiny, steps=12, lr_start=1e-4, lr_end=1.0, runs=runs)
    assert len(result.lrs) == len(result.losses) == len(result.smoothed) <= 12
    assert np.all(np.diff(result.lrs) > 0)
    assert result.lrs[0] <= result.lr_min <= result.lr_max <= result.lrs[-1]
    fig = result.plot()
    assert fig.axes[0].get_xscale() == "log"
    again = training.lr_range_test(_config(), tiny, steps=12, lr_start=1e-4, lr_end=1.0, runs=runs)
    np.testing.assert_array_equal(result.losses, again.losses)  # reused from its record


def test_suggest_range_on_a_synthetic_curve():
    lrs = np.logspace(-5, 1, 61)
    loss = 2.3 - 1.5 / (1 + np.exp(-(np.log10(lrs) + 3) * 3)) + np.where(lrs > 0.3, (lrs - 0.3) * 20, 0)
    lo, hi, _, reliable = schedules.suggest_range(lrs, loss, beta=0.5)
    assert 1e-5 <= lo < 1e-3 < hi <= 0.5 and reliable
    flat = schedules.suggest_range(lrs, np.full(61, 2.3) + 0.001 * np.sin(np.arange(61)))
    assert not flat[3]
    result = schedules.LRFinderResult(lrs, loss, flat[2], flat[0], flat[1], flat[3])
    assert result.range_or((0.01, 0.1)) == (0.01, 0.1)


class NanGradient(keras.layers.Layer):
    """Identity forward, NaN backward: the earliest layer below it sees the NaN first."""

    def call(self, x):
        @tf.custom_gradient
        def f(t):
            return tf.identity(t), lambda dy: dy * np.nan
        return f(x)


def test_injected_nan_names_the_layer(tiny, runs, monkeypatch):
    from kafnotes import models

    def poisoned(activation="relu", **kw):
        inputs = keras.Input((32, 32, 3))
        x = keras.layers.Conv2D(4, 3, name="early_conv")(inputs)
        x = keras.layers.Flatten()(x)
        x = keras.layers.Dense(8, name="hidden")(x)
        x = NanGradient(name="poison")(x)
        return keras.Model(inputs, keras.layers.Dense(10, name="logits")(x))
    monkeypatch.setitem(models.ARCHITECTURES, "poisoned", poisoned)
    with pytest.raises(training.DivergenceError, match=r"epoch 1, step 1 .*'hidden'"):
        training.train(_config(arch="poisoned"), tiny, runs=runs, verbose=False)
    run = training.train(_config(arch="poisoned", on_nonfinite="record"), tiny, runs=runs, verbose=False)
    flags = run.record["flags"]
    assert flags["diverged"] and flags["divergence"]["layer"] == "hidden"
    assert all(np.isfinite(w).all() for w in run.model.get_weights())  # the last good weights, not NaN


def test_resume_equals_uninterrupted(tiny, tmp_path):
    config = _config(method="fgsm_rs", optimizer="sgd", schedule="one_cycle", lr=0.05, epochs=3,
                     augment=True, arch="light_cnn")
    full = training.train(config, tiny, runs=tmp_path / "a", verbose=False)
    part = training.train(config, tiny, runs=tmp_path / "b", verbose=False, stop_after=1)
    assert part.record["status"] == "running" and (part.path / "checkpoint.npz").exists()
    resumed = training.train(config, tiny, runs=tmp_path / "b", verbose=False)
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in full.history]
    for a, b in zip(full.model.get_weights(), resumed.model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert not (resumed.path / "checkpoint.npz").exists()


def test_finished_record_is_reused(tiny, runs):
    config = _config(epochs=1)
    first = training.train(config, tiny, runs=runs, verbose=False)
    record = json.loads((first.path / "record.json").read_text())
    assert record["status"] == "finished" and record["config"]["activation"] == "relu"
    assert {"tensorflow", "keras", "device"} <= set(record["environment"])
    assert record["data"]["source"] == tiny.source and record["seconds_per_epoch"]
    again = training.train(config, tiny, runs=runs, verbose=False)
    assert again.reused and again.record == first.record
    for a, b in zip(first.model.get_weights(), again.model.get_weights()):
        np.testing.assert_array_equal(a, b)
    forced = training.train(config, tiny, runs=runs, verbose=False, force=True)
    assert not forced.reused


def test_catastrophic_overfitting_guard_records_itself(tiny, runs):
    run = training.train(_config(method="fgsm_rs", optimizer="sgd", lr=0.05, epochs=2, co_guard=True), tiny,
                         runs=runs, verbose=False)
    assert all("guard_pgd5" in h for h in run.history)
    assert "early_stopped_epoch" in run.record["flags"]


def test_kwta_anneal_sets_the_ratio(tiny, runs):
    run = training.train(_config(activation="kwta", epochs=3, kwta_anneal=(0.3, 0.15, 0.05, 1)), tiny,
                         runs=runs, verbose=False)
    ratio = float(run.model.get_layer("act1_1").ratio.numpy())
    assert ratio == pytest.approx(0.2)  # epoch index 2: 0.3 - 2 * 0.05


def test_atomic_json_write(tmp_path):
    path = records.write_json(tmp_path / "r.json", {"a": np.float32(1.5), "b": np.arange(3)})
    assert json.loads(path.read_text()) == {"a": 1.5, "b": [0, 1, 2]}
    with pytest.raises(TypeError):
        records.write_json(path, {"bad": object()})
    assert json.loads(path.read_text())["a"] == 1.5  # the failed write left the old file intact
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("kw, message", [
    (dict(arch="resnet18"), "unknown arch"), (dict(activation="relu9"), "unknown activation"),
    (dict(method="pgd"), "method must be"), (dict(lr=-1), "lr"), (dict(eps=3), "eps must lie"),
    (dict(on_nonfinite="ignore"), "on_nonfinite"), (dict(optimizer="rmsprop"), "optimizer"),
])
def test_bad_configs(kw, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kw).validate()


def test_kaf_shape_snapshots_per_epoch(tiny, runs):
    run = training.train(_config(activation="kaf", epochs=2), tiny, runs=runs, verbose=False)
    shots = [h["kaf_shape"] for h in run.history]
    assert all(s["layer"] == "act1_1" and len(s["f"]) == 4 for s in shots)
    assert shots[0]["f"] != shots[1]["f"]  # training moved the shape
    assert training.train(_config(epochs=1), tiny, runs=runs, verbose=False).history[0]["kaf_shape"] is None


def test_kaf_training_is_bit_for_bit_repeatable(tiny, tmp_path):
    """nbval compares stored outputs with a fresh run, so a KAF run must not depend on thread timing
    (the custom gradient once used bincount, whose CPU kernel summed in a thread-dependent order)."""
    config = _config(activation="kaf", method="fgsm_rs", optimizer="sgd", lr=0.05, epochs=1)
    a = training.train(config, tiny, runs=tmp_path / "a", verbose=False)
    b = training.train(config, tiny, runs=tmp_path / "b", verbose=False)
    for x, y in zip(a.model.get_weights(), b.model.get_weights()):
        np.testing.assert_array_equal(x, y)


_HASH_RUN = """
import hashlib, sys, tempfile
from kafnotes import data, training
config = training.TrainConfig(arch="vgg_like", activation="kaf_free", method="fgsm_rs", lr=0.2, epochs=1,
                              batch_size=50, eval_images=50)
run = training.train(config, data.load_cifar10("sample", n_train=300, n_test=50, seed=0),
                     runs=tempfile.mkdtemp(), verbose=False)
print(hashlib.sha256(b"".join(w.numpy().tobytes() for w in run.model.weights)).hexdigest())
"""


def test_concurrent_processes_train_bit_identical_models():
    """nbval re-runs each chapter in a new kernel, often beside another: the result must not depend
    on thread timing. Before setup() ran one op at a time, VGG with KAF_Free gave 3 different
    results in 4 such runs."""
    procs = [subprocess.Popen([sys.executable, "-c", _HASH_RUN], stdout=subprocess.PIPE, text=True)
             for _ in range(3)]
    hashes = [p.communicate(timeout=600)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert len(set(hashes)) == 1 and len(hashes[0]) == 64


def test_exclusive_lets_one_holder_in_at_a_time(tmp_path):
    import threading
    import time
    spans = []

    def hold():
        with records.exclusive(tmp_path / "x.lock"):
            start = time.perf_counter()
            time.sleep(0.2)
            spans.append((start, time.perf_counter()))

    threads = [threading.Thread(target=hold) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    spans.sort()
    assert len(spans) == 3 and all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))


_SAME_RUN = """
import sys
from kafnotes import data, training
config = training.TrainConfig(arch="light_cnn", activation="relu", method="standard", optimizer="adam",
                              schedule="constant", lr=3e-3, epochs=4, batch_size=50, eval_images=50)
run = training.train(config, data.load_cifar10("sample", n_train=500, n_test=50, seed=0), runs=sys.argv[1],
                     verbose=False)
print("reused" if run.reused else "trained")
"""


def test_a_second_process_waits_for_a_run_in_progress_and_reuses_it(tmp_path):
    """Chapters 5 and 6 run side by side and need the same models: each is trained once."""
    procs = [subprocess.Popen([sys.executable, "-c", _SAME_RUN, str(tmp_path)], stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    outcomes = sorted(p.communicate(timeout=600)[0].strip() for p in procs)
    assert outcomes == ["reused", "trained"]

