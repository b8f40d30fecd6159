"""Training: FGSM with a random start ("fast is better than free"), N-FGSM, and standard training.

``train(config, cifar)`` trains (or reuses) one model, checkpoints every epoch, resumes an interrupted
run, stops with a clear error on a non-finite loss or gradient, and writes a JSON run record.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from . import activations, attacks, data, models, records, settings
from .schedules import OneCycle

METHODS = ("fgsm_rs", "n_fgsm", "standard")
ADVERSARIAL = ("fgsm_rs", "n_fgsm")


class DivergenceError(RuntimeError):
    """Training produced a non-finite loss or gradient; ``info`` says where."""

    def __init__(self, info: dict):
        self.info = info
        super().__init__(
            f"non-finite {info['what']} at epoch {info['epoch']}, step {info['step']} (global step "
            f"{info['global_step']}); in backprop order the first layer with a non-finite gradient is "
            f"{info['layer']!r} ({info['nonfinite_variables']} of {info['variables']} variables affected). "
            f"Lower the learning rate, clip gradients (clipnorm=...), or pass on_nonfinite='record'.")


@dataclass
class TrainConfig:
    arch: str = "resnet20"
    activation: str = "relu"
    method: str = "fgsm_rs"          # "fgsm_rs" or "n_fgsm" (adversarial), or "standard"
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "sgd"           # "sgd" or "adam"
    schedule: str = "one_cycle"      # "one_cycle" (lr_min -> lr -> lr_min) or "constant" (lr)
    lr: float = 0.1                  # peak (one_cycle) or constant learning rate
    lr_min: float = 0.0
    extra_epochs: int = 0            # after the cycle, at lr_min / 10 halved every 4 epochs
    # The thesis' SGD had no momentum (Keras' default): all 13 published models store SGD with
    # momentum 0.0. At its lr peak of 0.8, momentum 0.9 would make the effective step 10x larger.
    momentum: float = 0.0
    weight_decay: float = 0.0        # decoupled; the architectures carry their own L2 terms
    clipnorm: float | None = None
    eps: float = 8 / 255
    fgsm_alpha: float | None = None  # default 1.25 * eps (fgsm_rs) or eps (n_fgsm)
    augment: bool = False
    co_guard: bool = False           # catastrophic-overfitting early stop (PGD-5 on a train batch)
    kwta_anneal: tuple | None = None  # (start, end, decrement, every_epochs), e.g. (0.3, 0.15, 0.01, 2)
    mixed_precision: bool = False
    # float32, or float64 (the smoke profile's, set there through keras.config.set_floatx): the
    # default is Keras' floatx when the config is made. Ignored under mixed_precision.
    dtype: str = field(default_factory=keras.config.floatx)
    on_nonfinite: str = "raise"      # "raise" or "record" (stop, keep the last good epoch, flag it)
    seed: int = 0
    act_options: dict = field(default_factory=dict)
    arch_options: dict = field(default_factory=dict)
    eval_images: int = 500           # test images for the per-epoch clean accuracy

    def validate(self):
        if self.arch not in models.ARCHITECTURES:
            raise ValueError(f"unknown arch {self.arch!r}; valid: {', '.join(models.ARCHITECTURES)}")
        activations.get(self.activation)  # raises with the list of valid names
        checks = [
            (self.method in METHODS, f"method must be one of {METHODS} (got {self.method!r})"),
            (self.optimizer in ("sgd", "adam"), f"optimizer must be 'sgd' or 'adam' (got {self.optimizer!r})"),
            (self.schedule in ("one_cycle", "constant"),
             f"schedule must be 'one_cycle' or 'constant' (got {self.schedule!r})"),
            (self.epochs >= 1 and self.extra_epochs >= 0, f"epochs must be >= 1 (got {self.epochs})"),
            (self.batch_size >= 1, f"batch_size must be >= 1 (got {self.batch_size})"),
            (self.lr > 0 and 0 <= self.lr_min <= self.lr,
             f"need 0 <= lr_min <= lr and lr > 0 (got lr_min={self.lr_min}, lr={self.lr})"),
            (0 <= self.eps <= 1, f"eps must lie in [0, 1] (got {self.eps}); e.g. 8/255"),
            (self.dtype in ("float32", "float64"), f"dtype must be 'float32' or 'float64' (got {self.dtype!r})"),
            (self.on_nonfinite in ("raise", "record"),
             f"on_nonfinite must be 'raise' or 'record' (got {self.on_nonfinite!r})"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        return self

    @property
    def step_size(self) -> float:
        if self.fgsm_alpha is not None:
            return self.fgsm_alpha
        return self.eps if self.method == "n_fgsm" else 1.25 * self.eps

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self), default=list))


@dataclass
class Run:
    model: keras.Model
    record: dict
    path: Path
    reused: bool = False

    @property
    def history(self) -> list[dict]:
        return self.record["history"]

    @property
    def test_images(self) -> int:
        """How many test images each epoch's ``test_acc`` was measured on."""
        return min(self.record["config"]["eval_images"], self.record["data"]["n_test"])

    @property
    def epoch_seconds(self) -> float:
        """Mean wall time of a training epoch, less the time the process was stopped while training
        (``paused_seconds``, recorded when another job needed the cores alone)."""
        times = self.record["seconds_per_epoch"]
        return (sum(times) - self.record.get("paused_seconds", 0)) / max(len(times), 1)

    @property
    def guard_images(self) -> int:
        """How many training images each epoch's ``guard_pgd5`` was measured on (one batch)."""
        return self.record["config"]["batch_size"]


