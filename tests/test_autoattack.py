import keras
import numpy as np
import pytest
import tensorflow as tf

from kafnotes import autoattack, data, training
from kafnotes.training import TrainConfig

FAST = dict(steps=3, targets=2, square_queries=10)


@pytest.fixture(scope="module")
def model_and_images(tmp_path_factory):
    cifar = data.load_cifar10("sample", n_train=300, n_test=100, seed=1)
    config = TrainConfig(arch="light_cnn", activation="relu", method="standard", optimizer="adam",
                         schedule="constant", lr=3e-3, epochs=3, batch_size=50, eval_images=100)
    run = training.train(config, cifar, runs=tmp_path_factory.mktemp("runs"), verbose=False)
    return run.model, cifar.x_test[:40], cifar.y_test[:40]


def test_targeted_dlr_matches_its_formula():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(6, 10)).astype(np.float32)
    y, t = rng.integers(0, 10, 6), (rng.integers(1, 10, 6) + 0) % 10
    t = np.where(t == y, (y + 1) % 10, t)
    loss = autoattack._TargetedDLR()
    loss.reduction = "none"
    got = loss(autoattack._TargetedDLR.labels(y, t), tf.constant(z)).numpy()
    top = -np.sort(-z, axis=1)
    want = -(z[np.arange(6), y] - z[np.arange(6), t]) / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + 1e-12)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert np.argmax(autoattack._TargetedDLR.labels(y, t), 1).tolist() == y.tolist()  # what ART reads as y


def test_stages_only_ever_remove_images_and_the_mask_matches(model_and_images):
    model, x, y = model_and_images
    result = autoattack.run(model, x, y, **FAST)
    acc = [result["accuracy"][s] for s in autoattack.STAGES]
    assert acc == sorted(acc, reverse=True)  # each stage attacks only what survived the last
    assert result["robust"].mean() == pytest.approx(acc[-1])
    clean = np.argmax(model.predict(x, verbose=0), -1) == y
    assert not np.any(result["robust"] & ~clean)
    assert result["checks"]["no image has a zero input gradient"]["ok"]


def test_square_attacks_only_its_subset(model_and_images):
    model, x, y = model_and_images
    result = autoattack.run(model, x, y, square_n=0, **FAST)
    assert result["square_images"] == 0 and result["square_found"] == 0
    assert result["accuracy"]["square"] == result["accuracy"]["apgd_t"]


def test_an_interrupted_attack_resumes_where_it_stopped_with_the_same_result(model_and_images, tmp_path, monkeypatch):
    model, x, y = model_and_images
    whole = autoattack.run(model, x, y, **FAST)
    generate, calls = autoattack.art_attacks.generate, []

    def interrupted(*args, **kwargs):  # the session ends during the second attack (APGD-T, first target)
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return generate(*args, **kwargs)

    progress = tmp_path / "eval.progress.npz"
    monkeypatch.setattr(autoattack.art_attacks, "generate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        autoattack.run(model, x, y, checkpoint=progress, **FAST)
    monkeypatch.setattr(autoattack.art_attacks, "generate", generate)
    resumed = autoattack.run(model, x, y, checkpoint=progress, **FAST)
    assert resumed["accuracy"] == whole["accuracy"] and resumed["robust"].tolist() == whole["robust"].tolist()
    assert resumed["square_found"] == whole["square_found"]
    assert 0 < resumed["seconds_earlier"] == pytest.approx(resumed["seconds_by_stage"]["apgd_ce"])  # APGD-CE was not re-run
    with pytest.raises(ValueError, match="progress of an attack on 40 images, not 8; delete it"):
        autoattack.run(model, x[:8], y[:8], checkpoint=progress, **FAST)


def test_a_model_that_outputs_probabilities_is_refused_with_the_fix(model_and_images):
    model, x, y = model_and_images
    softmax = keras.Sequential([model, keras.layers.Softmax()])
    with pytest.raises(ValueError, match="outputs probabilities .* without its final softmax"):
        autoattack.run(softmax, x[:8], y[:8], **FAST)
    assert autoattack._looks_like_probabilities(softmax.predict(x[:8], verbose=0))
    assert not autoattack._looks_like_probabilities(model.predict(x[:8], verbose=0))


@pytest.mark.parametrize("kw, message", [
    (dict(x=np.full((2, 32, 32, 3), 2.0, np.float32)), "must lie in \\[0, 1\\]"),
    (dict(y=np.zeros(3, int)), "as many labels as images"),
    (dict(targets=10), "targets must lie in 0..9"),
    (dict(steps=0), "steps and square_queries"),
])
def test_bad_input_is_refused_with_the_reason(model_and_images, kw, message):
    model, x, y = model_and_images
    args = dict(x=x[:2], y=y[:2], **FAST)
    args.update(kw)
    with pytest.raises(ValueError, match=message):
        autoattack.run(model, **args)


def test_masked_gradients_are_flagged_and_square_finds_what_apgd_missed(model_and_images):
    model, x, y = model_and_images
    # the same function with every input gradient exactly zero (and defined, as ART needs)
    masked = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Lambda(lambda v: 0.0 * v + tf.stop_gradient(v)),
                               model])
    result = autoattack.run(masked, x, y, steps=3, targets=2, square_queries=50)
    assert result["checks"]["no image has a zero input gradient"] == {"value": 1.0, "ok": False}
    assert result["square_found"] > 0 and not result["checks"]["Square breaks no image that APGD left"]["ok"]
