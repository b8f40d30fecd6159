"""L-infinity attacks and robust accuracy, compiled with tf.function.

Every attack here targets the **true labels** with the model in inference mode. The thesis' code
attacked the model's own predictions (ART's ``generate(x)`` without ``y``); ``labels="predicted"``
reproduces that, for comparison only.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from . import settings


LOSSES = ("ce", "cw")


def _loss(model, x, y, loss):
    """Cross-entropy, or the Carlini-Wagner margin (best other logit minus the true one)."""
    logits = tf.cast(model(x, training=False), tf.float32)
    if loss == "ce":
        return tf.reduce_sum(tf.keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))
    true = tf.gather(logits, y, batch_dims=1)
    other = tf.reduce_max(logits - 1e9 * tf.one_hot(y, tf.shape(logits)[-1]), axis=-1)
    return tf.reduce_sum(other - true)


_COMPILED: dict = {}


def _pgd_fn(model, loss_name, sample_shape):
    """One compiled PGD batch function per model, loss and input shape (retracing per call would dominate).

    Its batch size is always ``None``. Traced for the first batch size it saw, the graph gave
    different adversarial examples (up to a whole eps on some pixels, for a KAF_ELU ResNet20) from
    one traced for any size, so the same attack's results depended on what the process had attacked
    before: a model trained in the chapter (its guard attacks training batches) against the same model
    loaded from disk.
    """
    key = (id(model), loss_name, tuple(sample_shape))
    if key not in _COMPILED or _COMPILED[key][0] is not model:
        scalar = tf.TensorSpec([], tf.float32)
        @tf.function(input_signature=[tf.TensorSpec([None, *sample_shape], tf.float32),
                                      tf.TensorSpec([None], tf.int32), scalar, scalar,
                                      tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.bool),
                                      tf.TensorSpec([2], tf.int64)])
        def attack(x, y, eps, alpha, steps, random_start, seed):
            delta = tf.cond(random_start,
                            lambda: tf.random.stateless_uniform(tf.shape(x), seed, -eps, eps),
                            lambda: tf.zeros_like(x))
            delta = tf.clip_by_value(x + delta, 0.0, 1.0) - x
            for _ in tf.range(steps):
                with tf.GradientTape() as tape:
                    tape.watch(delta)
                    loss = _loss(model, x + delta, y, loss_name)
                grad = tape.gradient(loss, delta)
                delta = tf.clip_by_value(delta + alpha * tf.sign(grad), -eps, eps)
                delta = tf.clip_by_value(x + delta, 0.0, 1.0) - x
            x_adv = x + delta
            correct = tf.equal(tf.argmax(model(x_adv, training=False), -1, output_type=tf.int32), y)
            return x_adv, correct
        _COMPILED[key] = (model, attack)
    return _COMPILED[key][1]


def predict_labels(model, x, batch_size: int = 500) -> np.ndarray:
    return np.concatenate([np.argmax(model(x[i:i + batch_size], training=False), -1)
                           for i in range(0, len(x), batch_size)]).astype(np.int32)


def pgd(model, x, y, eps: float = 8 / 255, alpha: float = 2 / 255, steps: int = 50, restarts: int = 1,
        random_start: bool = True, batch_size: int = 256, seed: int = 0, labels: str = "true",
        loss: str = "ce", progress: bool | None = None):
    """L-inf PGD. Returns ``(x_adv, robust)``: per example, the worst adversarial input found and
    whether the example survived **every** restart. ``loss="cw"`` maximises the C&W margin instead of
    the cross-entropy (PGD-CW, a useful second opinion against gradient masking)."""
    _check(eps, alpha, steps, restarts)
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES} (got {loss!r})")
    if labels not in ("true", "predicted"):
        raise ValueError(f"labels must be 'true' or 'predicted' (got {labels!r})")
    x = np.asarray(x, np.float32)
    y_true = np.asarray(y, np.int32)
    target = y_true if labels == "true" else predict_labels(model, x)
    attack = _pgd_fn(model, loss, x.shape[1:])
    x_adv = x.copy()
    robust = np.ones(len(x), bool)
    n_batches = -(-len(x) // batch_size)
    bar = tqdm(total=n_batches * restarts, desc=f"PGD-{steps}-{restarts}", leave=False,
               disable=not settings.show_progress(progress))
    for r in range(restarts):
        for b in range(n_batches):
            sl = slice(b * batch_size, (b + 1) * batch_size)
            adv, correct = attack(tf.constant(x[sl]), tf.constant(target[sl]), tf.constant(eps, tf.float32),
                                  tf.constant(alpha, tf.float32), tf.constant(int(steps), tf.int32),
                                  tf.constant(random_start), tf.constant([seed, r * 100003 + b], tf.int64))
            adv, correct = adv.numpy(), correct.numpy()
            if labels == "predicted":  # the thesis scored against the true labels afterwards
                correct = predict_labels(model, adv) == y_true[sl]
            fooled = robust[sl] & ~correct
            x_adv[sl][fooled] = adv[fooled]
            robust[sl] &= correct
            bar.update()
        if not random_start:
            break  # restarts without a random start would repeat the same attack
    bar.close()
    return x_adv, robust


def fgsm(model, x, y, eps: float = 8 / 255, batch_size: int = 256):
    """Single signed-gradient step of size eps from x (no random start)."""
    return pgd(model, x, y, eps=eps, alpha=eps, steps=1, restarts=1, random_start=False,
               batch_size=batch_size, progress=False)


def clean_accuracy(model, x, y, batch_size: int = 500) -> float:
    return float(np.mean(predict_labels(model, x, batch_size) == np.asarray(y)))


def robust_accuracy(model, x, y, eps: float = 8 / 255, alpha: float = 2 / 255, steps: int = 50,
                    restarts: int = 10, **kwargs) -> float:
    """Fraction of examples that stay correctly classified under PGD-steps-restarts on true labels."""
    return float(np.mean(pgd(model, x, y, eps=eps, alpha=alpha, steps=steps, restarts=restarts,
                             **kwargs)[1]))


# The checklist's entries whose value is an accuracy on the checklist's images (the others are a
# distance, a pixel value, a fraction of gradients, a count): tables give these an interval.
ACCURACY_CHECKS = ("clean accuracy", "robust <= clean", "more steps", "fewer steps", "smaller eps", "eps=")


def is_accuracy_check(name: str) -> bool:
    return name.startswith(ACCURACY_CHECKS)


def sanity_checks(model, x, y, eps: float = 8 / 255, alpha: float = 2 / 255, steps: int = 20,
                  restarts: int = 1, big_eps: float = 0.5, tolerance: float = 0.01, seed: int = 0,
                  pgd_result=None) -> dict:
    """The Carlini et al. (2019) checklist in one call; each check has a value and a verdict.

    ``pgd_result``: the ``(x_adv, robust)`` that ``pgd`` returned for these x, y, eps, alpha, steps, restarts
    and seed, when the caller already holds it; the checks compare against it instead of attacking again.
    """
    if pgd_result is not None and (len(pgd_result[1]) != len(x) or np.shape(pgd_result[0]) != np.shape(x)):
        raise ValueError(f"pgd_result holds {len(pgd_result[1])} results for {len(x)} images; pass the "
                         "(x_adv, robust) that pgd returned for these images, or pgd_result=None")
    clean = clean_accuracy(model, x, y)
    acc = lambda **kw: robust_accuracy(model, x, y, **{**dict(eps=eps, alpha=alpha, steps=steps,
                                                            restarts=restarts, seed=seed), **kw})
    x_adv, robust = pgd_result if pgd_result is not None else pgd(model, x, y, eps=eps, alpha=alpha, steps=steps,
                                                            restarts=restarts, seed=seed)
    base = float(robust.mean())
    fewer = acc(steps=max(1, steps // 4))
    more = acc(steps=steps * 2)
    half_eps = acc(eps=eps / 2, alpha=alpha / 2)
    huge = acc(eps=big_eps, alpha=big_eps / 10, steps=max(steps, 20))
    dist = float(np.max(np.abs(x_adv - np.asarray(x))))
    checks = {
        "clean accuracy": (clean, True),
        "robust <= clean": (base, base <= clean + 1e-9),
        f"more steps ({steps * 2}) do not help the model": (more, more <= base + tolerance),
        f"fewer steps ({max(1, steps // 4)}) do not hurt it more": (fewer, fewer + tolerance >= base),
        f"smaller eps ({eps / 2:.4f}) is not worse": (half_eps, half_eps + tolerance >= base),
        f"eps={big_eps} drives accuracy to ~0": (huge, huge <= 0.05),
        "adversarial inputs within the eps-ball": (dist, dist <= eps + 1e-6),
        "adversarial inputs within [0, 1]": (float(x_adv.min()), bool(x_adv.min() >= 0 and x_adv.max() <= 1)),
    }
    return {name: {"value": round(float(v), 4), "ok": bool(ok)} for name, (v, ok) in checks.items()}


def _check(eps, alpha, steps, restarts):
    if not 0 <= eps <= 1:
        raise ValueError(f"eps={eps} is outside [0, 1]; inputs live in [0, 1], e.g. eps=8/255")
    if not alpha > 0:
        raise ValueError(f"the step size alpha must be positive (got {alpha}), e.g. 2/255")
    if int(steps) < 1 or int(restarts) < 1:
        raise ValueError(f"steps and restarts must be >= 1 (got steps={steps}, restarts={restarts})")
