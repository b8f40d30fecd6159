"""Looking inside models: activation taps, per-layer perturbation effect, weight and gradient norms."""

from __future__ import annotations

import os
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from . import activations, records


def activation_layers(model: keras.Model) -> list:
    return [l for l in model.layers if activations.is_activation(l)]


def activation_inputs(model: keras.Model, x, batch_size: int = 250) -> dict[str, np.ndarray]:
    """The input of every activation layer for a batch (pre-activations), keyed by layer name."""
    layers = activation_layers(model)
    tap = keras.Model(model.input, [l.input for l in layers])
    outs = [tap(x[i:i + batch_size], training=False) for i in range(0, len(x), batch_size)]
    return {l.name: np.concatenate([np.asarray(o[j]) for o in outs]) for j, l in enumerate(layers)}


def perturbation_effect(model: keras.Model, x_clean, x_adv) -> pd.DataFrame:
    """Per activation layer: mean over examples of ||a(x_adv) - a(x)||_2, raw and relative to ||a(x)||_2."""
    clean = activation_inputs(model, x_clean)
    adv = activation_inputs(model, x_adv)
    rows = []
    for name in clean:
        c = clean[name].reshape(len(x_clean), -1)
        d = adv[name].reshape(len(x_adv), -1) - c
        diff = np.linalg.norm(d, axis=1)
        rows.append({"layer": name, "l2_change": float(diff.mean()),
                     "relative_change": float((diff / (np.linalg.norm(c, axis=1) + 1e-12)).mean())})
    return pd.DataFrame(rows)


def norm_trace(model: keras.Model, cifar, steps: int = 20, lr: float = 0.1, batch_size: int = 128,
               optimizer: str = "sgd", momentum: float = 0.0, clipnorm: float | None = None, seed: int = 0,
               tensorboard_dir: str | None = None) -> pd.DataFrame:
    """Standard training for ``steps`` updates, recording every kernel's weight and gradient norm.

    SGD defaults to the thesis' (no momentum). One row per (step, layer): loss, weight_norm,
    grad_norm, and ``finite`` (False marks NaN/Inf). Training keeps going after a NaN so the table
    shows how it spreads. With ``tensorboard_dir`` the same norms are also written as TensorBoard
    scalars (``grad_norm/LAYER``, ``weight_norm/LAYER``).
    """
    from . import data
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    opt = (keras.optimizers.SGD(lr, momentum=momentum, clipnorm=clipnorm) if optimizer == "sgd"
           else keras.optimizers.Adam(lr, clipnorm=clipnorm))
    kernels = [(l.name, v) for l in model.layers for v in l.trainable_variables
               if v.path.endswith("kernel")]
    order = {id(v): i for i, v in enumerate(model.trainable_variables)}
    index = [order[id(v)] for _, v in kernels]

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = ce(y, model(x, training=True)) + tf.add_n(model.losses or [0.0])
        grads = tape.gradient(loss, model.trainable_variables)
        gnorms = tf.stack([tf.norm(grads[i]) for i in index])
        opt.apply(grads, model.trainable_variables)
        return loss, gnorms

    rows, epoch, done = [], 0, 0
    while done < steps:
        for x, y in data.train_batches(cifar.x_train, cifar.y_train, batch_size, epoch, seed):
            wn = [float(tf.norm(v)) for _, v in kernels]
            loss, gn = step(x, y)
            for j, (name, _) in enumerate(kernels):
                g = float(gn[j])
                rows.append({"step": done + 1, "layer": name, "depth": j + 1, "loss": float(loss),
                             "weight_norm": wn[j], "grad_norm": g, "finite": bool(np.isfinite(g))})
            done += 1
            if done >= steps:
                break
        epoch += 1
    trace = pd.DataFrame(rows)
    if tensorboard_dir:
        write_tensorboard(trace, tensorboard_dir)
    return trace


