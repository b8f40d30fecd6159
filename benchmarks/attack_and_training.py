"""Two ratios measured in one run (ResNet20, ReLU):

1. FGSM-RS / standard training time, per step (alternating, robust to noise) and per epoch
   (target <= 2.2x; the floor is 2x).
2. ART's PGD time / native PGD time on the same model and images, same K and R (target >= 3x),
   and the two robust accuracies (target: within 1.5 points on >= 500 images).

    python benchmarks/attack_and_training.py [--data PATH] [--images 500] [--steps 10] [--restarts 1]
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402


def step_ratio(cifar, steps=12, batch=128):
    """FGSM-RS step / standard step, timed alternately on the same model and batches so that machine
    noise hits both alike (an epoch is its steps plus a data pipeline both methods share)."""
    import tensorflow as tf
    from kafnotes import training
    config = training.TrainConfig(arch="resnet20", activation="relu", batch_size=batch, lr=0.01)
    model, optimizer = training.build(config)
    noise = tf.random.Generator.from_seed(0)
    std = training.make_train_step(model, optimizer, training.TrainConfig(method="standard"), noise)
    adv = training.make_train_step(model, optimizer, training.TrainConfig(method="fgsm_rs"), noise)
    x, y = tf.constant(cifar.x_train[:batch]), tf.constant(cifar.y_train[:batch])
    std(x, y), adv(x, y)  # trace both
    times = {"standard": [], "fgsm_rs": []}
    for _ in range(steps):
        for name, fn in (("standard", std), ("fgsm_rs", adv)):
            t0 = time.perf_counter()
            float(fn(x, y)[0])
            times[name].append(time.perf_counter() - t0)
    med = {k: float(np.median(v)) for k, v in times.items()}
    return med["fgsm_rs"] / med["standard"], med


def epoch_seconds(method, cifar, epochs=2):
    """Seconds of the last epoch's training loop (evaluation excluded; the first epoch pays tracing)."""
    from kafnotes import training
    config = training.TrainConfig(arch="resnet20", activation="relu", method=method, epochs=epochs, batch_size=128,
                                  lr=0.1, augment=True)
    run = training.train(config, cifar, runs=os.environ.get("KAFNOTES_RUNS", "/tmp/kafnotes-bench"),
                         force=True, verbose=False)
    return run.history[-1]["seconds"], run  # the second epoch: no tracing cost


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="sample")
    parser.add_argument("--n-train", type=int, default=None)
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--restarts", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=2, help="training epochs of the model that is attacked")
    args = parser.parse_args()
    import kafnotes
    from kafnotes import art_attacks, attacks, data
    kafnotes.setup(0)
    cifar = data.load_cifar10(args.data, n_train=args.n_train)
    ratio, med = step_ratio(cifar)
    print(f"step (ResNet20 ReLU, batch 128, alternating): standard {med['standard']:.3f} s, FGSM-RS "
          f"{med['fgsm_rs']:.3f} s -> ratio {ratio:.2f}x")
    std_s, _ = epoch_seconds("standard", cifar, args.epochs)
    adv_s, run = epoch_seconds("fgsm_rs", cifar, args.epochs)
    print(f"epoch: standard {std_s:.1f} s, FGSM-RS {adv_s:.1f} s -> ratio {adv_s / std_s:.2f}x "
          f"({len(cifar.x_train)} images, {cifar.source}; sequential, so noisier than the step ratio)")

    x = np.concatenate([cifar.x_test, cifar.x_train])[: args.images]
    y = np.concatenate([cifar.y_test, cifar.y_train])[: args.images]
    kw = dict(eps=8 / 255, alpha=2 / 255, steps=args.steps, restarts=args.restarts)
    attacks.pgd(run.model, x[:8], y[:8], **kw)  # trace once, outside the timing
    t0 = time.perf_counter()
    native = attacks.pgd(run.model, x, y, **kw)[1].mean()
    native_s = time.perf_counter() - t0
    clf = art_attacks.classifier(run.model)
    art_attacks.pgd(run.model, x[:8], y[:8], clf=clf, **kw)
    t0 = time.perf_counter()
    art = art_attacks.pgd(run.model, x, y, clf=clf, **kw)[1].mean()
    art_s = time.perf_counter() - t0
    print(f"PGD-{args.steps}-{args.restarts} on {len(x)} images (model: ResNet20 after {args.epochs} FGSM-RS epochs): "
          f"native {native_s:.1f} s, ART {art_s:.1f} s -> native is {art_s / native_s:.1f}x faster; "
          f"robust accuracy native {native:.1%}, ART {art:.1%}, gap {abs(native - art) * 100:.1f} points; "
          f"clean {attacks.clean_accuracy(run.model, x, y):.1%}")


if __name__ == "__main__":
    main()