# -- the loop ------------------------------------------------------------------------------------

def make_train_step(model, optimizer, config: TrainConfig, noise: tf.random.Generator):
    """The compiled per-batch update. Both FGSM methods draw fresh uniform noise every call.

    FGSM-RS (Wong et al. 2020): noise in [-eps, eps], a step of 1.25 eps, projected back to the eps-ball.
    N-FGSM (de Jorge et al. 2022): noise in [-2 eps, 2 eps], a step of eps, and no projection, so the
    perturbation can reach 3 eps; the larger noise is what keeps it from catastrophic overfitting.
    """
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True, dtype="float32")
    scaled = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)

    @tf.function
    def step(x, y):
        if config.method in ADVERSARIAL:
            x = fgsm_examples(model, x, y, config, noise, ce)
        with tf.GradientTape() as tape:
            logits = tf.cast(model(x, training=True), tf.float32)
            loss = ce(y, logits) + tf.add_n([tf.cast(l, tf.float32) for l in model.losses] or [0.0])
            objective = optimizer.scale_loss(loss) if scaled else loss
        grads = tape.gradient(objective, model.trainable_variables)
        finite = tf.stack([tf.reduce_all(tf.math.is_finite(g)) for g in grads])
        optimizer.apply(grads, model.trainable_variables)
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), y), tf.float32))
        return loss, correct, tf.math.is_finite(loss), finite

    return step


def fgsm_examples(model, x, y, config: TrainConfig, noise: tf.random.Generator, ce):
    """The training inputs of one FGSM-RS or N-FGSM step (see ``make_train_step``)."""
    eps = config.eps
    radius = 2 * eps if config.method == "n_fgsm" else eps
    delta = noise.uniform(tf.shape(x), -radius, radius)
    delta = tf.clip_by_value(x + delta, 0.0, 1.0) - x
    with tf.GradientTape() as tape:
        tape.watch(delta)
        loss = ce(y, tf.cast(model(x + delta, training=True), tf.float32))
    delta = delta + config.step_size * tf.sign(tape.gradient(loss, delta))
    if config.method == "fgsm_rs":
        delta = tf.clip_by_value(delta, -eps, eps)
    return tf.stop_gradient(tf.clip_by_value(x + delta, 0.0, 1.0))


