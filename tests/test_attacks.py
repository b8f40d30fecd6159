import numpy as np
import pytest

from kafnotes import art_attacks, attacks, data, training


@pytest.fixture(scope="module")
def trained():
    cifar = data.load_cifar10("sample", n_train=500, n_test=100, seed=2)
    config = training.TrainConfig(arch="light_cnn", activation="relu", method="standard", optimizer="adam",
                                  schedule="constant", lr=3e-3, epochs=3, batch_size=50)
    run = training.train(config, cifar, verbose=False)
    return run.model, cifar.x_test[:64], cifar.y_test[:64]


def test_pgd_lowers_accuracy_and_respects_bounds(trained):
    model, x, y = trained
    eps = 8 / 255
    x_adv, robust = attacks.pgd(model, x, y, eps=eps, alpha=2 / 255, steps=10, restarts=1)
    assert robust.mean() < attacks.clean_accuracy(model, x, y)
    assert np.abs(x_adv - x).max() <= eps + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    # the adversarial inputs returned really fool the model where the mask says so
    assert (attacks.predict_labels(model, x_adv)[~robust] != y[~robust]).all()


def test_restarts_never_raise_robust_accuracy(trained):
    model, x, y = trained
    kw = dict(eps=4 / 255, alpha=1 / 255, steps=3)
    one = attacks.pgd(model, x, y, restarts=1, **kw)[1]
    three = attacks.pgd(model, x, y, restarts=3, **kw)[1]
    assert three.mean() <= one.mean()
    assert not (three & ~one).any()  # robust after 3 restarts implies robust after the first


def test_predicted_label_mode_differs_only_in_target(trained):
    model, x, y = trained
    true = attacks.robust_accuracy(model, x, y, steps=5, restarts=1)
    pred = attacks.robust_accuracy(model, x, y, steps=5, restarts=1, labels="predicted")
    assert 0 <= true <= 1 and 0 <= pred <= 1
    with pytest.raises(ValueError, match="labels must be"):
        attacks.pgd(model, x, y, labels="guess")


def test_native_pgd_agrees_with_art(trained):
    model, x, y = trained
    kw = dict(eps=8 / 255, alpha=2 / 255, steps=10, restarts=1)
    native = attacks.pgd(model, x, y, **kw)[1].mean()
    art = art_attacks.pgd(model, x, y, **kw)[1].mean()
    assert abs(native - art) <= 0.1  # 64 images: within about 6 images


def test_art_predict_is_chunked(trained):
    model, x, _ = trained
    clf = art_attacks.classifier(model)
    np.testing.assert_allclose(art_attacks.predict(clf, x, batch_size=7), model(x).numpy(), atol=1e-5)


def test_autoattack_reports_both_losses(trained):
    model, x, y = trained
    out = art_attacks.autoattack(model, x[:16], y[:16], steps=5)
    assert set(out) == {"apgd_ce", "apgd_dlr", "apgd_worst", "robust"}
    assert out["apgd_worst"] <= min(out["apgd_ce"], out["apgd_dlr"])
    assert out["robust"].shape == (16,) and out["robust"].mean() == out["apgd_worst"]


def test_cw_loss_pgd_and_fgsm(trained):
    model, x, y = trained
    assert attacks.robust_accuracy(model, x, y, steps=5, restarts=1, loss="cw") <= attacks.clean_accuracy(model, x, y)
    x_adv, _ = attacks.fgsm(model, x, y)
    assert np.abs(x_adv - x).max() <= 8 / 255 + 1e-6


def test_sanity_checklist(trained):
    model, x, y = trained
    checks = attacks.sanity_checks(model, x, y, steps=5)
    assert all(c["ok"] for c in checks.values()), checks
    assert checks["eps=0.5 drives accuracy to ~0"]["value"] <= 0.05
    # the first six are accuracies on these images (tables give them an interval), the last two are not
    assert [attacks.is_accuracy_check(n) for n in checks] == [True] * 6 + [False] * 2
    x_adv, robust = attacks.pgd(model, x, y, steps=5, seed=0)
    assert attacks.sanity_checks(model, x, y, steps=5, pgd_result=(x_adv, robust)) == checks  # not attacked again
    with pytest.raises(ValueError, match="pgd_result holds 2 results"):
        attacks.sanity_checks(model, x, y, steps=5, pgd_result=(x_adv[:2], robust[:2]))


@pytest.mark.parametrize("kw, message", [
    (dict(eps=2.0), "outside \\[0, 1\\]"), (dict(alpha=0), "step size"), (dict(steps=0), "steps and restarts"),
    (dict(loss="hinge"), "loss must be"),
])
def test_bad_attack_arguments(trained, kw, message):
    model, x, y = trained
    with pytest.raises(ValueError, match=message):
        attacks.pgd(model, x[:2], y[:2], **kw)


def test_an_attack_does_not_depend_on_the_batch_sizes_attacked_before(sample):
    """A KAF_ELU ResNet20 gave different PGD examples once its compiled attack had first seen another
    batch size (a model trained in-process had: its overfitting guard attacks training batches)."""
    from kafnotes import models, settings
    settings.setup(0)
    model = models.build("resnet20", "kaf_elu")
    x, y = sample.x_test[:100], sample.y_test[:100]
    attacks._COMPILED.clear()
    fresh = attacks.pgd(model, x, y, steps=5)
    attacks._COMPILED.clear()
    attacks.pgd(model, x[:50], y[:50], steps=1)
    after_other_size = attacks.pgd(model, x, y, steps=5)
    np.testing.assert_array_equal(fresh[0], after_other_size[0])
    np.testing.assert_array_equal(fresh[1], after_other_size[1])
    clf = art_attacks.classifier(model)
    first = clf.predict(x[:7])
    art_attacks.predict(clf, x)
    np.testing.assert_array_equal(first, clf.predict(x[:7]))
