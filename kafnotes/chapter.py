"""What every chapter does first and last: resolve its profile, load its data, label its tables."""

from __future__ import annotations

import pandas as pd

from . import data, settings
from .evaluation import eval_subset, evaluate, stronger_attacks, worst_case  # noqa: F401  (chapters call them here)
from .profiles import get_profile


def start(profile: str = "smoke", seed: int = 0, **overrides):
    """Seed everything, resolve the profile (papermill overrides win) and load the data it names.

    Returns ``(P, cifar)`` and prints one line saying what this run of the chapter is.
    """
    settings.setup(seed)
    P = get_profile(profile, **overrides)
    P["seed"] = seed
    cifar = data.load_cifar10(P["data"], n_train=P["n_train"], n_test=P["n_test"], seed=seed)
    P["data_label"] = cifar.source
    print(f"profile {profile}: {cifar.source}, {len(cifar.x_train)} train / {len(cifar.x_test)} test images, "
          f"seed {seed}")
    return P, cifar


def caption(P: dict, what: str = "", pgd: bool = True, **attack) -> str:
    """A table caption naming the profile, the data and (if ``pgd``) the attack; ``attack`` overrides
    the profile's eps, steps and restarts."""
    parts = [f"profile {P['name']}", P["data_label"]]
    if pgd:
        eps, steps = attack.get("eps", P["eps"]), attack.get("steps", P["pgd_steps"])
        parts.append(f"PGD-{steps}-{attack.get('restarts', P['pgd_restarts'])} at eps={eps * 255:.1f}/255, "
                     f"true labels, {P['n_eval'] or 'all'} test images")
    return f"{what} [{'; '.join(parts)}]".strip()


def percent(df: pd.DataFrame, columns, digits: int = 1) -> pd.DataFrame:
    """Accuracies in %, rounded, so stored notebook outputs compare stably."""
    df = df.copy()
    for c in columns:
        df[c] = (df[c] * 100).round(digits)
    return df


def adversarial_config(arch: str, activation: str, P: dict, lr_min: float, lr_max: float,
                       augment: bool, seed: int = 0, **extra):
    """The FGSM-RS recipe of chapters 3, 5 and 6 (one-cycle SGD, eps 8/255, step 1.25 eps); the
    catastrophic-overfitting guard is on and a divergence is recorded rather than raised."""
    from .training import TrainConfig
    return TrainConfig(arch=arch, activation=activation, method="fgsm_rs", epochs=P["adv_epochs"],
                       batch_size=P["batch_size"], optimizer="sgd", schedule="one_cycle", lr=lr_max,
                       lr_min=lr_min, eps=P["eps"], augment=augment, co_guard=True, on_nonfinite="record",
                       seed=seed, **extra)


AT_CHANCE = 0.15  # a clean accuracy below this is within 5 points of CIFAR-10's 10% chance


def results_row(run, ev: dict, **columns) -> dict:
    """One table row; its note says why a row's accuracy should not be read as the activation's:
    the training went wrong (``training_note``) or the model ended within 5 points of chance."""
    notes = [training_note(run.record)]
    if ev["clean"] < AT_CHANCE:
        notes.append("at chance")
    return {**columns, "clean": ev["clean"], "robust": ev["robust"], "note": "; ".join(n for n in notes if n)}


def training_note(record: dict, blowup: float = 10.0) -> str:
    """"diverged" (a non-finite value), "loss exploded" (an epoch's loss above ``blowup`` times the
    first epoch's while staying finite: KAF ResNets at lr 0.8 reach 1e8), "early stop (epoch k)"."""
    flags = record["flags"]
    if flags["diverged"]:
        return "diverged"
    kept = flags["early_stopped_epoch"]  # the guard rolled back the epochs after this one
    losses = [h["loss"] for h in record["history"][:kept]]
    if losses and max(losses) > blowup * losses[0]:
        return f"loss exploded (to {max(losses):.2g})"
    if kept is not None:
        return f"early stop (epoch {kept})"
    return ""
