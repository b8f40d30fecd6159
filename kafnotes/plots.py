"""Figures of the book. Each function takes results (not models to train) and returns a Figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf

from . import activations


def activation_and_derivative(layer, x):
    """f(x) and f'(x) of an activation layer, by autodiff, for inputs of shape (N,) (1 channel)."""
    xt = tf.constant(np.asarray(x, np.float32).reshape(-1, 1))
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = layer(xt)
    return np.asarray(y)[:, 0], np.asarray(tape.gradient(y, xt))[:, 0]


def gallery(names=("sigmoid", "tanh", "relu", "leaky_relu", "elu", "swish"), x=None):
    """Fixed activations and their derivatives side by side (thesis Figs 2.6, 2.7, 5.2)."""
    x = np.linspace(-4, 4, 801) if x is None else x
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    for name in names:
        y, dy = activation_and_derivative(activations.get(name)(), x)
        a.plot(x, y, label=name)
        b.plot(x, dy, label=name)
    a.set(title="activation f(x)", xlabel="x", ylim=(-1.5, 4))
    b.set(title="derivative f'(x)", xlabel="x", ylim=(-0.2, 1.3))
    for ax in (a, b):
        ax.grid(alpha=0.3)
    a.legend(fontsize=8)
    fig.tight_layout()
    return fig


