import math

import numpy as np
import pytest

from kafnotes import stats

RNG = np.random.default_rng(0)
Z = 1.959963984540054  # the 97.5% normal quantile


def _wilson_closed_form(k, n, z=Z):
    centre = (k + z * z / 2) / (n + z * z)
    half = z / (n + z * z) * math.sqrt(k * (n - k) / n + z * z / 4)
    return centre - half, centre + half


@pytest.mark.parametrize("k, n", [(0, 10), (3, 10), (207, 500), (500, 500), (41, 100)])
def test_wilson_matches_the_closed_form(k, n):
    mask = np.zeros(n, bool)
    mask[:k] = True
    got = stats.wilson(RNG.permutation(mask))
    low, high = _wilson_closed_form(k, n)
    assert got.value == k / n and got.n == n
    assert got.low == pytest.approx(max(low, 0.0), abs=1e-12)
    assert got.high == pytest.approx(min(high, 1.0), abs=1e-12)


def _mcnemar_brute_force(a_only, b_only):
    d = a_only + b_only
    tail = sum(math.comb(d, i) for i in range(min(a_only, b_only) + 1)) / 2 ** d
    return min(1.0, 2 * tail)


@pytest.mark.parametrize("a_only, b_only", [(0, 1), (3, 9), (12, 12), (30, 0), (17, 5), (40, 61)])
def test_mcnemar_p_value_matches_a_brute_force_binomial_sum(a_only, b_only):
    n = 1000
    both = 400
    a = np.zeros(n, bool)
    b = np.zeros(n, bool)
    a[:both] = b[:both] = True
    a[both:both + a_only] = True
    b[both + a_only:both + a_only + b_only] = True
    test = stats.paired(a, b)
    assert (test.a_only, test.b_only, test.n) == (a_only, b_only, n)
    assert test.diff == pytest.approx((a_only - b_only) / n)
    assert test.p_value == pytest.approx(_mcnemar_brute_force(a_only, b_only), rel=1e-9)
    assert test.low <= test.diff <= test.high


def test_identical_masks_show_no_difference():
    a = RNG.random(1000) < 0.4
    test = stats.paired(a, a.copy())
    assert test.diff == 0 and test.p_value == 1.0 and test.a_only == test.b_only == 0
    # agreeing on 1000 images bounds the difference, but does not prove it is exactly 0
    assert -0.01 < test.low < 0 < test.high < 0.01


def test_thirty_one_sided_disagreements_in_a_thousand_are_significant():
    b = RNG.random(1000) < 0.4
    a = b.copy()
    a[np.flatnonzero(~b)[:30]] = True  # A also gets 30 images right that B misses
    test = stats.paired(a, b)
    assert test.a_only == 30 and test.b_only == 0
    assert test.p_value < 1e-8 and test.low > 0
    # the same 3-point gap between two independent intervals would overlap
    ia, ib = stats.wilson(a), stats.wilson(b)
    assert ia.low < ib.high


def test_bad_masks_are_refused_with_the_reason():
    good = np.array([True, False, True])
    with pytest.raises(stats.MaskError, match="different lengths"):
        stats.paired(good, np.array([True, False]))
    with pytest.raises(stats.MaskError, match="different images"):
        stats.paired(good, good, images_a="abc", images_b="abd")
    with pytest.raises(stats.MaskError, match="empty"):
        stats.wilson(np.array([], bool))
    with pytest.raises(stats.MaskError, match="must be boolean"):
        stats.wilson(np.array([1, 0, 1]))
    with pytest.raises(stats.MaskError, match="other than '0' and '1'"):
        stats.wilson("10x1")
    with pytest.raises(stats.MaskError, match="1-D"):
        stats.wilson(np.ones((2, 2), bool))


def test_record_strings_are_masks():
    assert stats.wilson("1101").value == 0.75


def _holm_by_definition(p):
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted


