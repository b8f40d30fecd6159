"""Standard AutoAttack (Croce & Hein 2020), composed from ART 1.20's attacks.

RobustBench ranks models by ``version='standard'``: APGD-CE, then APGD-T (targeted DLR, 9 target
classes), then FAB-T, then Square (5000 queries), each run only on the images that every earlier
attack failed on. ART has no FAB, so this ensemble is APGD-CE -> APGD-T -> Square; the cross-check
benchmark (``benchmarks/autoattack_crosscheck.py``) measures what leaving FAB-T out is worth.

``run`` returns the accuracy after each stage and the final per-image robust mask, so tables can
show which attack found what, and the statistics module can put intervals and paired tests on it.
"""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path

import numpy as np

from . import art_attacks

STAGES = ("clean", "apgd_ce", "apgd_t", "square")


def run(model, x, y, eps: float = 8 / 255, steps: int = 100, targets: int = 9, square_queries: int = 5000,
        square_n: int | None = None, seed: int = 0, batch_size: int = 256,
        checkpoint: str | os.PathLike | None = None) -> dict:
    """Attack ``model`` (logits) on ``x``, ``y`` with the ensemble, in sequence on still-robust images.

    ``steps``: APGD iterations (100 in the standard version); APGD's first step is 2 eps, as in the
    reference. ``targets``: APGD-T's target classes, the 2nd to (targets+1)-th highest clean logits.
    ``square_n``: Square runs only on the first ``square_n`` images (all when ``None``); an image
    outside them counts as robust if it survives the white-box stages.

    Returns ``{"accuracy": {stage: accuracy after it}, "robust": mask, "square_images": n,
    "square_found": images Square broke that APGD missed, "checks": {...}, "seconds_by_stage": {...}}``.
    ``checks`` are AutoAttack's own warnings, in the checklist's form (``{"value", "ok"}``): zero
    gradients, and a black-box attack succeeding where the white-box ones failed (both signs of gradient
    masking). ``seconds_by_stage`` keeps each stage's time apart from a record's total ``seconds``. A
    model that outputs probabilities is refused with an error, as their losses would flatter it.

    ``checkpoint``: a file where the progress is saved after each attack (APGD-CE, each APGD-T target,
    Square), so an interrupted run resumes at the next one; every attack draws its randomness from
    ``seed`` afresh, so a resumed run gives the same result as one that ran through.
    ``"seconds_earlier"``: the time earlier, interrupted runs spent on the attacks they finished.
    """
    from art.attacks.evasion import AutoProjectedGradientDescent, SquareAttack
    x, y = np.asarray(x, np.float32), np.asarray(y)
    _check(x, y, steps, targets, square_queries, square_n)
    clf = art_attacks.classifier(model)
    logits = art_attacks.predict(clf, x)
    if _looks_like_probabilities(logits):
        raise ValueError("the model outputs probabilities (rows >= 0 summing to 1), not logits: AutoAttack's "
                         "losses on probabilities flatten the gradient and flatter the model. Attack the model "
                         "without its final softmax (thesis_models.rebuild returns logits).")
    progress = _Progress(checkpoint, robust=np.argmax(logits, -1) == y)
    robust = progress.robust

    def survive(name, stage, attack, labels, first=None):
        """Attack the still-robust images (of the first ``first``); an image stays robust only if it
        is still classified right. Skipped when a resumed run had finished it."""
        if progress.done(name):
            return
        t0 = time.perf_counter()
        idx = np.flatnonzero(robust[:first])
        if idx.size:
            np.random.seed(seed)  # ART draws its random starts and squares with NumPy
            x_adv = art_attacks.generate(attack, x[idx], labels[idx], batch_size)
            robust[idx] = np.argmax(art_attacks.predict(clf, x_adv), -1) == y[idx]
        progress.finish(name, stage, time.perf_counter() - t0)

    apgd = dict(norm=np.inf, eps=eps, eps_step=2 * eps, max_iter=steps, nb_random_init=1, batch_size=batch_size,
                verbose=False)
    survive("apgd_ce", "apgd_ce", AutoProjectedGradientDescent(clf, loss_type="cross_entropy", **apgd), y)
    # APGD-T as the reference runs it: untargeted APGD (success = any wrong class) on the targeted DLR
    # loss. ART's own targeted mode counts only the target class as success and loops over the batch
    # in Python; our loss reads the true and target class from one label array (see _TargetedDLR).
    targeted = AutoProjectedGradientDescent(art_attacks.classifier(model, loss=_TargetedDLR()), loss_type=None,
                                            **apgd)
    ranked = np.argsort(-logits, axis=1, kind="stable")  # on still-robust images ranked[:, 0] is y
    for k in range(1, targets + 1):
        survive(f"apgd_t{k}", "apgd_t", targeted, _TargetedDLR.labels(y, ranked[:, k]))
    white_box = progress.white_box()  # before Square, saved with the progress
    n_square = len(x) if square_n is None else min(square_n, len(x))
    survive("square", "square", SquareAttack(clf, norm=np.inf, eps=eps, max_iter=square_queries, p_init=0.8,
                                             nb_restarts=1, batch_size=batch_size, verbose=False), y, first=n_square)
    done, took = progress.accuracy, progress.seconds
    accuracy = {"clean": float(np.mean(np.argmax(logits, -1) == y)), "apgd_ce": done["apgd_ce"],
                "apgd_t": done.get("apgd_t", done["apgd_ce"]), "square": done["square"]}  # targets=0: no APGD-T
    seconds = {stage: took.get(stage, 0.0) for stage in STAGES[1:]}
    found = int(np.sum(white_box & ~robust))
    zero = _zero_gradient_share(model, x, y)
    checks = {"no image has a zero input gradient": {"value": round(zero, 4), "ok": zero == 0},
              "Square breaks no image that APGD left": {"value": found, "ok": found == 0}}
    return {"accuracy": accuracy, "robust": robust, "square_images": n_square, "square_found": found,
            "checks": checks, "seconds_by_stage": seconds, "seconds_earlier": progress.seconds_earlier,
            "composition": f"APGD-CE ({steps}), APGD-T ({targets} targets x {steps}), "
                           f"Square ({square_queries} queries); no FAB-T (ART has none)"}


