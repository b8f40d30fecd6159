"""Project each chapter's run time at a profile (default ``cpu``) from pieces measured on this machine.

A chapter at the ``cpu`` profile takes tens of minutes, so instead of running each one this script
measures, in one process:
- a training step (standard or FGSM-RS, at the profile's batch size) and its first call, which is
  mostly tf.function tracing, for every architecture and activation family a chapter trains;
- a native PGD step on a batch of 256 images, and its first call, per model;
- ART's APGD per step on 256 images (ResNet20).
It then counts what each chapter does at the profile and prints the projected minutes per chapter.
Activations that cost the same are measured once: ReLU stands for ELU and Swish, KAF for its
ridge-initialised variants. Usage:

    python benchmarks/profile_times.py [--profile cpu] [--steps 5]
"""

import argparse
import math
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

FAMILY = {"relu": "relu", "elu": "relu", "swish": "relu", "kaf": "kaf", "kaf_relu": "kaf", "kaf_elu": "kaf",
          "kaf_swish": "kaf", "kaf_free": "kaf_free", "kwta": "kwta"}
CH3 = ["relu", "elu", "kaf", "kaf_elu", "swish", "kaf_swish", "kaf_free"]
CH5 = ["relu", "elu", "kaf", "kaf_relu", "kaf_elu", "swish", "kaf_swish", "kaf_free"]


def timed(fn, repeat):
    """(seconds of the first call, median seconds of the next ``repeat`` calls)."""
    import numpy as np
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return first, float(np.median(times))


def measure(arch, act, method, batch, repeat):
    import numpy as np
    import tensorflow as tf
    from kafnotes import attacks, settings, training
    settings.setup(0)
    config = training.TrainConfig(arch=arch, activation=act, method=method, batch_size=batch)
    model, optimizer = training.build(config)
    step = training.make_train_step(model, optimizer, config, tf.random.Generator.from_seed(0))
    rng = np.random.default_rng(0)
    x = tf.constant(rng.random((batch, 32, 32, 3), dtype=np.float32))
    y = tf.constant(rng.integers(0, 10, batch).astype(np.int32))
    train_first, train_step = timed(lambda: float(step(x, y)[0]), repeat)
    xa = rng.random((256, 32, 32, 3), dtype=np.float32)
    ya = rng.integers(0, 10, 256).astype(np.int32)
    pgd_first, pgd_5 = timed(lambda: attacks.pgd(model, xa, ya, steps=5, restarts=1), 1)
    return {"train_trace": train_first - train_step, "train_step": train_step,
            "pgd_trace": pgd_first - pgd_5, "pgd_step": pgd_5 / 5, "model": model}


def measure_apgd(model, repeat_steps=4):
    import numpy as np
    from kafnotes import art_attacks
    rng = np.random.default_rng(0)
    x = rng.random((256, 32, 32, 3), dtype=np.float32)
    y = rng.integers(0, 10, 256)
    t0 = time.perf_counter()
    art_attacks.autoattack(model, x, y, steps=repeat_steps)
    return (time.perf_counter() - t0) / (2 * repeat_steps)  # CE and DLR: seconds per step per 256 images


