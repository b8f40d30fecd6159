"""Learning-rate tools: the thesis' one-cycle triangular schedule and the LR range finder.

``OneCycle`` replaces ``tensorflow_addons.optimizers.TriangularCyclicalLearningRate``, the one use the
original code made of tensorflow-addons (which does not import under Keras 3).
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="kafnotes")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """Linear lr_min -> lr_max over the first half of ``cycle_steps``, back to lr_min over the second,
    then ``extra_lr`` (default lr_min / 10), halved every ``halve_every`` steps, for the remaining steps."""

    def __init__(self, lr_min: float, lr_max: float, cycle_steps: int, extra_lr: float | None = None,
                 halve_every: int | None = None):
        if not 0 <= lr_min <= lr_max:
            raise ValueError(f"OneCycle needs 0 <= lr_min <= lr_max (got {lr_min}, {lr_max})")
        if cycle_steps < 2:
            raise ValueError(f"OneCycle needs cycle_steps >= 2 (got {cycle_steps})")
        self.lr_min, self.lr_max, self.cycle_steps = float(lr_min), float(lr_max), int(cycle_steps)
        self.extra_lr = float(lr_min / 10 if extra_lr is None else extra_lr)
        self.halve_every = halve_every

    def __call__(self, step):
        step = ops.cast(step, "float32")
        half = self.cycle_steps / 2
        rise = self.lr_min + (self.lr_max - self.lr_min) * step / half
        fall = self.lr_max - (self.lr_max - self.lr_min) * (step - half) / half
        extra = ops.convert_to_tensor(self.extra_lr, "float32")
        if self.halve_every:
            extra = extra * ops.power(0.5, ops.floor((step - self.cycle_steps) / self.halve_every))
        return ops.where(step < half, rise, ops.where(step <= self.cycle_steps, fall, extra))

    def get_config(self):
        return dict(lr_min=self.lr_min, lr_max=self.lr_max, cycle_steps=self.cycle_steps,
                    extra_lr=self.extra_lr, halve_every=self.halve_every)


@keras.saving.register_keras_serializable(package="kafnotes")
class ExponentialRange(keras.optimizers.schedules.LearningRateSchedule):
    """lr_start * (lr_end / lr_start) ** (step / steps): the LR range finder's sweep."""

    def __init__(self, lr_start: float, lr_end: float, steps: int):
        if not 0 < lr_start < lr_end:
            raise ValueError(f"the LR sweep needs 0 < lr_start < lr_end (got {lr_start}, {lr_end})")
        self.lr_start, self.lr_end, self.steps = float(lr_start), float(lr_end), int(steps)

    def __call__(self, step):
        frac = ops.cast(step, "float32") / max(self.steps - 1, 1)
        return self.lr_start * ops.power(self.lr_end / self.lr_start, frac)

    def get_config(self):
        return dict(lr_start=self.lr_start, lr_end=self.lr_end, steps=self.steps)


@dataclass
class LRFinderResult:
    lrs: np.ndarray
    losses: np.ndarray       # raw per-step training loss
    smoothed: np.ndarray     # bias-corrected exponential moving average
    lr_min: float
    lr_max: float
    reliable: bool           # the loss fell by >= 5% between lr_min and lr_max

    def range_or(self, fallback: tuple[float, float]) -> tuple[float, float]:
        """The suggested range, or ``fallback`` when the sweep found no clear descent."""
        return (self.lr_min, self.lr_max) if self.reliable else tuple(fallback)

    def plot(self, ax=None, label=None):
        from . import plots
        return plots.lr_finder(self, ax=ax, label=label)


def smooth(losses, beta: float = 0.9) -> np.ndarray:
    out, avg = [], 0.0
    for i, v in enumerate(losses, 1):
        avg = beta * avg + (1 - beta) * v
        out.append(avg / (1 - beta ** i))
    return np.asarray(out)


def suggest_range(lrs, losses, beta: float = 0.9) -> tuple[float, float, np.ndarray, bool]:
    """The thesis' heuristic on the smoothed curve: lr_min where the loss first starts to fall,
    lr_max where it bottoms out (the plateau before it blows up). The last value says whether the
    curve showed a clear descent (a fall of at least 5%) at all."""
    lrs = np.asarray(lrs, dtype=float)
    s = smooth(np.nan_to_num(np.asarray(losses, dtype=float), nan=np.inf, posinf=np.inf), beta)
    finite = np.isfinite(s)
    if finite.sum() < 3:
        raise ValueError("the LR sweep produced fewer than 3 finite losses; lower lr_start or lr_end")
    bottom = int(np.nanargmin(np.where(finite, s, np.inf)))
    drop = s[0] - s[bottom]
    # first step where the loss has fallen by 10% of the total fall: the start of the descent
    start = int(np.argmax(s[: bottom + 1] <= s[0] - 0.1 * drop)) if drop > 0 else 0
    reliable = bool(drop >= 0.05 * abs(s[0]) and bottom > start)
    return float(lrs[start]), float(lrs[bottom]), s, reliable
