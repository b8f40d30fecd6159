"""Clean and PGD accuracy of a trained run, recorded beside its weights and reused when asked again."""

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
    path = run.path / f"eval-{records.config_key(spec)}.json"
    with records.exclusive(path.with_suffix(".lock")):  # chapters 5 and 6 ask for the same evaluation
        if path.exists():
            return records.read_json(path)
        return _evaluate(run, x, y, spec, attack, path)


def _evaluate(run, x, y, spec, attack, path) -> dict:
    robust = attacks.robust_accuracy(run.model, x, y, eps=spec["eps"], alpha=spec["alpha"], steps=spec["steps"],
                                     restarts=spec["restarts"], **{k: v for k, v in attack.items()
                                                                   if k in ("labels", "loss")})
    rec = {"attack": spec, "clean": attacks.clean_accuracy(run.model, x, y), "robust": robust,
           "environment": records.environment()}
    records.write_json(path, rec)
    return rec
