"""Our ART-based standard AutoAttack against Croce and Hein's reference code, on the same images.

    pip install -e ".[crosscheck]"      # pyautoattack 0.2.0 and a CPU PyTorch (pip install torch==2.13.0 here)
    python benchmarks/autoattack_crosscheck.py --n 200 \
        --book-run results/study/runs/resnet20-elu-fgsm_rs-a8263acdb0c4

For each model (two published thesis models, a ReLU and a KAF one, and one the book trained) it
prints the accuracy after each stage of both ensembles, and whether the final numbers agree within
1.5 points. The reference's `version='standard'` runs FAB-T between APGD-T and Square; ART has no
FAB, so its stage line shows what FAB-T adds. `--quick` shrinks every attack to check the wiring in
a minute (its numbers are not the standard's).

The reference ships a TensorFlow 2 adapter (`pyautoattack.utils_tf2.ModelAdapter`), but it moves
every tensor to CUDA (`torch.from_numpy(...).cuda()`), so it cannot run on a CPU machine; the bridge
below does the same job on the CPU: PyTorch calls the Keras model forward, and TensorFlow's tape
gives the backward pass.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kafnotes import autoattack, data, records, settings, stats, thesis_models, training  # noqa: E402

STANDARD = dict(steps=100, targets=9, square_queries=5000)
QUICK = dict(steps=5, targets=2, square_queries=20)


def torch_bridge(model):
    """A torch.nn.Module (NCHW in, logits out) computing with the Keras model ``model`` (NHWC)."""
    import tensorflow as tf
    import torch

    class KerasFunction(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            x_tf = tf.convert_to_tensor(x.detach().permute(0, 2, 3, 1).contiguous().numpy())
            with tf.GradientTape() as tape:
                tape.watch(x_tf)
                logits = tf.cast(model(x_tf, training=False), tf.float32)
            ctx.tape, ctx.x_tf, ctx.logits = tape, x_tf, logits
            return torch.from_numpy(logits.numpy())

        @staticmethod
        def backward(ctx, grad_logits):
            grad = ctx.tape.gradient(ctx.logits, ctx.x_tf, output_gradients=tf.convert_to_tensor(grad_logits.numpy()))
            return torch.from_numpy(grad.numpy()).permute(0, 3, 1, 2)

    class Bridge(torch.nn.Module):
        def forward(self, x):
            if torch.is_grad_enabled() and x.requires_grad:
                return KerasFunction.apply(x)
            logits = model(tf.convert_to_tensor(x.permute(0, 2, 3, 1).contiguous().numpy()), training=False)
            return torch.from_numpy(tf.cast(logits, tf.float32).numpy())

    return Bridge().eval()


class _StageLog(logging.Handler):
    """Reads the reference's 'robust accuracy after APGD-CE: 41.00%' lines."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.stages = {}

    def emit(self, record):
        m = re.search(r"robust accuracy after ([A-Z-]+): ([\d.]+)%", record.getMessage())
        if m:
            self.stages[m.group(1).lower()] = float(m.group(2)) / 100


def reference(model, x, y, eps, sizes, seed=0, batch_size=100):
    import torch
    from pyautoattack import AutoAttack
    adversary = AutoAttack(torch_bridge(model), norm="Linf", eps=eps, version="standard", device="cpu", seed=seed)
    adversary.apgd.n_iter = adversary.apgd_targeted.n_iter = adversary.fab.n_iter = sizes["steps"]
    adversary.apgd_targeted.n_target_classes = adversary.fab.n_target_classes = sizes["targets"]
    adversary.square.n_queries = sizes["square_queries"]
    log = _StageLog()
    adversary.logger.addHandler(log)
    adversary.logger.setLevel(logging.DEBUG)
    adversary.logger.propagate = False
    x_pt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    try:
        x_adv, _ = adversary.run_standard_evaluation(x_pt, torch.from_numpy(y.astype(np.int64)), batch_size=batch_size)
    finally:  # the reference's logger outlives the adversary: a handler left on it would log the next model too
        adversary.logger.removeHandler(log)
    logits = model(np.ascontiguousarray(x_adv.numpy().transpose(0, 2, 3, 1)), training=False)
    robust = np.argmax(np.asarray(logits), -1) == y
    return {"stages": dict(log.stages), "final": float(robust.mean()), "robust": robust}