def resnet_norm_trace(depth: int, activation: str, cifar, steps: int, lr: float = 0.1, batch_size: int = 128,
                      clipnorm: float | None = None, variant: str = "thesis", seed: int = 0,
                      runs: str | os.PathLike | None = None, **act_options) -> pd.DataFrame:
    """``norm_trace`` of a fresh ResNet``depth`` (plain SGD at ``lr``), stored as a record in ``runs``
    and read back when asked again, so a rebuilt chapter 4 does not train (the published edition)."""
    from . import models, settings
    spec = {"norm_trace": {"arch": f"resnet{depth}", "activation": activation, "variant": variant,
                           "act_options": act_options, "steps": steps, "lr": lr, "batch_size": batch_size,
                           "optimizer": "sgd", "momentum": 0.0, "clipnorm": clipnorm, "seed": seed,
                           "dtype": keras.config.floatx()},
            "data": {"n_train": len(cifar.x_train), "checksum": cifar.checksum}}
    path = Path(runs or records.runs_dir()) / f"normtrace-resnet{depth}-{activation}-{records.config_key(spec)}.json"

    def compute():
        settings.setup(seed)  # every trace starts from the same seed
        model = models.resnet(depth, activation, variant=variant, **act_options)
        trace = norm_trace(model, cifar, steps=steps, lr=lr, batch_size=batch_size, clipnorm=clipnorm, seed=seed)
        return {**spec, "trace": _trace_columns(trace)}

    return _trace_frame(records.reuse_or_record(path, compute)["trace"])


def _trace_columns(trace: pd.DataFrame) -> dict:
    """A trace as per-step lists (one value per layer), several times smaller than its rows in JSON."""
    layers = list(trace[trace["step"] == 1].sort_values("depth")["layer"])
    by_step = trace.sort_values(["step", "depth"]).groupby("step")
    return {"layers": layers, "loss": [float(v) for v in by_step["loss"].first()],
            "weight_norm": [[float(v) for v in g["weight_norm"]] for _, g in by_step],
            "grad_norm": [[float(v) for v in g["grad_norm"]] for _, g in by_step]}


def _trace_frame(columns: dict) -> pd.DataFrame:
    """``norm_trace``'s rows back from ``_trace_columns``."""
    rows = [{"step": step, "layer": layer, "depth": depth, "loss": loss, "weight_norm": w, "grad_norm": g,
             "finite": bool(np.isfinite(g))}
            for step, (loss, ws, gs) in enumerate(zip(columns["loss"], columns["weight_norm"], columns["grad_norm"]), 1)
            for depth, (layer, w, g) in enumerate(zip(columns["layers"], ws, gs), 1)]
    return pd.DataFrame(rows)


def write_tensorboard(trace: pd.DataFrame, logdir: str):
    writer = tf.summary.create_file_writer(str(logdir))
    with writer.as_default():
        for row in trace.itertuples():
            tf.summary.scalar(f"grad_norm/{row.layer}", row.grad_norm, step=row.step)
            tf.summary.scalar(f"weight_norm/{row.layer}", row.weight_norm, step=row.step)
        for step, loss in trace.groupby("step")["loss"].first().items():
            tf.summary.scalar("loss", loss, step=int(step))
    writer.flush()


def first_nonfinite(trace: pd.DataFrame) -> dict | None:
    """The first step with a non-finite gradient and the deepest layer affected at that step."""
    bad = trace[~trace["finite"]]
    if bad.empty:
        return None
    step = int(bad["step"].min())
    at = bad[bad["step"] == step]
    return {"step": step, "layers": int(len(at)), "deepest_layer": str(at.sort_values("depth")["layer"].iloc[-1]),
            "shallowest_layer": str(at.sort_values("depth")["layer"].iloc[0])}


def kaf_shapes(model: keras.Model, x=None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each KAF layer's current per-channel functions: name -> (x, f of shape (C, len(x)))."""
    return {l.name: l.shapes(x) for l in model.layers if isinstance(l, activations.KAF)}