def project(P, m, apgd_step):
    spe = math.ceil(P["n_train"] / P["batch_size"])
    eval_batches = math.ceil(P["n_eval"] / 256)
    k = P["pgd_steps"]

    def train(arch, act, method, epochs, guard=False):
        t = m[(arch, FAMILY[act], method)]
        s = t["train_trace"] + epochs * spe * t["train_step"]
        if guard:  # the catastrophic-overfitting guard: PGD-5 on one batch each epoch
            s += epochs * 5 * t["pgd_step"] * P["batch_size"] / 256
        return s

    def pgd(arch, act, steps, batches=eval_batches, trace=True):
        t = m[(arch, FAMILY[act], "standard")]
        return (t["pgd_trace"] if trace else 0) + steps * batches * t["pgd_step"]

    ch = {}
    ch["02"] = sum(train("light_cnn", a, "standard", P["epochs"]) + pgd("light_cnn", a, max(k, 15))
                   + pgd("light_cnn", a, max(k, 15), batches=1, trace=False) for a in ("relu", "kwta", "kaf"))
    ch["03"] = sum(m[("vgg_like", FAMILY[a], "fgsm_rs")]["train_trace"]
                   + P["lr_finder_steps"] * m[("vgg_like", FAMILY[a], "fgsm_rs")]["train_step"]
                   + train("vgg_like", a, "fgsm_rs", P["adv_epochs"], guard=True) + pgd("vgg_like", a, k)
                   for a in CH3)
    traces = [(d, "relu") for d in (20, 56)] + [(d, "kaf") for d in (20, 56)] + [(56, "kaf")] * 4
    clean_runs = [(20, "relu"), (20, "kaf"), (56, "relu"), (56, "kaf"), (56, "kaf")]
    ch["04"] = (sum(m[(f"resnet{d}", a, "standard")]["train_trace"]
                    + P["norm_steps"] * m[(f"resnet{d}", a, "standard")]["train_step"] for d, a in traces)
                + sum(train(f"resnet{d}", a, "standard", P["clean_epochs"]) for d, a in clean_runs))
    ch["05"] = sum(train("resnet20", a, "fgsm_rs", P["adv_epochs"], guard=True) + pgd("resnet20", a, k)
                   for a in CH5)
    sanity = k + max(1, k // 4) + 2 * k + k + max(k, 20)
    curve = sum([1, 2, 5, 10, 20])
    ch["06"] = (sum(2 * pgd("resnet20", a, k) + pgd("resnet20", a, sanity, trace=False)
                    + 2 * 2 * k * eval_batches * apgd_step for a in CH5)
                + sum(pgd("light_cnn", a, k + curve) for a in ("kwta", "relu")))
    return ch


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--steps", type=int, default=5, help="timed calls per training step measurement")
    args = parser.parse_args()
    from kafnotes import settings
    from kafnotes.profiles import get_profile
    settings.quiet_tensorflow()
    P = get_profile(args.profile)
    if P["n_train"] is None:
        raise SystemExit("this projection needs a profile with n_train and n_eval set (smoke or cpu); for "
                         "full, use --profile cpu and scale by the number of images")
    wanted = sorted({("light_cnn", a, "standard") for a in ("relu", "kwta", "kaf")}
                    | {("vgg_like", FAMILY[a], meth) for a in CH3 for meth in ("fgsm_rs", "standard")}
                    | {("resnet20", FAMILY[a], meth) for a in CH5 for meth in ("fgsm_rs", "standard")}
                    | {("resnet56", a, "standard") for a in ("relu", "kaf")})
    m = {}
    t_all = time.perf_counter()
    for arch, act, method in wanted:
        m[(arch, act, method)] = measure(arch, act, method, P["batch_size"], args.steps)
        t = m[(arch, act, method)]
        print(f"{arch:10} {act:9} {method:9} train step {t['train_step']:.3f}s (first call +{t['train_trace']:.1f}s)"
              f"  PGD step/256 img {t['pgd_step']:.3f}s (first call +{t['pgd_trace']:.1f}s)", flush=True)
    apgd_step = measure_apgd(m[("resnet20", "relu", "standard")]["model"])
    print(f"ART APGD, ResNet20 ReLU: {apgd_step:.3f}s per step per 256 images")
    print(f"(measurements took {time.perf_counter() - t_all:.0f} s)")
    print(f"\nprojected chapter times at profile {args.profile!r} ({P['n_train']} train images, batch "
          f"{P['batch_size']}, {P['adv_epochs']} adversarial epochs, PGD-{P['pgd_steps']} on {P['n_eval']}):")
    for name, seconds in project(P, m, apgd_step).items():
        print(f"  chapter {name}: {seconds / 60:5.1f} min")
    print("  chapter 07: measure it directly (kafnotes run 07 --profile cpu); it trains nothing")


if __name__ == "__main__":
    main()
