"""How sure an accuracy is: Wilson intervals, paired comparisons on shared images, Holm's correction.

Every accuracy in the book is measured on a finite set of test images, so it carries a binomial
uncertainty: at 500 images about 2 points. Two models attacked on the same images are compared
image by image (McNemar's exact test on the images where exactly one of them is right), which is far
sharper than comparing two intervals. scipy computes the tests and intervals; masks are per-image
booleans (``True``: correct, or robust), as the evaluation records keep them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np
from scipy import stats as _scipy

CONFIDENCE = 0.95
ALPHA = 0.05


class MaskError(ValueError):
    """A per-image mask that cannot be used; the message says what is wrong and how to fix it."""


@dataclass(frozen=True)
class Interval:
    """An accuracy with its confidence interval, all as fractions in [0, 1]."""
    value: float
    low: float
    high: float
    n: int

    def __str__(self) -> str:
        return format_interval(self)


@dataclass(frozen=True)
class Paired:
    """Model A against model B on the same images: ``diff`` = acc(A) - acc(B), its interval, the
    discordant counts (``a_only``: images only A gets right) and McNemar's exact two-sided p-value."""
    diff: float
    low: float
    high: float
    a_only: int
    b_only: int
    n: int
    p_value: float


def as_mask(mask, name: str = "mask") -> np.ndarray:
    """A 1-D boolean array from a bool array/list or a record's '0'/'1' string; anything else is refused."""
    if isinstance(mask, str):
        if set(mask) - {"0", "1"}:
            raise MaskError(f"{name} is a string with characters other than '0' and '1'; records store masks "
                            "as '0'/'1' strings (evaluation.robust_images)")
        mask = [c == "1" for c in mask]
    arr = np.asarray(mask)
    if arr.ndim != 1:
        raise MaskError(f"{name} must be one boolean per image (1-D); got shape {arr.shape}")
    if arr.size == 0:
        raise MaskError(f"{name} is empty: an accuracy needs at least one image")
    if arr.dtype != bool:
        raise MaskError(f"{name} must be boolean (one True/False per image), got dtype {arr.dtype}; "
                        "compare predictions with labels (pred == y) rather than passing 0/1 numbers")
    return arr


def wilson(mask, confidence: float = CONFIDENCE) -> Interval:
    """Accuracy of a per-image mask with its Wilson score interval."""
    m = as_mask(mask)
    return wilson_count(int(m.sum()), len(m), confidence)


