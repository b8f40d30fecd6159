"""What the study found, in a few sentences (the closing chapter), each from the records the chapters made.

Nothing here trains or attacks anew: it asks for the same configs as chapters 5 and 7, so their run
records answer (``KAFNOTES_RECORDS_ONLY=1`` makes a missing one an error). Every sentence carries
its 95% interval, and every comparison is the paired test on the same images (``kafnotes.stats``).
"""

from __future__ import annotations

import pandas as pd

from . import chapter, prose, stats, thesis, thesis_models, training

BASELINE = "relu"


def claim() -> pd.Series:
    """Table 7.2's PGD-50-10 accuracy of each activation minus ReLU's, in points (no interval: the
    thesis reports one seed and no uncertainty)."""
    robust = thesis.TABLE_7_2_RESNET20.set_index("activation")["robust"]
    return (robust - robust[BASELINE]).drop(BASELINE).round(2)


def claim_sentence(gaps: pd.Series) -> str:
    kafs = gaps[[a for a in gaps.index if a.startswith("kaf")]]
    top = gaps.idxmax()
    said = (f"The thesis reports every KAF ResNet20 {kafs.min():+.1f} to {kafs.max():+.1f} points above ReLU under "
            "PGD-50-10 (Table 7.2: one model per activation, no interval, PGD attacking the models' own predictions)")
    if not top.startswith("kaf"):
        said += f"; its highest robust accuracy is not a KAF's but {top}'s ({gaps[top]:+.1f})"
    return said + "."


def retrained(P: dict, cifar, activations, seed: int = 0, variant: str = "thesis") -> dict:
    """Chapter 5's PGD evaluation records, a list over seeds per activation, read from its records;
    each with its run's ``note`` (``chapter.run_note``: what chapter 5's note column says of it)."""
    evals = {}
    for act in activations:
        for s in chapter.seeds_of(P, act, seed):
            run = training.train(chapter.resnet20_config(act, P, seed=s, variant=variant), cifar, verbose=False)
            ev = chapter.evaluate(run, P, cifar)
            evals.setdefault(act, []).append({**ev, "note": chapter.run_note(run, ev)})
    return evals


def retrained_sentence(evals: dict, P: dict, kaf: str = "kaf", first_seed: int = 0) -> str:
    """KAF against ReLU, both retrained (pooled over seeds), what the paired tests separate, and what
    pooling hides: each seed, and a seed whose run collapsed (``chapter.seeds_sentence``)."""
    masks = {name: stats.pooled([e["robust_images"] for e in evs]) for name, evs in evals.items()}
    test = stats.paired_seeds(*([e["robust_images"] for e in evals[a]] for a in (kaf, BASELINE)))
    seeds = min(len(evals[kaf]), len(evals[BASELINE]))  # the seeds the paired test pairs
    said = (f"Retrained here ({seeds} seed{'s' if seeds > 1 else ''} each, PGD-{P['pgd_steps']} on the true labels), "
            f"{kaf} scores {stats.wilson(masks[kaf])} and {BASELINE} {stats.wilson(masks[BASELINE])}")
    if chapter.pairs_a_collapse(evals, kaf, BASELINE):  # the pooled difference would measure the collapse
        said += f"{' pooled over the seeds' if seeds > 1 else ''}, a comparison that holds a collapsed run (below)."
    else:
        said += f": {kaf} minus {BASELINE} is {stats.format_diff(test)} points (McNemar p = {test.p_value:.2g})."
    said += " " + chapter.separation_sentence(evals, BASELINE, what="PGD accuracy", first_seed=first_seed)
    notes = {name: chapter.seeds_note([e.get("note", "") for e in evs], [first_seed + i for i in range(len(evs))])
             for name, evs in evals.items()}
    if any(notes.values()):  # a flagged run measures what went wrong in its training, not its activation
        said += " " + chapter.flagged_sentence(notes, lead="Chapter 5's note column") + (
            " A flagged run, and any difference against it, measures what went wrong in its training, not "
            "its activation.")
    return said


def published(P: dict, x, y, names=None) -> dict:
    """Chapter 7's records of each published model: its audit, standard AutoAttack and PGD on the
    SavedModel as saved."""
    return {name: {"audit": thesis_models.audit_at(name, x, y, P),
                   "autoattack": thesis_models.autoattack(name, x, y, P),
                   "as_saved": thesis_models.as_published_at(name, x, y, P)}
            for name in names or thesis_models.selection(P)}