class _Progress:
    """The ensemble's progress: the robust mask, the attacks finished, each stage's accuracy and
    seconds; saved to ``path`` (atomically) after each attack when a path is given, and read back
    from it by a run that resumes."""

    def __init__(self, path, robust: np.ndarray):
        self.path = Path(path) if path else None
        self.robust, self.finished, self.accuracy, self.seconds = robust, [], {}, {}
        self._white_box, self.seconds_earlier = None, 0.0
        if self.path and self.path.exists():
            with np.load(self.path) as f:
                saved = json.loads(str(f["progress"]))
                if len(f["robust"]) != len(robust):
                    raise ValueError(f"{self.path} holds the progress of an attack on {len(f['robust'])} images, "
                                     f"not {len(robust)}; delete it to start afresh")
                self.robust[:] = f["robust"]
                self._white_box = f["white_box"] if saved["white_box"] else None
            self.finished, self.accuracy, self.seconds = saved["finished"], saved["accuracy"], saved["seconds"]
            self.seconds_earlier = sum(self.seconds.values())

    def done(self, name: str) -> bool:
        return name in self.finished

    def white_box(self) -> np.ndarray:
        """The mask the white-box attacks left: Square's findings are counted against it."""
        if self._white_box is None:
            self._white_box = self.robust.copy()
        return self._white_box

    def finish(self, name: str, stage: str, seconds: float):
        self.finished.append(name)
        self.accuracy[stage] = float(self.robust.mean())
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            buf = io.BytesIO()
            saved = dict(finished=self.finished, accuracy=self.accuracy, seconds=self.seconds,
                         white_box=self._white_box is not None)
            np.savez(buf, progress=json.dumps(saved), robust=self.robust,
                     white_box=self._white_box if self._white_box is not None else np.zeros(0, bool))
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_bytes(buf.getvalue())
            os.replace(tmp, self.path)


