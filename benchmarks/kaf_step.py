"""KAF vs ReLU: time of one FGSM-RS training step (ResNet20, batch 128) and peak memory, as ratios.

Each variant runs in its own subprocess so peak RSS is its own. Usage:
    python benchmarks/kaf_step.py [--steps 8] [--variants relu kaf kaf_exact]
Prints one line per variant and the ratios against ReLU measured in this run.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def measure(variant: str, steps: int, batch: int) -> dict:
    import numpy as np
    import tensorflow as tf
    from kafnotes import training
    act, options = {"kaf_exact": ("kaf", {"mode": "exact"})}.get(variant, (variant, {}))
    config = training.TrainConfig(arch="resnet20", activation=act, act_options=options, batch_size=batch)
    model, optimizer = training.build(config)
    step = training.make_train_step(model, optimizer, config, tf.random.Generator.from_seed(0))
    rng = np.random.default_rng(0)
    x = tf.constant(rng.random((batch, 32, 32, 3), dtype=np.float32))
    y = tf.constant(rng.integers(0, 10, batch).astype(np.int32))
    step(x, y)  # trace and warm up
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        float(step(x, y)[0])
        times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"variant": variant, "step_s": float(np.median(times)), "peak_mb": peak / 1024,
            "warm_peak_mb": base_rss / 1024}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--variants", nargs="+", default=["relu", "kaf", "kaf_exact"])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.steps, args.batch)))
        return
    # Baseline RSS of a process that imports TF and builds nothing, to report the training part alone.
    idle = json.loads(subprocess.check_output([sys.executable, "-c", (
        "import os, json, resource; os.environ['TF_CPP_MIN_LOG_LEVEL']='3'; import kafnotes.training; "
        "print(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))")]))
    results = {}
    for v in args.variants:
        out = subprocess.check_output([sys.executable, __file__, "--child", v, "--steps", str(args.steps),
                                       "--batch", str(args.batch)], text=True)
        results[v] = json.loads(out.strip().splitlines()[-1])
        r = results[v]
        print(f"{v:10s} step {r['step_s']:.3f} s   peak RSS {r['peak_mb']:.0f} MB "
              f"(training part {r['peak_mb'] - idle:.0f} MB)", flush=True)
    base = results.get("relu")
    if base:
        for v, r in results.items():
            if v != "relu":
                print(f"{v:10s} / relu: step time {r['step_s'] / base['step_s']:.2f}x, peak memory "
                      f"{r['peak_mb'] / base['peak_mb']:.2f}x (training part "
                      f"{(r['peak_mb'] - idle) / (base['peak_mb'] - idle):.2f}x)")


if __name__ == "__main__":
    main()
