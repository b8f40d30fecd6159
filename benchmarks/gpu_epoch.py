"""Project the `full` profile's ResNet20 table (chapter 5) onto one GPU from measured epochs.

For each activation: one FGSM-RS training epoch at the full profile's scale (50,000 images, batch
128) and PGD-50 with one restart on a batch of test-sized inputs; then the projection
80 epochs + PGD-50-10 on 10,000 images, summed over the eight activations.

It runs the book's own layers and models (``kafnotes.models``) on **Keras' JAX backend**, with a
JAX step written to match ``training.make_train_step`` (two forward-backward passes and an SGD
update). The GPU machines this was written for have JAX but no TensorFlow, and TensorFlow's GPU
wheel is too large to carry there. So the numbers are a proxy for the book's TensorFlow loop: XLA
compiles the whole step, which TensorFlow's ``tf.function`` does not by default. Inputs are random
(only shapes matter for time). Usage:

    KERAS_BACKEND=jax python benchmarks/gpu_epoch.py [--steps 391] [--out results.json]
        [--precision float32 mixed_float16] [--activations relu kaf ...]
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

ACTIVATIONS = ["relu", "kaf", "elu", "swish", "kaf_relu", "kaf_elu", "kaf_swish", "kaf_free"]
FULL = dict(train=50_000, test=10_000, batch=128, epochs=80, pgd_steps=50, restarts=10)
# MOMENTUM as in training.TrainConfig (the thesis' plain SGD); results/gpu/ was measured with 0.9
EPS, FGSM_ALPHA, PGD_ALPHA, LR, MOMENTUM = 8 / 255, 1.25 * 8 / 255, 2 / 255, 0.1, 0.0


def measure(activation: str, precision: str, steps: int, pgd_batch: int, kaf_mode: str) -> dict:
    import jax
    import jax.numpy as jnp
    from kafnotes import models

    options = {"mode": kaf_mode} if activation.startswith("kaf") else {}
    with models.precision(precision):
        model = models.resnet(20, activation, **options)
    trainable = [v.value for v in model.trainable_variables]
    frozen = [v.value for v in model.non_trainable_variables]
    velocity = [jnp.zeros_like(v) for v in trainable]

    def ce(logits, y):
        logits = logits.astype(jnp.float32)
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))

    def loss_fn(trainable, frozen, x, y, training):
        logits, frozen, losses = model.stateless_call(trainable, frozen, x, training=training,
                                                      return_losses=True)
        return ce(logits, y) + sum(l.astype(jnp.float32) for l in losses), (frozen, logits)

    @jax.jit
    def train_step(trainable, frozen, velocity, x, y, key):
        delta = jax.random.uniform(key, x.shape, minval=-EPS, maxval=EPS)
        delta = jnp.clip(x + delta, 0, 1) - x
        g = jax.grad(lambda d: loss_fn(trainable, frozen, x + d, y, True)[0])(delta)
        x_adv = jnp.clip(x + jnp.clip(delta + FGSM_ALPHA * jnp.sign(g), -EPS, EPS), 0, 1)
        (loss, (frozen, _)), grads = jax.value_and_grad(loss_fn, has_aux=True)(trainable, frozen, x_adv, y, True)
        velocity = [MOMENTUM * v + g for v, g in zip(velocity, grads)]
        trainable = [w - LR * v for w, v in zip(trainable, velocity)]
        return trainable, frozen, velocity, loss

    @jax.jit
    def pgd(trainable, frozen, x, y, key):
        def one(delta, _):
            g = jax.grad(lambda d: loss_fn(trainable, frozen, x + d, y, False)[0])(delta)
            delta = jnp.clip(delta + PGD_ALPHA * jnp.sign(g), -EPS, EPS)
            return jnp.clip(x + delta, 0, 1) - x, None
        delta0 = jnp.clip(x + jax.random.uniform(key, x.shape, minval=-EPS, maxval=EPS), 0, 1) - x
        delta, _ = jax.lax.scan(one, delta0, None, length=FULL["pgd_steps"])
        _, (_, logits) = loss_fn(trainable, frozen, x + delta, y, False)
        return jnp.mean(jnp.argmax(logits, -1) == y)

    key = jax.random.PRNGKey(0)
    batch = FULL["batch"]
    x = jax.random.uniform(key, (batch, 32, 32, 3))
    y = jax.random.randint(key, (batch,), 0, 10)
    t0 = time.perf_counter()
    trainable, frozen, velocity, loss = train_step(trainable, frozen, velocity, x, y, key)
    loss.block_until_ready()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(steps):
        trainable, frozen, velocity, loss = train_step(trainable, frozen, velocity, x, y,
                                                       jax.random.fold_in(key, i))
    loss.block_until_ready()
    step_s = (time.perf_counter() - t0) / steps

    xe = jax.random.uniform(key, (pgd_batch, 32, 32, 3))
    ye = jax.random.randint(key, (pgd_batch,), 0, 10)
    t0 = time.perf_counter()
    pgd(trainable, frozen, xe, ye, key).block_until_ready()
    pgd_compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    pgd(trainable, frozen, xe, ye, jax.random.fold_in(key, 1)).block_until_ready()
    pgd_batch_s = time.perf_counter() - t0

    epoch_s = step_s * -(-FULL["train"] // batch)
    pgd_full_s = pgd_batch_s * FULL["restarts"] * -(-FULL["test"] // pgd_batch)
    return {"activation": activation, "precision": precision, "kaf_mode": kaf_mode if "kaf" in activation else "",
            "step_ms": 1e3 * step_s, "epoch_s": epoch_s, "compile_s": compile_s, "loss_finite": bool(jnp.isfinite(loss)),
            "pgd_batch": pgd_batch, "pgd50_batch_s": pgd_batch_s, "pgd_compile_s": pgd_compile_s,
            "projected_train_min": FULL["epochs"] * epoch_s / 60, "projected_pgd_min": pgd_full_s / 60}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--activations", nargs="+", default=ACTIVATIONS)
    parser.add_argument("--precision", nargs="+", default=["float32"])
    parser.add_argument("--kaf-mode", nargs="+", default=["table"], choices=["table", "exact"])
    parser.add_argument("--steps", type=int, default=-(-FULL["train"] // FULL["batch"]),
                        help="timed training steps (default: one full epoch, 391)")
    parser.add_argument("--pgd-batch", type=int, default=1000)
    parser.add_argument("--out", help="JSON file, rewritten after every measurement")
    args = parser.parse_args(argv)
    import jax
    print(f"JAX {jax.__version__} on {jax.devices()[0].device_kind}", flush=True)
    rows = []
    for precision in args.precision:
        for activation in args.activations:
            modes = args.kaf_mode if activation.startswith("kaf") else ["table"]
            for mode in modes:
                row = measure(activation, precision, args.steps, args.pgd_batch, mode)
                rows.append(row)
                print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}),
                      flush=True)
                if args.out:
                    tmp = args.out + ".tmp"
                    with open(tmp, "w") as f:
                        json.dump({"device": jax.devices()[0].device_kind, "full": FULL, "rows": rows}, f, indent=1)
                    os.replace(tmp, args.out)
    for precision in args.precision:
        chosen = [r for r in rows if r["precision"] == precision and r["kaf_mode"] in ("", args.kaf_mode[0])]
        total = sum(r["projected_train_min"] + r["projected_pgd_min"] for r in chosen)
        relu = next((r for r in chosen if r["activation"] == "relu"), None)
        print(f"{precision}: {len(chosen)} activations x {FULL['epochs']} epochs + PGD-50-10 on "
              f"{FULL['test']} images: {total:.0f} min projected")
        if relu:
            for r in chosen:
                print(f"  {r['activation']:>10s}: step {r['step_ms']:.1f} ms ({r['step_ms'] / relu['step_ms']:.2f}x ReLU)")
    return rows


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