def published_table(results: dict) -> pd.DataFrame:
    """One row per published model: Table 7.2's number for its row, then each correction in turn, in %
    with 95% intervals: PGD on the model's predictions (the thesis' attack), on the true labels, on the
    SavedModel as saved, and standard AutoAttack."""
    table_7_2 = thesis.TABLE_7_2_RESNET20.set_index("activation")["robust"]
    rows = []
    for name, r in results.items():
        row = thesis_models.PUBLISHED[name][1]
        a, saved = r["audit"], r["as_saved"]
        n, m = len(a["pgd_images"]), len(saved["clean_images"]) if "clean_images" in saved else None
        as_saved = "PGD, as saved" + (f" (first {m} images)" if m and m < n else "")  # saved_n
        rows.append({"model": name, "Table 7.2 row": row or "-",
                     "Table 7.2 PGD-50-10": f"{table_7_2[row]:.1f}" if row else "-",
                     "PGD, predicted labels": str(stats.wilson(a["pgd_predicted_images"])),
                     "PGD, true labels": str(stats.wilson(a["pgd_images"])),
                     as_saved: str(stats.wilson(saved["robust_images"])) if "robust_images" in saved
                     else "cannot be differentiated",
                     "AutoAttack": str(stats.wilson(r["autoattack"]["robust_images"]))})
    return pd.DataFrame(rows)


def relu_models(results: dict) -> list[str]:
    """The published ReLU models in ``results``, chapter 7's reference (``thesis_models.reference_relu``) first."""
    return thesis_models.relu_models(results)


def published_sentence(results: dict) -> str:
    """Under standard AutoAttack, which published models the paired tests place above or below each
    published ReLU model; and which ReLU model overfit catastrophically (``chapter.collapsed`` on its PGD
    audit: under 5% while its clean accuracy is above chance)."""
    standard = {name: r["autoattack"] for name, r in results.items()}
    n = len(next(iter(standard.values()))["robust_images"])
    relus = relu_models(results)
    if not relus:
        return f"No published ReLU model is in this run, so nothing is ranked against one ({n} images)."
    overfit = [name for name in relus if chapter.collapsed({"robust": results[name]["audit"]["pgd"],
                                                            "clean": results[name]["audit"]["clean"]})]
    scores = lambda name: f"{name} scores {stats.wilson(standard[name]['robust_images'])} under standard AutoAttack"
    parts = [f"{scores(relu)}. " + chapter.separation_sentence(standard, relu, what="AutoAttack accuracy")
             for relu in relus if relu not in overfit]
    for relu in overfit:  # ranked against, every model would be "above" it: that measures its collapse
        parts.append(f"{scores(relu)} and is under 5% against PGD (catastrophic overfitting, chapter 7), so no "
                     "model is ranked against it.")
    return " ".join(parts)


def bugs_sentence(results: dict) -> str:
    """What the thesis' evaluation was worth: PGD on the predictions instead of the labels, and PGD
    through the saved float16 softmax graph instead of the model's logits, as paired differences."""
    predicted = {name: stats.paired(r["audit"]["pgd_predicted_images"], r["audit"]["pgd_images"])
                 for name, r in results.items()}
    saved = {name: thesis_models.saved_against_rebuild(r["audit"], r["as_saved"])
             for name, r in results.items() if "robust_images" in r["as_saved"]}
    said = "Attacking the models' own predictions instead of the labels adds " + _span(predicted, "PGD accuracy")
    if saved:
        said += ("; attacking the SavedModel as saved (float16, softmax head) instead of its logits adds "
                 + _span(saved, "PGD accuracy"))
    return said + "."


def _span(tests: dict, what: str) -> str:
    """'+5.0 [+0.8, +9.2] (model) to +15.0 [+8.2, +23.3] points of WHAT (model); the paired test
    (McNemar, Holm, 5%) finds a difference in k of n models'."""
    low = min(tests, key=lambda n: tests[n].diff)
    high = max(tests, key=lambda n: tests[n].diff)
    p_holm = dict(zip(tests, stats.holm([t.p_value for t in tests.values()])))
    significant = sum(p <= stats.ALPHA for p in p_holm.values())
    span = (f"{stats.format_diff(tests[low])} points of {what} ({low})" if low == high else
            f"{stats.format_diff(tests[low])} ({low}) to {stats.format_diff(tests[high])} points of {what} ({high})")
    return (f"{span}; the paired test (McNemar, Holm, 5%) finds a difference in {significant} of {len(tests)} "
            f"model{'s' if len(tests) > 1 else ''}")