class _TargetedDLR:
    """The reference's targeted DLR loss, -(z_y - z_t) / (z_1 - (z_3 + z_4) / 2), with z_1 >= z_2 >= ...
    the sorted logits, y the true class and t the target. ART hands 2-D labels to the loss untouched,
    so ``labels`` packs both classes into one row: +1 at the true class (its argmax, which ART's
    success test reads), -1 at the target."""

    def __init__(self):
        self.reduction = "mean"  # ART sets this to "none" for per-image losses

    @staticmethod
    def labels(y, target) -> np.ndarray:
        packed = np.zeros((len(y), 10), np.float32)
        packed[np.arange(len(y)), y] = 1.0
        packed[np.arange(len(y)), target] = -1.0
        return packed

    def __call__(self, y_true, y_pred):
        import tensorflow as tf
        z, y_true = tf.cast(y_pred, tf.float32), tf.cast(y_true, tf.float32)
        z_y = tf.gather(z, tf.argmax(y_true, 1), batch_dims=1)
        z_t = tf.gather(z, tf.argmin(y_true, 1), batch_dims=1)
        top = tf.sort(z, axis=1, direction="DESCENDING")
        loss = -(z_y - z_t) / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + 1e-12)
        reduction = str(self.reduction).lower()
        if reduction.endswith("none"):
            return loss
        return tf.reduce_sum(loss) if reduction.endswith("sum") else tf.reduce_mean(loss)


def _looks_like_probabilities(outputs: np.ndarray) -> bool:
    """AutoAttack's check: rows that are non-negative and sum to 1 are softmax outputs, not logits,
    and losses computed on them flatten the gradient."""
    return bool(np.all(outputs >= 0) and np.allclose(outputs.sum(-1), 1.0, atol=1e-3))


def _zero_gradient_share(model, x, y, batch_size: int = 256) -> float:
    """The share of images whose cross-entropy gradient with respect to the input is exactly zero:
    AutoAttack's sign of a model that hides its gradient (gradient masking) rather than resisting."""
    import keras
    import tensorflow as tf
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="sum")
    zero = 0
    for i in range(0, len(x), batch_size):
        xb = tf.convert_to_tensor(x[i:i + batch_size])
        with tf.GradientTape() as tape:
            tape.watch(xb)
            loss = ce(y[i:i + batch_size], tf.cast(model(xb, training=False), tf.float32))
        grad = tape.gradient(loss, xb)
        if grad is None:  # no path from input to loss at all
            zero += len(xb)
            continue
        zero += int(np.sum(np.all(grad.numpy().reshape(len(xb), -1) == 0, axis=1)))
    return zero / len(x)


def _check(x, y, steps, targets, square_queries, square_n):
    if len(x) == 0 or len(x) != len(y):
        raise ValueError(f"need as many labels as images, at least one (got {len(x)} images, {len(y)} labels)")
    if x.min() < 0 or x.max() > 1:
        raise ValueError(f"images must lie in [0, 1] (got [{x.min():.3g}, {x.max():.3g}]); pass unnormalised pixels")
    if steps < 1 or square_queries < 1:
        raise ValueError(f"steps and square_queries must be >= 1 (got {steps}, {square_queries})")
    if not 0 <= targets <= 9:
        raise ValueError(f"targets must lie in 0..9 for 10 classes (got {targets}); the standard version uses 9")
    if square_n is not None and square_n < 0:
        raise ValueError(f"square_n must be >= 0 or None for all images (got {square_n})")
