"""What a trained run scores under attack, recorded beside its weights and reused when asked again."""

from __future__ import annotations

from pathlib import Path

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
    clean = attacks.predict_labels(run.model, x) == y
    return {"attack": spec, "clean": float(clean.mean()), "robust": float(robust.mean()),
            "clean_images": mask_text(clean), "robust_images": mask_text(robust)}


def transfer(source, target, P: dict, cifar) -> dict:
    """PGD examples made on ``source``'s gradients, fed to ``target`` (a transfer attack, chapter 6's
    check for gradient masking), on the profile's evaluation subset; recorded beside ``target``."""
    x, y = eval_subset(P, cifar)
    spec = {"eps": P["eps"], "alpha": P["pgd_alpha"], "steps": P["pgd_steps"], "restarts": P["pgd_restarts"],
            "n": len(x), "transfer_from": source.path.name}

    def attack():
        x_adv, _ = attacks.pgd(source.model, x, y, eps=spec["eps"], alpha=spec["alpha"], steps=spec["steps"],
                               restarts=spec["restarts"])
        robust = attacks.predict_labels(target.model, x_adv) == y
        return {"attack": spec, "robust": float(robust.mean()), "robust_images": mask_text(robust)}

    return records.reuse_or_record(target.path / f"eval-{records.config_key(spec)}.json", attack)


def first_n(count: int | None, n: int, key: str) -> int:
    """How many of ``n`` evaluation images a costly extra runs on (the first ones), from profile key
    ``key`` (``count``: a positive number, or None for all of them)."""
    if count is not None and int(count) < 1:
        raise ValueError(f"{key}={count}: give a positive number of images, or None for all of them")
    return n if count is None else min(int(count), n)


def checklist_images(checklist_n: int | None, n: int) -> int:
    """How many of ``n`` evaluation images the sanity checklist runs on (``checklist_n``)."""
    return first_n(checklist_n, n, "checklist_n")


def stronger_attacks(run, P: dict, cifar) -> dict:
    """APGD-CE/DLR (ART, ``P["diagnostic_apgd_steps"]`` iterations) and the sanity checklist of ``run`` on the
    profile's evaluation subset, recorded like ``evaluate``: a rebuilt chapter 6 does not attack again."""
    from . import art_attacks
    x, y = eval_subset(P, cifar)
    spec = {"attacks": "apgd+checklist", "eps": P["eps"], "alpha": P["pgd_alpha"], "steps": P["pgd_steps"],
            "apgd_steps": P["diagnostic_apgd_steps"], "n": len(x), "seed": P.get("seed", 0)}
    m = checklist_images(P.get("checklist_n"), len(x))
    if m < len(x):  # only then: records of the whole-set checklist keep their keys
        spec["checklist_n"] = m

    def attack():
        apgd = art_attacks.autoattack(run.model, x, y, eps=spec["eps"], steps=spec["apgd_steps"], seed=spec["seed"])
        checks = attacks.sanity_checks(run.model, x[:m], y[:m], eps=spec["eps"], alpha=spec["alpha"],
                                       steps=spec["steps"], seed=spec["seed"])
        return {"attack": spec, "apgd_ce": apgd["apgd_ce"], "apgd_dlr": apgd["apgd_dlr"],
                "apgd_worst": apgd["apgd_worst"], "robust_images": mask_text(apgd["robust"]), "checks": checks}

    return records.reuse_or_record(run.path / f"eval-{records.config_key(spec)}.json", attack)


def standard_autoattack(run, P: dict, cifar) -> dict:
    """Standard AutoAttack (``kafnotes.autoattack``, as the profile sizes it) on ``run``, recorded
    beside its weights like ``evaluate``."""
    x, y = eval_subset(P, cifar)
    return autoattack_record(run.path, "eval", lambda: run.model, x, y, P)


def autoattack_record(folder, stem: str, model_fn, x, y, P: dict, **identity) -> dict:
    """AutoAttack on the first ``P["aa_n"]`` of ``x, y``, stored as ``folder/stem-KEY.json`` and
    reused when asked again; ``model_fn`` builds the model only when an attack has to run, and
    ``identity`` (e.g. a published model's checksum) joins the key."""
    from . import autoattack
    n = min(P["aa_n"] or len(x), len(x))
    x, y = x[:n], y[:n]
    spec = {"attacks": "autoattack-standard-art", "eps": P["eps"], "apgd_steps": P["apgd_steps"], "targets": 9,
            "square_queries": P["square_queries"], "square_n": P["square_n"], "n": n,
            "images": records.array_digest(x, y), "seed": P.get("seed", 0), **identity}

    path = Path(folder) / f"{stem}-{records.config_key(spec)}.json"

    def attack():
        model = model_fn()
        result = autoattack.run(model, x, y, eps=spec["eps"], steps=spec["apgd_steps"], targets=spec["targets"],
                                square_queries=spec["square_queries"], square_n=spec["square_n"], seed=spec["seed"],
                                checkpoint=progress)
        clean = attacks.predict_labels(model, x) == y
        return {"attack": spec, **{k: v for k, v in result.items() if k != "robust"},
                "clean": float(clean.mean()), "robust": result["accuracy"]["square"],
                "clean_images": mask_text(clean), "robust_images": mask_text(result["robust"])}

    progress = path.with_name(path.stem + ".progress.npz")  # an interrupted attack resumes from it
    record = records.reuse_or_record(path, attack)
    progress.unlink(missing_ok=True)
    return record


def worst_case(*evaluations: dict) -> float:
    """The fraction of images that survive every one of ``evaluations`` (records of ``evaluate`` or
    ``stronger_attacks`` on the same images): an image broken by any attack counts as broken."""
    mask = worst_mask(*evaluations)
    return mask.count("1") / len(mask)


def worst_mask(*evaluations: dict) -> str:
    """Per image, '1' if it survives every one of ``evaluations``: the mask behind ``worst_case``."""
    masks = [e["robust_images"] for e in evaluations]
    if len({len(m) for m in masks}) != 1:
        raise ValueError("worst_case needs evaluations of the same images (their image counts differ)")
    return "".join("1" if all(m[i] == "1" for m in masks) else "0" for i in range(len(masks[0])))


def mask_text(robust) -> str:
    """A per-image robust/broken mask as a compact '0'/'1' string, for JSON records."""
    return "".join("1" if r else "0" for r in robust)
