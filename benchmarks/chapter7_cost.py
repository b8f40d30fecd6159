"""What chapter 7 costs per published model at a profile, and the chapter's projected total.

Chapter 7 trains nothing: per model it makes three records, the audit (clean, FGSM, PGD on the true
and on the predicted labels, APGD-CE/DLR, the checklist), standard AutoAttack (``kafnotes.autoattack``
at the profile's sizes) and PGD on the SavedModel as saved; and for two models (one ReLU, one KAF) the
step and eps curves. This script makes them afresh for a ReLU and a KAF model (in a temporary folder,
so nothing is reused), times each, and projects the chapter from the published models' families (the
ReLU model stands for ELU and Swish, the KAF one for every KAF variant). The load average is printed
before and after: on a shared machine the times stretch.

    KAFNOTES_CIFAR10=../shared/data/cifar10-jpeg75-10k.npz python benchmarks/chapter7_cost.py --profile cpu
    ... --profile cpu -p aa_n=200 -p saved_n=500     # what other sizes would cost
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kafnotes import chapter, cli, thesis_models  # noqa: E402


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--relu", default="resnet20_relu_ocrob_lrf", help="the model standing for ReLU, ELU, Swish")
    parser.add_argument("--kaf", default="resnet20_kaf_ocrob_lrfinder", help="the model standing for the KAFs")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                        help="override a profile key, e.g. -p aa_n=200 (as papermill's -p would)")
    args = parser.parse_args()
    overrides = cli.parse_params(args.param)
    P, cifar = chapter.start(args.profile, **overrides)
    x, y = chapter.eval_subset(P, cifar)
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    cost, curves = {}, {}
    with tempfile.TemporaryDirectory() as runs:
        for family, name in (("relu", args.relu), ("kaf", args.kaf)):
            rebuilt = (thesis_models.rebuild(name)[0], thesis_models.rebuild(name, precision="mixed_float16")[0])
            cost[family] = {
                "audit": timed(lambda: thesis_models.audit_at(name, x, y, P, rebuilt=rebuilt, runs=runs)),
                "autoattack": timed(lambda: thesis_models.autoattack(name, x, y, P, rebuilt=rebuilt[0], runs=runs)),
                "as saved": timed(lambda: thesis_models.as_published_at(name, x, y, P, runs=runs))}
            # the step and eps curves run for one ReLU and one KAF model only (the chapter's pair)
            curves[family] = timed(lambda: thesis_models.curves(name, x, y, P, rebuilt=rebuilt[0], runs=runs))
            print(f"{name} ({family}): " + ", ".join(f"{k} {v:.0f} s" for k, v in cost[family].items())
                  + f"; {sum(cost[family].values()) / 60:.1f} min; its step and eps curves {curves[family]:.0f} s",
                  flush=True)
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    families = [thesis_models.PUBLISHED[n][0].startswith("kaf") for n in thesis_models.selection(P)]
    total = sum(sum(cost["kaf" if is_kaf else "relu"].values()) for is_kaf in families) + sum(curves.values())
    said = "".join(f", {k}={v}" for k, v in overrides.items())
    print(f"\nchapter 7 at {args.profile!r}{said} ({len(x)} images; AutoAttack on {P['aa_n'] or len(x)}, APGD "
          f"{P['apgd_steps']} iterations, Square {P['square_queries']} queries; checklist on {P['checklist_n'] or len(x)}, "
          f"PGD as saved on {P['saved_n'] or len(x)}): {sum(families)} KAF and {len(families) - sum(families)} other "
          f"models and the curves of two, projected {total / 60:.0f} min")


if __name__ == "__main__":
    main()