def wilson_count(successes: int, n: int, confidence: float = CONFIDENCE) -> Interval:
    """The same from counts (for records that kept only an accuracy and its image count)."""
    if n < 1:
        raise MaskError(f"an accuracy needs at least one image (n={n})")
    if not 0 <= successes <= n:
        raise MaskError(f"successes must lie in [0, n] (got {successes} of {n})")
    ci = _scipy.binomtest(int(successes), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return Interval(successes / n, float(ci.low), float(ci.high), int(n))


def wilson_accuracy(accuracy: float, n: int, confidence: float = CONFIDENCE) -> Interval:
    """The same from an accuracy (a fraction) measured on ``n`` images: its count is accuracy * n."""
    return wilson_count(round(accuracy * n), n, confidence)


def paired(a, b, confidence: float = CONFIDENCE, images_a: str | None = None,
           images_b: str | None = None) -> Paired:
    """Compare two masks over the same images.

    The p-value is McNemar's exact test: under "no difference" each discordant image is equally
    likely to favour A or B, so the count favouring A is Binomial(discordant, 1/2). The interval for
    the difference is Newcombe's (1998, method 10): the two Wilson intervals combined with the
    correlation of the paired masks, which is what makes it narrower than two separate intervals.
    ``images_a`` / ``images_b``: digests of the images
    each mask was measured on (e.g. ``records.array_digest(x, y)``); they must agree.
    """
    if images_a is not None and images_b is not None and images_a != images_b:
        raise MaskError(f"the masks come from different images ({images_a} vs {images_b}); a paired test "
                        "needs both models evaluated on the same images in the same order")
    a, b = as_mask(a, "first mask"), as_mask(b, "second mask")
    if len(a) != len(b):
        raise MaskError(f"the masks have different lengths ({len(a)} vs {len(b)} images); a paired test "
                        "needs both models evaluated on the same images")
    n = len(a)
    a_only, b_only = int(np.sum(a & ~b)), int(np.sum(~a & b))
    discordant = a_only + b_only
    # no discordant image: no evidence of a difference, though the interval stays open (n is finite)
    p_value = float(_scipy.binomtest(a_only, discordant, 0.5).pvalue) if discordant else 1.0
    wa, wb = wilson(a, confidence), wilson(b, confidence)
    both, neither = int(np.sum(a & b)), int(np.sum(~a & ~b))
    denominator = float(wa.value * (1 - wa.value) * wb.value * (1 - wb.value)) * n ** 4
    phi = (both * neither - a_only * b_only) / np.sqrt(denominator) if denominator > 0 else 0.0
    diff = wa.value - wb.value
    below = np.sqrt(max((wa.value - wa.low) ** 2 - 2 * phi * (wa.value - wa.low) * (wb.high - wb.value)
                        + (wb.high - wb.value) ** 2, 0.0))
    above = np.sqrt(max((wa.high - wa.value) ** 2 - 2 * phi * (wa.high - wa.value) * (wb.value - wb.low)
                        + (wb.value - wb.low) ** 2, 0.0))
    return Paired(diff, diff - float(below), diff + float(above), a_only, b_only, n, p_value)


def paired_seeds(a: Sequence, b: Sequence) -> Paired:
    """``paired`` over per-seed masks of two models: seed s of one against seed s of the other, over
    the seeds both have (a seed only one side has pairs with nothing)."""
    common = min(len(a), len(b))
    return paired(pooled(a[:common]), pooled(b[:common]))


def pooled(masks: Sequence) -> np.ndarray:
    """One mask from several seeds' masks on the same images (seed after seed), for a paired test
    pooled over seeds: pair seed s of model A with seed s of model B."""
    parts = [as_mask(m, f"mask of seed {i}") for i, m in enumerate(masks)]
    if len({len(p) for p in parts}) != 1:
        raise MaskError("every seed's mask must cover the same images (their lengths differ)")
    return np.concatenate(parts)


def holm(p_values: Iterable[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error control over the k tests given).

    The k-th smallest p-value is multiplied by (m - k + 1), made monotone, and capped at 1; a test is
    significant at level alpha when its adjusted p-value is at most alpha.
    """
    p = np.asarray(list(p_values), dtype=float)
    if p.size == 0:
        return p
    if np.any((p < 0) | (p > 1) | ~np.isfinite(p)):
        raise ValueError(f"p-values must lie in [0, 1] (got {p.tolist()})")
    order = np.argsort(p, kind="stable")
    scaled = p[order] * (len(p) - np.arange(len(p)))
    adjusted = np.minimum(np.maximum.accumulate(scaled), 1.0)
    out = np.empty_like(adjusted)
    out[order] = adjusted
    return out


def against_baseline(masks: Mapping[str, object], baseline: str, alpha: float = ALPHA):
    """Each entry of ``masks`` (one mask, or a list of per-seed masks) against ``baseline``.

    Returns a DataFrame, one row per name: accuracy with its Wilson interval (pooled over seeds),
    the paired difference from the baseline with its interval (over the seeds both have: seed s of
    one against seed s of the other), McNemar's p-value, its Holm-adjusted
    value over the k comparisons, and ``significant`` (adjusted p <= alpha).
    """
    import pandas as pd
    if baseline not in masks:
        raise KeyError(f"baseline {baseline!r} is not among the masks ({', '.join(masks)})")
    per_seed = {k: list(v) if _is_seed_list(v) else [v] for k, v in masks.items()}
    flat = {k: pooled(v) for k, v in per_seed.items()}
    rows = []
    for name, m in flat.items():
        acc = wilson(m)
        row = {"name": name, "acc": acc.value, "low": acc.low, "high": acc.high, "n": acc.n}
        if name != baseline:
            test = paired_seeds(per_seed[name], per_seed[baseline])
            row.update(diff=test.diff, diff_low=test.low, diff_high=test.high, p=test.p_value)
        rows.append(row)
    table = pd.DataFrame(rows).set_index("name")
    others = [k for k in flat if k != baseline]
    table["p_holm"] = np.nan
    table.loc[others, "p_holm"] = holm(table.loc[others, "p"])
    table["significant"] = table["p_holm"] <= alpha
    return table


def rate_below(k: int, n: int, k_ref: int, n_ref: int) -> float:
    """One-sided p-value that the rate k/n lies below the reference rate k_ref/n_ref (Fisher's exact
    test; for two measurements on the same items it is conservative)."""
    for name, (hits, total) in (("k", (k, n)), ("k_ref", (k_ref, n_ref))):
        if total < 1 or not 0 <= hits <= total:
            raise ValueError(f"{name} must be a count between 0 and its total {total} >= 1 (got {hits})")
    return float(_scipy.fisher_exact([[k_ref, n_ref - k_ref], [k, n - k]], alternative="greater").pvalue)


def _is_seed_list(value) -> bool:
    return isinstance(value, (list, tuple)) and len(value) > 0 and not isinstance(value[0], (bool, np.bool_))


# -- presentation ------------------------------------------------------------------------------------

def format_interval(interval: Interval, digits: int = 1) -> str:
    """'41.4 [37.1, 45.8]': the accuracy and its interval in percent."""
    return (f"{100 * interval.value:.{digits}f} [{100 * interval.low:.{digits}f}, "
            f"{100 * interval.high:.{digits}f}]")


def format_diff(test: Paired, digits: int = 1) -> str:
    """'+3.2 [+0.8, +5.6]': a paired difference and its interval in points."""
    return f"{100 * test.diff:+.{digits}f} [{100 * test.low:+.{digits}f}, {100 * test.high:+.{digits}f}]"