def book_model(run_dir: Path):
    record = json.loads((run_dir / "record.json").read_text())
    config = training.TrainConfig(**{k: tuple(v) if k == "kwta_anneal" and v else v
                                     for k, v in record["config"].items()})
    model, _ = training.build(config)
    model.load_weights(run_dir / "model.weights.h5")
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200, help="test images (the first n of the stand-in's test set)")
    parser.add_argument("--published", nargs="*", default=["resnet20_relu_ocrob_lrf", "resnet20_kaf_ocrob_lrfinder"])
    parser.add_argument("--book-run", type=Path, help="a run folder of the book's (record.json, model.weights.h5)")
    parser.add_argument("--data", default="auto")
    parser.add_argument("--quick", action="store_true", help="tiny attacks: checks the wiring, not the standard")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    settings.setup(0)
    sizes = QUICK if args.quick else STANDARD
    cifar = data.load_cifar10(args.data, n_train=100, n_test=None, seed=0)
    x, y = cifar.x_test[:args.n], cifar.y_test[:args.n]
    eps = 8 / 255
    models = {name: (lambda name=name: thesis_models.rebuild(name)[0]) for name in args.published}
    if args.book_run:
        models[f"book: {args.book_run.name}"] = lambda: book_model(args.book_run)
    print(f"{len(x)} images of {cifar.source}; eps 8/255; sizes {sizes}", flush=True)
    results = json.loads(args.out.read_text()) if args.out and args.out.exists() else {}
    bits = lambda mask: "".join("1" if r else "0" for r in mask)
    for name, build in models.items():
        done = results.get(name, {})
        if "reference_final" in done:  # resumed: this model finished in an earlier run
            print(f"\n{name}: already in {args.out}", flush=True)
            continue
        model = build()
        if "ours" in done:  # resumed between the two ensembles: ours finished and was written
            ours = {"accuracy": done["ours"], "robust": np.array([c == "1" for c in done["ours_robust_images"]])}
        else:
            t0 = time.perf_counter()
            ours = autoattack.run(model, x, y, eps=eps, **sizes)
            done = {"n": len(x), "ours": ours["accuracy"], "ours_seconds": time.perf_counter() - t0,
                    "ours_robust_images": bits(ours["robust"])}
            results[name] = done
            if args.out:  # atomically, after each ensemble: an interrupted run keeps what it finished
                records.write_json(args.out, results)
        t1 = time.perf_counter()
        ref = reference(model, x, y, eps, sizes)
        gap = 100 * (ours["accuracy"]["square"] - ref["final"])
        both = int(np.sum(ours["robust"] == ref["robust"]))
        test = stats.paired(ours["robust"], ref["robust"])  # same images: McNemar on the discordant ones
        done.update({"reference": ref["stages"], "reference_final": ref["final"],
                     "reference_seconds": time.perf_counter() - t1, "gap_points": gap,
                     "gap_interval": [100 * test.low, 100 * test.high], "mcnemar_p": test.p_value,
                     "same_verdict_images": both, "reference_robust_images": bits(ref["robust"])})
        print(f"\n{name}\n  ours (ART, no FAB-T): " + ", ".join(f"{k} {100 * v:.1f}" for k, v in ours["accuracy"].items())
              + f"  [{done['ours_seconds']:.0f} s]\n  reference standard:  "
              + ", ".join(f"{k} {100 * v:.1f}" for k, v in ref["stages"].items())
              + f"; final {100 * ref['final']:.1f}  [{done['reference_seconds']:.0f} s]\n  ours - reference: {gap:+.1f} points "
              f"({'within' if abs(gap) <= 1.5 else 'OUTSIDE'} 1.5; 95% interval {stats.format_diff(test)}, McNemar p "
              f"{test.p_value:.2g}); same verdict on {both}/{len(x)} images", flush=True)
        if args.out:
            records.write_json(args.out, results)


if __name__ == "__main__":
    main()