def train(config: TrainConfig, cifar: data.Cifar10, runs: str | os.PathLike | None = None,
          force: bool = False, verbose: bool = True, stop_after: int | None = None) -> Run:
    """Train ``config`` on ``cifar`` (or reuse a finished identical run) and return the model and record.

    ``stop_after`` ends the process-level loop after that many epochs, as an interruption would
    (used to test resume); the run stays unfinished and a later call continues it.
    """
    config.validate()
    ident = {"config": config.to_dict(), "data": {"n_train": len(cifar.x_train), "n_test": len(cifar.x_test),
                                                  "checksum": cifar.checksum}}
    key = records.config_key(ident)
    ident["data"]["source"] = cifar.source  # a label, not part of the key: the checksum names the data
    path = Path(runs or records.runs_dir()) / f"{config.arch}-{config.activation}-{config.method}-{key}"
    with records.exclusive(path.with_name(path.name + ".lock")):  # another process may be training it
        return _train(config, cifar, path, key, ident, force, verbose, stop_after)


def _train(config, cifar, path, key, ident, force, verbose, stop_after) -> Run:
    weights, record_path, ckpt = path / "model.weights.h5", path / "record.json", path / "checkpoint.npz"
    settings.setup(config.seed)
    model, optimizer = build(config, steps_per_epoch=-(-len(cifar.x_train) // config.batch_size))
    if not force and record_path.exists() and weights.exists():
        record = records.read_json(record_path)
        if record.get("status") == "finished":
            model.load_weights(weights)
            return Run(model, record, path, reused=True)
    if force:
        shutil.rmtree(path, ignore_errors=True)
    records.forbid_computing(path)

    record = {"status": "running", "key": key, **ident, "environment": records.environment(),
              "history": [], "flags": {"diverged": False, "early_stopped_epoch": None}}
    start_epoch = 0
    if ckpt.exists():
        start_epoch, record = _restore(ckpt, model, optimizer)
        if verbose:
            print(f"resuming {path.name} after epoch {start_epoch}")

    noise = tf.random.Generator.from_seed(config.seed)
    step = make_train_step(model, optimizer, config, noise)
    names = _variable_layers(model)
    n_eval = min(config.eval_images, len(cifar.x_test))
    guard_x, guard_y = cifar.x_train[:config.batch_size], cifar.y_train[:config.batch_size]
    total_epochs = config.epochs + config.extra_epochs
    previous = _snapshot(model)
    for epoch in range(start_epoch, total_epochs):
        if stop_after is not None and epoch - start_epoch >= stop_after:
            return Run(model, record, path)
        noise.reset_from_seed(config.seed * 100003 + epoch)  # fresh each epoch, reproducible on resume
        _anneal_kwta(model, config, epoch)
        t0, loss_sum, correct, seen = time.perf_counter(), 0.0, 0.0, 0
        for i, (x, y) in enumerate(data.train_batches(cifar.x_train, cifar.y_train, config.batch_size,
                                                      epoch, config.seed, config.augment)):
            loss, hits, loss_ok, grads_ok = step(x, y)
            if not (bool(loss_ok) and bool(tf.reduce_all(grads_ok))):
                info = _divergence(epoch + 1, i + 1, int(optimizer.iterations.numpy()), bool(loss_ok),
                                   grads_ok.numpy(), names)
                if config.on_nonfinite == "raise":
                    raise DivergenceError(info)
                _load_snapshot(model, previous)
                record["flags"].update(diverged=True, divergence=info)
                return _finish(model, record, cifar, path, config, verbose)
            loss_sum += float(loss) * len(y)
            correct += float(hits)
            seen += len(y)
        seconds = time.perf_counter() - t0
        row = {"epoch": epoch + 1, "loss": loss_sum / seen, "train_acc": correct / seen,
               "test_acc": attacks.clean_accuracy(model, cifar.x_test[:n_eval], cifar.y_test[:n_eval]),
               "lr": float(_current_lr(optimizer)), "seconds": seconds, "kaf_shape": _kaf_snapshot(model)}
        if config.co_guard and config.method in ADVERSARIAL:
            row["guard_pgd5"] = attacks.robust_accuracy(model, guard_x, guard_y, eps=config.eps,
                                                        alpha=config.eps / 4, steps=5, restarts=1)
            best = max([r.get("guard_pgd5", 0.0) for r in record["history"]] or [0.0])
            if record["history"] and row["guard_pgd5"] < best - 0.2:
                _load_snapshot(model, previous)
                record["flags"]["early_stopped_epoch"] = epoch  # the last good epoch
                record["history"].append(row)
                if verbose:
                    print(f"catastrophic overfitting at epoch {epoch + 1} (PGD-5 {row['guard_pgd5']:.1%}): "
                          f"keeping epoch {epoch}")
                break
        record["history"].append(row)
        if verbose:
            _print_epoch(row, total_epochs, config.method)
        previous = _snapshot(model)
        _checkpoint(ckpt, model, optimizer, epoch + 1, record)
    return _finish(model, record, cifar, path, config, verbose)


def _finish(model, record, cifar, path, config, verbose):
    record["final"] = {"clean_acc": attacks.clean_accuracy(model, cifar.x_test, cifar.y_test),
                       "n_test": len(cifar.x_test)}
    record["seconds_per_epoch"] = [r["seconds"] for r in record["history"]]
    record["status"] = "finished"
    path.mkdir(parents=True, exist_ok=True)
    tmp = path / "model.tmp.weights.h5"
    model.save_weights(tmp)
    os.replace(tmp, path / "model.weights.h5")
    records.write_json(path / "record.json", record)
    (path / "checkpoint.npz").unlink(missing_ok=True)
    if verbose:
        print(f"clean accuracy {record['final']['clean_acc']:.1%} on {len(cifar.x_test)} test images")
    return Run(model, record, path)


def build(config: TrainConfig, steps_per_epoch: int = 1):
    """The model and optimizer a run starts from (seeded by the caller)."""
    with models.precision("mixed_float16" if config.mixed_precision else config.dtype):
        model = models.build(config.arch, config.activation, **config.act_options, **config.arch_options)
    if config.schedule == "one_cycle":
        lr = OneCycle(config.lr_min, config.lr, config.epochs * steps_per_epoch,
                      halve_every=4 * steps_per_epoch)
    else:
        lr = config.lr
    opts = dict(learning_rate=lr, weight_decay=config.weight_decay or None, clipnorm=config.clipnorm)
    optimizer = (keras.optimizers.SGD(momentum=config.momentum, **opts) if config.optimizer == "sgd"
                 else keras.optimizers.Adam(**opts))
    if config.mixed_precision:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    optimizer.build(model.trainable_variables)
    return model, optimizer


def _kaf_snapshot(model, channels: int = 4, points: int = 25):
    """The first KAF layer's first channels on a coarse grid: how its shape evolves, epoch by epoch."""
    layer = next((l for l in model.layers if isinstance(l, activations.KAF)), None)
    if layer is None:
        return None
    x, f = layer.shapes(np.linspace(-layer.boundary - 1, layer.boundary + 1, points))
    return {"layer": layer.name, "x": np.round(x, 3).tolist(), "f": np.round(f[:channels], 4).tolist()}


def _current_lr(optimizer):
    lr = optimizer.learning_rate
    return lr.numpy() if hasattr(lr, "numpy") else lr


def _anneal_kwta(model, config, epoch):
    if not config.kwta_anneal:
        return
    start, end, dec, every = config.kwta_anneal
    ratio = max(end, start - dec * (epoch // every))
    for layer in model.layers:
        if isinstance(layer, activations.KWinnersTakeAll):
            layer.set_ratio(ratio)


def _variable_layers(model):
    owner = {}
    for layer in model.layers:
        for v in layer.trainable_variables:
            owner.setdefault(id(v), layer.name)
    return [owner.get(id(v), v.path) for v in model.trainable_variables]


def _divergence(epoch, step, global_step, loss_ok, grads_ok, names):
    bad = [i for i, ok in enumerate(grads_ok) if not ok]
    return {"what": "gradient" if loss_ok else "loss", "epoch": epoch, "step": step,
            "global_step": global_step, "layer": names[bad[-1]] if bad else None,
            "first_layer_forward_order": names[bad[0]] if bad else None,
            "nonfinite_variables": len(bad), "variables": len(names)}


def _snapshot(model):
    return [v.numpy().copy() for v in model.variables]


def _load_snapshot(model, values):
    for v, value in zip(model.variables, values):
        v.assign(value)


def _checkpoint(path: Path, model, optimizer, epoch: int, record: dict):
    """Everything a resume needs, in one file written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"m{i}": v.numpy() for i, v in enumerate(model.variables)}
    arrays.update({f"o{i}": v.numpy() for i, v in enumerate(optimizer.variables)})
    buf = io.BytesIO()
    np.savez(buf, epoch=epoch, record=json.dumps(record, default=records._jsonable), **arrays)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, path)


def _restore(path: Path, model, optimizer):
    with np.load(path) as f:
        for i, v in enumerate(model.variables):
            v.assign(f[f"m{i}"])
        for i, v in enumerate(optimizer.variables):
            v.assign(f[f"o{i}"])
        return int(f["epoch"]), json.loads(str(f["record"]))


def _print_epoch(row, total, method):
    adv = "adv " if method in ADVERSARIAL else ""
    guard = f"  PGD-5 {row['guard_pgd5']:.1%}" if "guard_pgd5" in row else ""
    print(f"epoch {row['epoch']:>3}/{total}  loss {row['loss']:.3f}  {adv}train acc {row['train_acc']:.1%}  "
          f"test acc {row['test_acc']:.1%}  lr {row['lr']:.4g}{guard}  {row['seconds']:.1f}s", flush=True)


# -- standard training for a few steps, with per-layer norms (section 7.2) ---------------------------

def _endless_batches(cifar: data.Cifar10, config: TrainConfig):
    epoch = 0
    while True:
        yield from data.train_batches(cifar.x_train, cifar.y_train, config.batch_size, epoch, config.seed,
                                      config.augment)
        epoch += 1


def lr_range_test(config: TrainConfig, cifar: data.Cifar10, steps: int = 100, lr_start: float = 1e-5,
                  lr_end: float = 10.0, runs=None, force: bool = False):
    """The LR range finder: ``steps`` updates of ``config.method`` with an exponentially growing lr.

    Returns an ``LRFinderResult`` (curve, suggested (lr_min, lr_max)); the curve is stored as a record.
    """
    from .schedules import ExponentialRange, LRFinderResult, suggest_range
    config.validate()
    ident = {"lr_finder": config.to_dict(), "steps": steps, "lr_start": lr_start, "lr_end": lr_end,
             "data": {"n_train": len(cifar.x_train), "checksum": cifar.checksum}}
    key = records.config_key(ident)
    ident["data"]["source"] = cifar.source
    path = Path(runs or records.runs_dir()) / f"lrfinder-{config.arch}-{config.activation}-{key}.json"
    if path.exists() and not force:
        rec = records.read_json(path)
    else:
        records.forbid_computing(path)
        t0 = time.perf_counter()
        settings.setup(config.seed)
        sweep = dataclasses.replace(config, schedule="constant")
        model, optimizer = build(sweep, 1)
        sweep_lr = ExponentialRange(lr_start, lr_end, steps)
        optimizer.learning_rate = sweep_lr
        noise = tf.random.Generator.from_seed(config.seed)
        step = make_train_step(model, optimizer, sweep, noise)
        lrs, losses = [], []
        for x, y in _endless_batches(cifar, config):
            lrs.append(float(sweep_lr(optimizer.iterations)))
            loss = float(step(x, y)[0])
            losses.append(loss if np.isfinite(loss) else float("inf"))
            if len(losses) >= steps or losses[-1] > 4 * min(losses) + 1:  # done, or blown up
                break
        rec = {**ident, "lrs": lrs, "losses": losses, "seconds": time.perf_counter() - t0,
               "environment": records.environment()}
        records.write_json(path, rec)
    lr_min, lr_max, smoothed, reliable = suggest_range(rec["lrs"], rec["losses"])
    return LRFinderResult(np.asarray(rec["lrs"]), np.asarray(rec["losses"]), smoothed, lr_min, lr_max, reliable)
