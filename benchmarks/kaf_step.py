"""Activation cost as ratios to ReLU, measured in one process: FGSM-RS step, PGD and ART per step.

All variants are built in this process and timed alternately, one step each per round in a rotating
order, so a change in the machine's load hits every variant alike; each round gives one paired ratio
to ReLU and the spread of those ratios is printed. Peak memory needs a process per variant
(``--memory``). Usage:
    python benchmarks/kaf_step.py [--rounds 12] [--variants relu elu swish kaf kaf_exact] [--attacks] [--memory]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def make(variant: str, batch: int):
    """The model, its FGSM-RS step and its forward-backward pass (gradient w.r.t. the input)."""
    import tensorflow as tf
    from kafnotes import training
    act, options = {"kaf_exact": ("kaf", {"mode": "exact"})}.get(variant, (variant, {}))
    config = training.TrainConfig(arch="resnet20", activation=act, act_options=options, batch_size=batch)
    model, optimizer = training.build(config)
    step = training.make_train_step(model, optimizer, config, tf.random.Generator.from_seed(0))
    ce = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def forward_backward(x, y):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = ce(y, model(x, training=False))
        return tape.gradient(loss, x)

    return model, step, forward_backward


def batch_of(batch: int):
    import tensorflow as tf
    rng = np.random.default_rng(0)
    return (tf.constant(rng.random((batch, 32, 32, 3), dtype=np.float32)),
            tf.constant(rng.integers(0, 10, batch).astype(np.int32)))


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def spread(values) -> str:
    v = np.asarray(values)
    return f"{np.median(v):.2f}x (IQR {np.percentile(v, 25):.2f}-{np.percentile(v, 75):.2f}, n={len(v)})"


def steps(variants, rounds: int, batch: int):
    x, y = batch_of(batch)
    built = {v: make(v, batch) for v in variants}
    for _, step, fb in built.values():  # trace and warm up
        float(step(x, y)[0]), fb(x, y).numpy()
    times = {v: {"step": [], "fb": []} for v in variants}
    for r in range(rounds):
        order = variants[r % len(variants):] + variants[:r % len(variants)]
        for v in order:
            _, step, fb = built[v]
            times[v]["step"].append(timed(lambda: float(step(x, y)[0])))
            times[v]["fb"].append(timed(lambda: fb(x, y).numpy()))
    print(f"FGSM-RS step of a ResNet20, batch {batch}, {rounds} rounds (median s; paired ratio to relu):")
    for v in variants:
        t = times[v]
        ratio = np.asarray(t["step"]) / np.asarray(times["relu"]["step"])
        fb_ratio = np.asarray(t["fb"]) / np.asarray(times["relu"]["fb"])
        print(f"  {v:10s} step {np.median(t['step']):.3f} s  {spread(ratio)}   "
              f"forward-backward {np.median(t['fb']):.3f} s  {spread(fb_ratio)}")
    return built, times


def attack_costs(built, times, batch: int, iters: int = 10):
    """Native PGD and ART's PGD / APGD per iteration, against one forward-backward pass."""
    from kafnotes import art_attacks, attacks
    x, _ = batch_of(batch)
    xn = x.numpy()
    print(f"Attacks, batch {batch}, {iters} iterations (per-iteration time / one forward-backward pass):")
    for v, (model, _, _) in built.items():
        # the model's own labels: every image starts correct, so APGD (which drops fooled images) and
        # PGD do the same amount of work
        yn = attacks.predict_labels(model, xn)
        fb = float(np.median(times[v]["fb"]))
        attacks.pgd(model, xn, yn, steps=iters)  # trace
        native = np.median([timed(lambda: attacks.pgd(model, xn, yn, steps=iters)) for _ in range(3)]) / iters
        clf = art_attacks.classifier(model)
        art_attacks.pgd(model, xn, yn, steps=2, clf=clf)
        art_pgd = timed(lambda: art_attacks.pgd(model, xn, yn, steps=iters, clf=clf)) / iters
        art_apgd = timed(lambda: art_attacks.autoattack(model, xn, yn, steps=iters, clf=clf)) / (2 * iters)
        print(f"  {v:10s} native PGD {native / fb:.2f}x   ART PGD {art_pgd / fb:.2f}x   "
              f"ART APGD {art_apgd / fb:.2f}x   (forward-backward {fb * 1000:.0f} ms)")


def peak_memory(variant: str, batch: int) -> dict:
    x, y = batch_of(batch)
    _, step, _ = make(variant, batch)
    float(step(x, y)[0])
    for _ in range(3):
        float(step(x, y)[0])
    return {"variant": variant, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def memory(variants, batch: int):
    idle = json.loads(subprocess.check_output([sys.executable, "-c", (
        "import os, json, resource; os.environ['TF_CPP_MIN_LOG_LEVEL']='3'; import kafnotes.training; "
        "print(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))")]))
    peaks = {}
    for v in variants:
        out = subprocess.check_output([sys.executable, __file__, "--child", v, "--batch", str(batch)], text=True)
        peaks[v] = json.loads(out.strip().splitlines()[-1])["peak_mb"]
    print("Peak RSS, one process per variant (training part = peak minus an idle TF process):")
    for v, p in peaks.items():
        print(f"  {v:10s} {p:.0f} MB (training part {p - idle:.0f} MB, "
              f"{(p - idle) / (peaks['relu'] - idle):.2f}x relu)")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--variants", nargs="+", default=["relu", "elu", "swish", "kaf"])
    parser.add_argument("--attacks", action="store_true", help="also time native PGD and ART per iteration")
    parser.add_argument("--memory", action="store_true", help="also measure peak RSS, a process per variant")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    import kafnotes
    kafnotes.setup(0)
    if args.child:
        print(json.dumps(peak_memory(args.child, args.batch)))
        return
    variants = ["relu"] + [v for v in args.variants if v != "relu"]
    built, times = steps(variants, args.rounds, args.batch)
    if args.attacks:
        attack_costs(built, times, args.batch)
    if args.memory:
        memory(variants, args.batch)


if __name__ == "__main__":
    main()
