"""A bridge to the Adversarial Robustness Toolbox (ART 1.20) for cross-checks and stronger attacks.

Differences from RobustBench's standard AutoAttack: ART's ``AutoAttack`` defaults to APGD-CE,
APGD-DLR, DeepFool and Square, while the standard ensemble is APGD-CE, APGD-T (targeted DLR), FAB-T
and Square. ``autoattack`` here runs the two untargeted APGD attacks (the part both share), each
example counting as robust only if it survives both, so its numbers upper-bound standard AutoAttack.
"""

from __future__ import annotations

import numpy as np

from . import settings

settings.quiet_tensorflow()


class _Graph:
    """The model as one compiled graph. ART computes gradients by calling the model eagerly, op by
    op, on every iteration; through a ``tf.function`` its APGD ran 1.6x faster here. The batch size
    is always ``None``, so the graph (and so the attack) does not depend on the sizes seen first."""

    def __init__(self, model):
        import tensorflow as tf
        spec = [tf.TensorSpec([None, *model.input_shape[1:]], tf.float32)]
        self._call = {mode: tf.function(lambda x, mode=mode: tf.cast(model(x, training=mode), tf.float32),
                                        input_signature=spec)
                      for mode in (False, True)}

    def __call__(self, x, training=False):
        return self._call[bool(training)](x)


def classifier(model, nb_classes: int = 10, loss=None):
    """Wrap a kafnotes (logits) model as ART's TensorFlowV2Classifier, inputs clipped to [0, 1];
    ``loss``: the loss object attacks that use the estimator's loss differentiate (default: CE)."""
    import keras
    from art.estimators.classification import TensorFlowV2Classifier
    loss = loss or keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    return TensorFlowV2Classifier(model=_Graph(model), nb_classes=nb_classes, input_shape=tuple(model.input_shape[1:]),
                                  loss_object=loss, clip_values=(0.0, 1.0))


def predict(clf, x, batch_size: int = 256) -> np.ndarray:
    """ART 1.20's predict ignores batch_size and runs everything at once: chunk it here."""
    return np.concatenate([clf.predict(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def _accuracy(clf, x_adv, y):
    return float(np.mean(np.argmax(predict(clf, x_adv), -1) == np.asarray(y)))


def generate(attack, x, y, batch_size: int = 256) -> np.ndarray:
    """Always pass the true labels: without ``y`` ART attacks the model's own predictions."""
    y = np.asarray(y)
    return np.concatenate([attack.generate(x[i:i + batch_size], y=y[i:i + batch_size])
                           for i in range(0, len(x), batch_size)])


def pgd(model, x, y, eps=8 / 255, alpha=2 / 255, steps=50, restarts=1, seed=0, clf=None):
    """ART's PGD (L-inf) with ``restarts`` random initialisations; returns (x_adv, robust mask)."""
    from art.attacks.evasion import ProjectedGradientDescent
    clf = clf or classifier(model)
    np.random.seed(seed)  # ART draws its random start with NumPy
    attack = ProjectedGradientDescent(clf, norm=np.inf, eps=eps, eps_step=alpha, max_iter=steps,
                                      num_random_init=restarts, batch_size=256, verbose=False)
    x_adv = generate(attack, x, y)
    return x_adv, np.argmax(predict(clf, x_adv), -1) == np.asarray(y)


def autoattack(model, x, y, eps=8 / 255, steps=100, restarts=1, seed=0, clf=None) -> dict:
    """APGD-CE and APGD-DLR (ART). Returns each attack's robust accuracy, the worst case over both, and
    ``robust``: per image, whether it survived both."""
    from art.attacks.evasion import AutoProjectedGradientDescent
    clf = clf or classifier(model)
    y = np.asarray(y)
    robust = np.argmax(predict(clf, x), -1) == y
    out = {}
    for loss in ("cross_entropy", "difference_logits_ratio"):
        np.random.seed(seed)
        attack = AutoProjectedGradientDescent(clf, norm=np.inf, eps=eps, eps_step=2 * eps, max_iter=steps,
                                              nb_random_init=restarts, loss_type=loss, batch_size=256,
                                              verbose=False)
        ok = np.argmax(predict(clf, generate(attack, x, y)), -1) == y
        out["apgd_ce" if loss == "cross_entropy" else "apgd_dlr"] = float(ok.mean())
        robust &= ok
    out["apgd_worst"] = float(robust.mean())
    out["robust"] = robust
    return out


def carlini_wagner_linf(model, x, y, eps=8 / 255, steps=30, clf=None) -> float:
    """Robust accuracy under ART's Carlini-Wagner L-inf attack, counted within eps."""
    from art.attacks.evasion import CarliniLInfMethod
    clf = clf or classifier(model)
    attack = CarliniLInfMethod(clf, confidence=0.0, max_iter=steps, learning_rate=0.01, batch_size=256,
                               verbose=False)
    x_adv = generate(attack, x, y)
    x_adv = np.clip(x_adv, x - eps, x + eps)  # only perturbations inside the threat model count
    return _accuracy(clf, x_adv, y)


def deepfool_linf(model, x, y, eps=8 / 255, steps=50, clf=None) -> float:
    """Robust accuracy under ART's DeepFool, with its perturbation clipped to the eps-ball."""
    from art.attacks.evasion import DeepFool
    clf = clf or classifier(model)
    attack = DeepFool(clf, max_iter=steps, epsilon=1e-2, nb_grads=10, batch_size=256, verbose=False)
    x_adv = np.clip(generate(attack, x, y), x - eps, x + eps)
    return _accuracy(clf, x_adv, y)