def test_holm_matches_its_definition_and_is_stricter_than_no_correction():
    p = [0.01, 0.04, 0.03, 0.005, 0.5]
    np.testing.assert_allclose(stats.holm(p), _holm_by_definition(p))
    assert list(stats.holm(p) <= 0.05) == [True, False, False, True, False]
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        stats.holm([0.1, 1.5])


def test_against_baseline_flags_only_the_separated_model():
    base = RNG.random(1000) < 0.4
    better = base.copy()
    better[np.flatnonzero(~base)[:40]] = True
    noisy = base.copy()
    flip = RNG.choice(1000, 6, replace=False)
    noisy[flip] = ~noisy[flip]
    table = stats.against_baseline({"relu": base, "kaf": better, "elu": noisy}, baseline="relu")
    assert bool(table.loc["kaf", "significant"]) and not bool(table.loc["elu", "significant"])
    assert np.isnan(table.loc["relu", "p_holm"])
    assert table.loc["kaf", "diff"] == pytest.approx(0.04)


def test_seeds_pool_pairwise():
    base = [RNG.random(200) < 0.4 for _ in range(2)]
    better = [b | (RNG.random(200) < 0.2) for b in base]
    table = stats.against_baseline({"relu": base, "kaf": better}, baseline="relu")
    assert table.loc["kaf", "n"] == 400
    with pytest.raises(stats.MaskError, match="same images"):
        stats.pooled([base[0], base[1][:100]])


def test_formatting():
    assert stats.format_interval(stats.Interval(0.414, 0.371, 0.458, 500)) == "41.4 [37.1, 45.8]"
    assert stats.format_diff(stats.Paired(0.032, 0.008, 0.056, 40, 8, 1000, 0.001)) == "+3.2 [+0.8, +5.6]"


def test_rate_below_matches_a_brute_force_hypergeometric_sum():
    """Fisher's one-sided p: the chance, with the margins fixed, of a table at least this lopsided."""
    k, n, k_ref, n_ref = 8, 128, 20, 128
    total, hits = n + n_ref, k + k_ref
    table = lambda a: math.comb(n_ref, a) * math.comb(n, hits - a) / math.comb(total, hits)
    brute = sum(table(a) for a in range(k_ref, min(hits, n_ref) + 1))
    assert stats.rate_below(k, n, k_ref, n_ref) == pytest.approx(brute, rel=1e-9)
    assert stats.rate_below(20, 128, 20, 128) > 0.5
    with pytest.raises(ValueError, match="between 0 and its total"):
        stats.rate_below(130, 128, 20, 128)


def test_a_seed_only_one_side_has_stays_out_of_the_paired_test():
    """The baseline trained with two seeds, the other model with one: the test pairs seed 0 with seed 0
    (the baseline's second seed has no partner), while each accuracy pools all its own seeds."""
    rng = np.random.default_rng(3)
    base0, base1 = rng.random(400) < 0.3, rng.random(400) < 0.9
    other = base0.copy()
    other[np.flatnonzero(~base0)[:30]] = True  # 30 more images than seed 0 of the baseline, none fewer
    table = stats.against_baseline({"relu": [base0, base1], "kaf": [other]}, "relu")
    expected = stats.paired(other, base0)
    assert table.loc["kaf", "diff"] == pytest.approx(expected.diff) and table.loc["kaf", "p"] == pytest.approx(expected.p_value)
    assert table.loc["relu", "acc"] == pytest.approx(np.concatenate([base0, base1]).mean())
    assert table.loc["relu", "n"] == 800 and table.loc["kaf", "n"] == 400


def test_an_accuracy_known_as_a_fraction_gets_the_interval_of_its_count():
    assert stats.wilson_accuracy(0.08, 100) == stats.wilson_count(8, 100)
    assert stats.wilson_accuracy(1 / 3, 300) == stats.wilson_count(100, 300)  # rounds, not truncates