def kaf_channels(kaf_layer, channels=(0, 1, 2, 3), ax=None, title=None, reference=None):
    """A KAF layer's learned per-channel functions (exactly evaluated), optionally with a reference f."""
    fig, ax = _axes(ax)
    x, f = kaf_layer.shapes()
    for c in channels:
        if c < f.shape[0]:
            ax.plot(x, f[c], lw=1.2, label=f"channel {c}")
    if reference is not None:
        ax.plot(x, reference(x), "k--", lw=1, label="reference")
    ax.set(title=title or kaf_layer.name, xlabel="x")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def activation_histograms(clean: dict, adv: dict, model=None, how: str = "first", bins: int = 60,
                          max_layers: int = 6, title: str = ""):
    """Per-layer histograms of activation inputs, clean vs adversarial.

    ``how="first"`` uses the first neuron (first channel at the central position, or unit 0);
    ``how="mean"`` uses each sample's mean over the first channel's positions. The activation's shape is
    drawn on a twin axis so one sees which part of it the inputs hit."""
    names = list(clean)[:max_layers]
    fig, axes = plt.subplots(1, len(names), figsize=(3.1 * len(names), 2.8), squeeze=False)
    layer_of = {l.name: l for l in model.layers} if model is not None else {}
    for ax, name in zip(axes[0], names):
        c, a = _summarise(clean[name], how), _summarise(adv[name], how)
        lo, hi = np.percentile(np.concatenate([c, a]), [0.5, 99.5])
        edges = np.linspace(lo - 1e-6, hi + 1e-6, bins)
        ax.hist(c, edges, alpha=0.55, label="clean", density=True)
        ax.hist(a, edges, alpha=0.55, label="adversarial", density=True)
        ax.set_title(name, fontsize=9)
        if name in layer_of:
            xs = np.linspace(lo, hi, 200)
            layer = layer_of[name]
            if isinstance(layer, activations.KAF):
                ys = layer.shapes(xs)[1][0]
            elif isinstance(layer, activations.KWinnersTakeAll):
                ys = xs  # k-WTA passes kept values unchanged
            else:
                ys = activation_and_derivative(layer, xs)[0]
            twin = ax.twinx()
            twin.plot(xs, ys, "k", lw=1)
            twin.tick_params(labelsize=6)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def _summarise(a: np.ndarray, how: str) -> np.ndarray:
    if a.ndim == 4:
        if how == "first":
            return a[:, a.shape[1] // 2, a.shape[2] // 2, 0]
        return a[..., 0].reshape(len(a), -1).mean(axis=1)
    return a[:, 0] if how == "first" else a.mean(axis=1)


def perturbation_effect(effects: dict, column: str = "relative_change"):
    """One line per model: the per-layer change an attack causes in the activation inputs."""
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    for label, df in effects.items():
        ax.plot(range(1, len(df) + 1), df[column], marker="o", label=label)
    ax.set(xlabel="activation layer (input to output)",
           ylabel="relative L2 change" if column == "relative_change" else "L2 change",
           title="effect of the perturbation per layer")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def learning_curves(runs: dict, key: str = "test_acc", ax=None, n: int | dict | None = None):
    """One accuracy per epoch (``key`` of each history in ``runs``); with ``n`` (the images behind
    each value, or a dict of them by label) its 95% Wilson interval as a band."""
    from . import stats
    fig, ax = _axes(ax)
    for label, history in runs.items():
        epochs, ys = [r["epoch"] for r in history], [r[key] for r in history]
        (line,) = ax.plot(epochs, ys, marker=".", label=label)
        m = n.get(label) if isinstance(n, dict) else n
        if m:
            cis = [stats.wilson_accuracy(v, m) for v in ys]
            ax.fill_between(epochs, [c.low for c in cis], [c.high for c in cis], color=line.get_color(), alpha=0.15)
    ax.set(xlabel="epoch", ylabel=key.replace("_", " "))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def accuracy_robustness(table, clean="clean", robust="robust", label="activation", reference=None, ax=None,
                        title=""):
    """Clean vs robust accuracy, one point per model; ``reference`` (same columns) in grey."""
    fig, ax = _axes(ax)
    if reference is not None:
        ax.scatter(reference[clean], reference[robust], c="0.6", marker="s", label="thesis")
        for _, r in reference.iterrows():
            ax.annotate(r[label], (r[clean], r[robust]), fontsize=6, color="0.5")
    bounds = [f"{c}_{side}" for c in (clean, robust) for side in ("low", "high")]
    if all(b in table for b in bounds):  # 95% intervals (chapter.interval_bounds) as error bars
        xerr = [table[clean] - table[f"{clean}_low"], table[f"{clean}_high"] - table[clean]]
        yerr = [table[robust] - table[f"{robust}_low"], table[f"{robust}_high"] - table[robust]]
        ax.errorbar(table[clean], table[robust], xerr=xerr, yerr=yerr, fmt="o", ms=4, elinewidth=0.8,
                    capsize=2, label="kafnotes (95% intervals)")
    else:
        ax.scatter(table[clean], table[robust], label="kafnotes")
    for _, r in table.iterrows():
        ax.annotate(r[label], (r[clean], r[robust]), fontsize=7)
    ax.set(xlabel="clean accuracy (%)", ylabel="robust accuracy (%)", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def norms(trace, value: str = "grad_norm", layers=None, ax=None, title=""):
    """Per-layer norms over steps (log scale); non-finite values are marked with x at the top."""
    fig, ax = _axes(ax)
    depths = sorted(trace["depth"].unique())
    picks = layers or [depths[0], depths[len(depths) // 2], depths[-1]]
    for d in picks:
        t = trace[trace["depth"] == d]
        ok = t[t["finite"]]
        line = ax.plot(ok["step"], ok[value], marker=".", label=f"layer {d} ({t['layer'].iloc[0]})")[0]
        bad = t[~t["finite"]]
        if len(bad):
            ax.scatter(bad["step"], np.full(len(bad), ax.get_ylim()[1] if len(ok) else 1.0), marker="x",
                       color=line.get_color())
    ax.set_yscale("log")
    ax.set(xlabel="step", ylabel=value.replace("_", " "), title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def lr_finder(result, ax=None, label=None):
    fig, ax = _axes(ax)
    line = ax.plot(result.lrs, result.smoothed, label=label)[0]
    for lr in (result.lr_min, result.lr_max):
        ax.axvline(lr, color=line.get_color(), ls=":", lw=1)
    ax.set_xscale("log")
    ax.set(xlabel="learning rate", ylabel="smoothed loss")
    finite = np.isfinite(result.smoothed)
    if finite.any():
        lo, hi = np.min(result.smoothed[finite]), result.smoothed[finite][0]
        ax.set_ylim(lo - 0.1 * abs(hi - lo) - 0.05, hi + 0.5 * abs(hi - lo) + 0.05)
    ax.grid(alpha=0.3)
    if label:
        ax.legend(fontsize=7)
    return fig


def robustness_curve(xs, accs: dict, xlabel: str, ax=None, title="", n: int | None = None):
    """Robust accuracy against attack strength (steps or eps), one line per model; with ``n`` (the
    number of images behind each accuracy) the 95% Wilson intervals as error bars."""
    from . import stats
    fig, ax = _axes(ax)
    for label, ys in accs.items():
        ys = np.asarray(ys, dtype=float)
        if n:
            cis = [stats.wilson_accuracy(v, n) for v in ys]
            err = [100 * (ys - [c.low for c in cis]), 100 * (np.array([c.high for c in cis]) - ys)]
            ax.errorbar(xs, ys * 100, yerr=err, marker="o", ms=4, elinewidth=0.8, capsize=2, label=label)
        else:
            ax.plot(xs, ys * 100, marker="o", label=label)
    ax.set(xlabel=xlabel, ylabel="robust accuracy (%)", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def _axes(ax):
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        return fig, ax
    return ax.figure, ax
