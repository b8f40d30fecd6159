"""What a trained run scores under attack, recorded beside its weights and reused when asked again."""

from __future__ import annotations

from . import attacks, records


def eval_subset(P: dict, cifar):
    """The profile's evaluation images: the first ``n_eval`` test images (all when ``None``)."""
    n = P["n_eval"] or len(cifar.x_test)
    return cifar.x_test[:n], cifar.y_test[:n]


def evaluate(run, P: dict, cifar, **attack) -> dict:
    """Clean and PGD accuracy of ``run`` on the profile's evaluation subset; ``attack`` overrides the
    profile's eps, alpha, steps and restarts, or picks ``loss="cw"`` / ``labels="predicted"``."""
    x, y = eval_subset(P, cifar)
    spec = {"eps": P["eps"], "alpha": P["pgd_alpha"], "steps": P["pgd_steps"], "restarts": P["pgd_restarts"],
            "n": len(x), **attack}
    return records.reuse_or_record(run.path / f"eval-{records.config_key(spec)}.json",
                                   lambda: _evaluate(run, x, y, spec, attack))


def _evaluate(run, x, y, spec, attack) -> dict:
    _, robust = attacks.pgd(run.model, x, y, eps=spec["eps"], alpha=spec["alpha"], steps=spec["steps"],
                            restarts=spec["restarts"], **{k: v for k, v in attack.items() if k in ("labels", "loss")})
    return {"attack": spec, "clean": attacks.clean_accuracy(run.model, x, y), "robust": float(robust.mean()),
            "robust_images": _mask_text(robust)}


def stronger_attacks(run, P: dict, cifar) -> dict:
    """APGD-CE/DLR (ART, ``P["apgd_steps"]`` iterations) and the sanity checklist of ``run`` on the
    profile's evaluation subset, recorded like ``evaluate``: a rebuilt chapter 6 does not attack again."""
    from . import art_attacks
    x, y = eval_subset(P, cifar)
    spec = {"attacks": "apgd+checklist", "eps": P["eps"], "alpha": P["pgd_alpha"], "steps": P["pgd_steps"],
            "apgd_steps": P["apgd_steps"], "n": len(x), "seed": P.get("seed", 0)}

    def attack():
        apgd = art_attacks.autoattack(run.model, x, y, eps=spec["eps"], steps=spec["apgd_steps"], seed=spec["seed"])
        checks = attacks.sanity_checks(run.model, x, y, eps=spec["eps"], alpha=spec["alpha"], steps=spec["steps"],
                                       seed=spec["seed"])
        return {"attack": spec, "apgd_ce": apgd["apgd_ce"], "apgd_dlr": apgd["apgd_dlr"],
                "apgd_worst": apgd["apgd_worst"], "robust_images": _mask_text(apgd["robust"]), "checks": checks}

    return records.reuse_or_record(run.path / f"eval-{records.config_key(spec)}.json", attack)


def worst_case(*evaluations: dict) -> float:
    """The fraction of images that survive every one of ``evaluations`` (records of ``evaluate`` or
    ``stronger_attacks`` on the same images): an image broken by any attack counts as broken."""
    masks = [e["robust_images"] for e in evaluations]
    if len({len(m) for m in masks}) != 1:
        raise ValueError("worst_case needs evaluations of the same images (their image counts differ)")
    return sum(all(m[i] == "1" for m in masks) for i in range(len(masks[0]))) / len(masks[0])


def _mask_text(robust) -> str:
    """A per-image robust/broken mask as a compact '0'/'1' string, for JSON records."""
    return "".join("1" if r else "0" for r in robust)
