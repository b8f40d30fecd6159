"""What every chapter does first and last: resolve its profile, load its data, label its tables."""

from __future__ import annotations

import keras
import pandas as pd

from . import attacks, autoattack, data, prose, settings
from . import stats
from .evaluation import (checklist_images, eval_subset, first_n, evaluate, standard_autoattack,  # noqa: F401  (chapters
                         stronger_attacks, transfer, worst_case, worst_mask)             # call them here)
from .profiles import THESIS_SCHEDULE, get_profile


def start(profile: str = "smoke", seed: int = 0, **overrides):
    """Seed everything, resolve the profile (papermill overrides win) and load the data it names.

    Returns ``(P, cifar)`` and prints one line saying what this run of the chapter is.
    """
    settings.setup(seed)
    P = get_profile(profile, **overrides)
    P["seed"] = seed
    keras.config.set_floatx(P["dtype"])  # the default of every model and TrainConfig that follows
    cifar = data.load_cifar10(P["data"], n_train=P["n_train"], n_test=P["n_test"], seed=seed)
    P["data_label"] = cifar.source
    print(f"profile {profile}: {cifar.source}, {len(cifar.x_train)} train / {len(cifar.x_test)} test images, "
          f"seed {seed}")
    return P, cifar


def scale_sentence(P: dict, cifar, epochs: str = "adv_epochs", markdown: bool = True) -> str:
    """What scale this execution ran at, for the chapter's "What came out" prose: the profile, the
    data, the epochs and the evaluation; at ``smoke`` also that its numbers only show the pipeline runs.
    ``markdown=False``: no code marks, for pasting as plain text into another page."""
    n_eval = P["n_eval"] or len(cifar.x_test)
    mark = "`" if markdown else ""
    said = (f"This run is at the {mark}{P['name']}{mark} profile: {len(cifar.x_train)} training images "
            f"({P['data_label']}), {P[epochs]} epochs, evaluated on {min(n_eval, len(cifar.x_test))} test images")
    if P["name"] == "smoke":
        said += (". At this scale the models are barely trained, and the numbers show only that the pipeline runs "
                 f"end to end; the {mark}study{mark} edition of the book shows the same cells at the largest scale 2 CPU "
                 "cores afford")
    return said + "."


def caption(P: dict, what: str = "", pgd: bool = True, images: str | None = None, **attack) -> str:
    """A table caption naming the profile, the data and (if ``pgd``) the attack; ``attack`` overrides
    the profile's eps, steps and restarts, ``images`` the profile's count of test images."""
    parts = [f"profile {P['name']}", P["data_label"]]
    if pgd:
        eps, steps = attack.get("eps", P["eps"]), attack.get("steps", P["pgd_steps"])
        parts.append(f"PGD-{steps}-{attack.get('restarts', P['pgd_restarts'])} at eps={eps * 255:.1f}/255, "
                     f"true labels, {images or P['n_eval'] or 'all'} test images")
    return f"{what} [{'; '.join(parts)}]".strip()


def autoattack_caption(P: dict, n_eval: int) -> str:
    """What the AutoAttack numbers are: the composition, its sizes at this profile, and what it omits."""
    n = min(P["aa_n"] or n_eval, n_eval)
    square_n = n if P["square_n"] is None else min(P["square_n"], n)
    square = f"Square ({P['square_queries']} queries" + (f", on the first {square_n} images)" if square_n < n else ")")
    standard = P["apgd_steps"] == 100 and P["square_queries"] == 5000 and square_n == n
    return (f"standard AutoAttack through ART at eps={P['eps'] * 255:.1f}/255 on the first {n} test images: "
            f"APGD-CE and APGD-T (9 targets), {P['apgd_steps']} iterations each, then {square}, each on the "
            f"images still robust; no FAB-T (ART has none)"
            + ("" if standard else "; smaller than the standard version (100 iterations, 5000 queries on every image)"))


def autoattack_table(results: dict, baseline: str | None = "relu", key: str = "activation") -> pd.DataFrame:
    """Standard AutoAttack results (``evaluation.autoattack_record``), one row each: clean and
    AutoAttack accuracy with 95% intervals, the paired test against ``baseline`` (``intervals``),
    and the accuracy in % after each stage, so a reader sees which attack found what."""
    # In the ensemble's order: a record read back from JSON has its stages sorted by name.
    order = [s for s in autoattack.STAGES if any(s in r["accuracy"] for r in results.values())]
    stages = pd.DataFrame([{key: name, **{f"after {s}": 100 * r["accuracy"][s] for s in order if s in r["accuracy"]}}
                           for name, r in results.items()]).round(1)
    return intervals(results, baseline=baseline, key=key, label="AutoAttack").merge(stages, on=key)


def percent(df: pd.DataFrame, columns, digits: int | None = 1) -> pd.DataFrame:
    """Accuracies in %, rounded, so stored notebook outputs compare stably. ``digits=None`` keeps every
    digit, for columns that ``with_intervals`` formats: on more than 1,000 images a rounded percentage
    no longer gives back its count (77.55% of 2,000 is 1,551 images; 77.6% would read as 1,552)."""
    df = df.copy()
    for c in columns:
        df[c] = df[c] * 100 if digits is None else (df[c] * 100).round(digits)
    return df


def adversarial_config(arch: str, activation: str, P: dict, lr_min: float, lr_max: float,
                       augment: bool, seed: int = 0, method: str = "fgsm_rs", **extra):
    """The FGSM-RS recipe of chapters 3, 5 and 6 (one-cycle SGD, eps 8/255, step 1.25 eps), or with
    ``method="n_fgsm"`` the same schedule with N-FGSM's noise and step; the catastrophic-overfitting
    guard is on and a divergence is recorded rather than raised."""
    from .training import TrainConfig
    return TrainConfig(arch=arch, activation=activation, method=method, epochs=P["adv_epochs"],
                       batch_size=P["batch_size"], optimizer="sgd", schedule="one_cycle", lr=lr_max,
                       lr_min=lr_min, eps=P["eps"], augment=augment, co_guard=True, on_nonfinite="record",
                       seed=seed, **extra)


def resnet20_config(activation: str, P: dict, seed: int = 0, variant: str = "thesis", method: str = "fgsm_rs"):
    """Chapter 5's ResNet20 recipe for ``activation``: ``adversarial_config`` with augmentation, the
    profile's schedule (``resnet_schedule``) and the ResNet block ``variant``. The closing chapter asks
    for the same configs, so it reads chapter 5's records instead of training again."""
    return adversarial_config("resnet20", activation, P, augment=True, **resnet_schedule(P),
                              arch_options=dict(variant=variant), seed=seed, method=method)


def seeds_of(P: dict, activation: str, seed: int = 0) -> range:
    """The seeds chapters 3 and 5 train ``activation`` with: the profile's ``seeds``, or more where
    ``seeds_for`` gives it more (the activations a conclusion turns on)."""
    return range(seed, seed + max(P["seeds"], P["seeds_for"].get(activation, 0)))


def seeds_said(P: dict, activations) -> str:
    """'1 seed(s)', or '1 seed, 2 for relu and kaf' where ``seeds_for`` gives some activations more."""
    more = {a: len(seeds_of(P, a)) for a in activations if len(seeds_of(P, a)) != P["seeds"]}
    if not more:
        return f"{P['seeds']} seed(s)"
    by_count = {}
    for a, n in more.items():
        by_count.setdefault(n, []).append(a)
    return f"{P['seeds']} seed{'s' if P['seeds'] > 1 else ''}, " + ", ".join(
        f"{n} for {prose.listing(acts)}" for n, acts in sorted(by_count.items()))


def checklist_said(P: dict, n: int) -> str:
    """For captions: '' when the checklist ran on all ``n`` images, else on how many (``checklist_n``)."""
    m = checklist_images(P.get("checklist_n"), n)
    return "" if m == n else f"; 'checks passed': the checklist on the first {m} of the {n} images"


def resnet_schedule(P: dict) -> dict:
    """The ResNet20 FGSM training schedule of chapters 5 and 6, from the profile: keyword arguments
    for ``adversarial_config`` (lr_min, lr_max, SGD momentum, FGSM step)."""
    return dict(lr_min=P["adv_lr_min"], lr_max=P["adv_lr_max"], momentum=P["adv_momentum"],
                fgsm_alpha=P["fgsm_alpha"])


def schedule_sentence(P: dict) -> str:
    """The schedule in words, for the prose, saying where it departs from the thesis'."""
    said = (f"a one-cycle learning rate {P['adv_lr_min']:g} → {P['adv_lr_max']:g} → {P['adv_lr_min']:g} over "
            f"{P['adv_epochs']} epochs, SGD " + (f"with momentum {P['adv_momentum']:g}" if P["adv_momentum"]
                                                 else "without momentum"))
    thesis = THESIS_SCHEDULE
    if all(P[key] == value for key, value in thesis.items()):
        return said + ", the thesis' own schedule (every published model stores SGD with momentum 0)"
    return said + (f", not the thesis' {thesis['adv_lr_min']:g} → {thesis['adv_lr_max']:g} without momentum: that "
                   f"schedule, compressed to {P['adv_epochs']} epochs, overfits ReLU catastrophically "
                   "(`results/study/README.md`), so this profile uses Wong et al.'s reference schedule")


AT_CHANCE = 0.15  # a clean accuracy below this is within 5 points of CIFAR-10's 10% chance


def results_row(runs, evs, **columns) -> dict:
    """One table row; its note says why a row's accuracy should not be read as the activation's:
    the training went wrong (``training_note``) or the model ended within 5 points of chance.

    ``runs`` and ``evs`` are one run and its evaluation, or one of each per seed (same order): the
    row then holds the mean over seeds, and the note names each seed whose run is flagged
    ("seed 1: overfitting (...)"), so one seed's collapse is not hidden behind another's success."""
    runs = runs if isinstance(runs, (list, tuple)) else [runs]
    evs = evs if isinstance(evs, (list, tuple)) else [evs]
    if len(runs) != len(evs):
        raise ValueError(f"results_row needs one evaluation per run (got {len(runs)} runs, {len(evs)} evaluations)")
    seeds = [run.record["config"]["seed"] for run in runs] if len(runs) > 1 else [None]
    note = seeds_note([run_note(run, ev) for run, ev in zip(runs, evs)], seeds)
    mean = mean_over_seeds(evs)
    return {**columns, "clean": mean["clean"], "robust": mean["robust"], "note": note}


def run_note(run, ev: dict) -> str:
    """Why one run's accuracy should not be read as its activation's ('' when nothing is wrong): its
    training went wrong (``training_note``) or its model ended within 5 points of chance."""
    return "; ".join(n for n in (training_note(run.record), "at chance" if ev["clean"] < AT_CHANCE else "") if n)


def seeds_note(notes: list, seeds: list) -> str:
    """One row's note from its runs' notes (``run_note``), one per seed: a single run's as it is; over
    several, each flagged seed named ("seed 1: ..."), so one seed's collapse is not hidden."""
    if len(notes) == 1:
        return notes[0]
    return "; ".join(f"seed {seed}: {note}" for seed, note in zip(seeds, notes) if note)


def flagged_sentence(notes: dict, lead: str = "In this run the note column") -> str:
    """The sentence beside a table's note column: which entries it flags and why (``notes``: name ->
    its note, '' when not flagged), so the prose never ranks a flagged run without saying so."""
    flagged = [f"{name} ({note})" for name, note in notes.items() if note]
    return f"{lead} flags {prose.listing(flagged) if flagged else 'no run'}."


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
    return overfitting(record)


def overfitting(record: dict, gap: float = 0.10, alpha: float = stats.ALPHA) -> str:
    """"overfitting (...)": the signs of gradual or catastrophic overfitting that the guard's
    20-point rule misses, each only when significant (``stats.rate_below``):

    - the guard's PGD-5 accuracy slid from its best epoch to the last while FGSM training accuracy rose;
    - at the last epoch, FGSM training accuracy exceeds the guard's PGD-5 by more than ``gap``: the
      one-step attack it trains on no longer finds the examples a multi-step attack does.

    Empty when neither holds, when the run has no guard, or when FGSM training accuracy ended within
    ``AT_CHANCE + gap`` of nothing: a model that has not learned cannot be said to overfit."""
    kept = record["flags"]["early_stopped_epoch"]
    history = [h for h in record["history"][:kept] if "guard_pgd5" in h]
    if not history or history[-1]["train_acc"] < AT_CHANCE + gap:
        return ""
    n = min(record["config"]["batch_size"], record["data"]["n_train"])  # the guard's one training batch
    hits = lambda h: round(h["guard_pgd5"] * n)
    best, last = max(history, key=lambda h: h["guard_pgd5"]), history[-1]
    signs = []
    if (last is not best and last["train_acc"] > best["train_acc"]
            and stats.rate_below(hits(last), n, hits(best), n) <= alpha):
        signs.append(f"guard PGD-5 {best['guard_pgd5']:.0%} at epoch {best['epoch']}, "
                     f"{last['guard_pgd5']:.0%} at {last['epoch']}")
    n_train = record["data"]["n_train"]
    if (last["train_acc"] - last["guard_pgd5"] > gap
            and stats.rate_below(hits(last), n, round(last["train_acc"] * n_train), n_train) <= alpha):
        signs.append(f"FGSM train acc {last['train_acc']:.0%} against PGD-5 {last['guard_pgd5']:.0%}")
    return f"overfitting ({'; '.join(signs)})" if signs else ""


def intervals(evals: dict, baseline: str | None = "relu", key: str = "activation",
              label: str = "robust") -> pd.DataFrame:
    """Uncertainty columns for a results table, one row per entry of ``evals``.

    ``evals`` maps a name to an evaluation record, or to a list of them (one per seed, on the same
    images): anything with per-image masks ``robust_images`` (and ``clean_images``, or else
    ``clean``), such as ``evaluate``'s records. Columns: clean and ``label``
    accuracy in % with 95% Wilson intervals (pooled over seeds, with the min-max over seeds when
    there are several), and against ``baseline`` the paired difference in points with its interval,
    McNemar's p-value after Holm's correction over the table's comparisons, and whether the data
    separate the two at the 5% level. Where the two have different numbers of seeds, the paired test
    uses the seeds both have (seed s against seed s).
    """
    per_seed = {name: ev if isinstance(ev, list) else [ev] for name, ev in evals.items()}
    robust_masks = {name: [stats.as_mask(e["robust_images"], name) for e in evs] for name, evs in per_seed.items()}
    rows = []
    for name, evs in per_seed.items():
        row = {key: name, "clean [95% CI]": _clean_interval(evs),
               f"{label} [95% CI]": stats.format_interval(stats.wilson(stats.pooled(robust_masks[name])))}
        if len(evs) > 1:
            accs = [100 * stats.wilson(m).value for m in robust_masks[name]]
            row[f"{label} over seeds"] = f"{min(accs):.1f}-{max(accs):.1f} ({len(evs)} seeds)"
        rows.append(row)
    table = pd.DataFrame(rows)
    if f"{label} over seeds" in table:  # seeds_for: some rows have more seeds than others
        table[f"{label} over seeds"] = table[f"{label} over seeds"].fillna("(1 seed)")
    if baseline is None or baseline not in robust_masks or len(robust_masks) < 2:
        return table
    test = stats.against_baseline(robust_masks, baseline)
    diffs, ps, flags = [], [], []
    for name in table[key]:
        if name == baseline:
            diffs.append("(baseline)"); ps.append(""); flags.append("")
            continue
        t = test.loc[name]
        diffs.append(f"{100 * t['diff']:+.1f} [{100 * t['diff_low']:+.1f}, {100 * t['diff_high']:+.1f}]")
        ps.append(f"{t['p_holm']:.3f}" if t["p_holm"] >= 0.001 else "<0.001")
        flags.append("yes" if t["significant"] else "no")
    table[f"{label} - {baseline} (points)"] = diffs
    table["p (Holm)"] = ps
    table[f"separated from {baseline}"] = flags
    return table


def separated(evals: dict, baseline: str = "relu") -> dict:
    """For prose: which names the paired test separates from ``baseline`` (after Holm), by direction."""
    masks = {name: [stats.as_mask(e["robust_images"], name) for e in (ev if isinstance(ev, list) else [ev])]
             for name, ev in evals.items()}
    test = stats.against_baseline(masks, baseline)
    others = test.drop(index=baseline)
    sig = others[others["significant"]]
    return {"above": list(sig[sig["diff"] > 0].index), "below": list(sig[sig["diff"] < 0].index),
            "not separated": list(others[~others["significant"]].index)}


def _clean_interval(evs) -> str:
    return stats.format_interval(_clean(evs))


def _clean(evs) -> stats.Interval:
    if all("clean_images" in e for e in evs):
        return stats.wilson(stats.pooled([e["clean_images"] for e in evs]))
    # records made before clean masks were kept: the interval from the count
    n = sum(len(e["robust_images"]) for e in evs)
    k = round(sum(e["clean"] * len(e["robust_images"]) for e in evs))
    return stats.wilson_count(k, n)


def interval_bounds(evals: dict, key: str = "activation") -> pd.DataFrame:
    """Numbers behind ``intervals`` for plots: clean and robust accuracy in % with their 95% Wilson
    bounds (``clean_low``, ``clean_high``, ``robust_low``, ``robust_high``), pooled over seeds."""
    rows = []
    for name, ev in evals.items():
        evs = ev if isinstance(ev, list) else [ev]
        rob = stats.wilson(stats.pooled([e["robust_images"] for e in evs]))
        cln = _clean(evs)
        rows.append({key: name, "clean": 100 * cln.value, "clean_low": 100 * cln.low, "clean_high": 100 * cln.high,
                     "robust": 100 * rob.value, "robust_low": 100 * rob.low, "robust_high": 100 * rob.high})
    return pd.DataFrame(rows)


def mean_over_seeds(evs: list) -> dict:
    """One seed's record, or the mean clean and robust accuracy over several seeds' records."""
    mean = lambda key: sum(e[key] for e in evs) / len(evs)
    return {"clean": mean("clean"), "robust": mean("robust")}


def with_intervals(df: pd.DataFrame, columns, n: int) -> pd.DataFrame:
    """A copy of a table of accuracies in % whose ``columns`` read "41.4 [37.1, 45.8]": each with its
    95% Wilson interval from its count on ``n`` images (for records that keep no per-image mask)."""
    df = df.copy()
    for c in columns:
        df[c] = [stats.format_interval(stats.wilson_accuracy(v / 100, n)) if pd.notna(v) else ""
                 for v in df[c]]
    return df


def checklist_table(checks: dict, n: int) -> pd.DataFrame:
    """The Carlini et al. checklist, one column per model (``checks``: model -> its checks): ✓ or ✗,
    then the value; an accuracy in % with its 95% interval on the ``n`` images the checklist ran on."""
    def cell(name: str, check: dict) -> str:
        value = (stats.format_interval(stats.wilson_accuracy(check["value"], n))
                 if attacks.is_accuracy_check(name) else f"{check['value']:.3f}")
        return ("✓ " if check["ok"] else "✗ ") + value
    return pd.DataFrame({model: {name: cell(name, c) for name, c in cs.items()} for model, cs in checks.items()})


def separation_sentence(evals: dict, baseline: str = "relu", what: str = "robust accuracy",
                        first_seed: int = 0, adversarial: bool = True) -> str:
    """The sentence a chapter may say about its ranking, from the paired tests (``separated``): which
    entries the data place above or below ``baseline``, and which they cannot tell apart from it; for
    entries with several seeds (from ``first_seed``), what the pooled test hides (``seeds_sentence``).

    ``adversarial``: the models were trained to resist the attack, so a run under 5% robust accuracy
    collapsed (``collapsed``) and no pairing that holds one is ranked; ``False`` for standard training,
    where nothing is robust to begin with."""
    if baseline not in evals or len(evals) < 2:
        return f"No paired test here: it needs {baseline} and at least one other entry evaluated on the same images."
    groups = separated(evals, baseline)
    # A pairing that holds a collapsed run measures the collapse: no ranking from it (seeds_sentence says why).
    unranked = [name for name in evals
                if adversarial and name != baseline and pairs_a_collapse(evals, name, baseline)]
    groups = {group: [name for name in names if name not in unranked] for group, names in groups.items()}
    first = next(iter(evals.values()))
    n = len((first[0] if isinstance(first, list) else first)["robust_images"])
    parts = []
    if groups["above"]:
        parts.append(f"{', '.join(groups['above'])} above {baseline}")
    if groups["below"]:
        parts.append(f"{', '.join(groups['below'])} below {baseline}")
    tests = f"On {what}, the paired tests (McNemar, Holm, 5%) on these {n} images"
    if parts:
        said = f"{tests} place " + "; ".join(parts) + "."
    elif groups["not separated"] or not unranked:
        said = f"{tests} separate nothing from {baseline}."
    else:
        said = f"{tests} rank nothing against {baseline}."
    if groups["not separated"]:
        said += (f" The data cannot separate {', '.join(groups['not separated'])} from {baseline} at this scale, "
                 "so the table does not rank them against it.")
    if unranked:
        said += (f" The paired test of {', '.join(unranked)} against {baseline} pairs a collapsed run (below), so "
                 "it ranks nothing.")
    seeds = seeds_sentence(evals, baseline, first_seed, adversarial)
    return f"{said} {seeds}" if seeds else said


def pairs_a_collapse(evals: dict, name: str, baseline: str) -> bool:
    """Whether ``name``'s paired test against ``baseline`` (seed s against seed s, on the seeds both
    have) holds a run of either that collapsed (``collapsed``)."""
    ours, theirs = ([ev] if not isinstance(ev, list) else ev for ev in (evals[name], evals[baseline]))
    return any(collapsed(a) or collapsed(b) for a, b in zip(ours, theirs))


COLLAPSED = 0.05  # robust accuracy under this with clean accuracy above chance: catastrophic overfitting


def collapsed(ev: dict) -> bool:
    """Whether an evaluation shows catastrophic overfitting: robust accuracy under 5% while the model
    learned (clean accuracy not within 5 points of chance). The per-image mask, which the paired tests
    read, decides where an entry has one (a worst-case entry may carry one attack's ``robust`` beside it)."""
    robust = stats.as_mask(ev["robust_images"]).mean() if "robust_images" in ev else ev["robust"]
    return robust < COLLAPSED and ev["clean"] >= AT_CHANCE


def seeds_sentence(evals: dict, baseline: str = "relu", first_seed: int = 0, adversarial: bool = True) -> str:
    """What a table pooled over seeds hides, for the prose beside it ('' when every entry has one seed
    and none collapsed).

    ``evals`` maps a name to its per-seed evaluations (seeds ``first_seed``, ``first_seed`` + 1, ...).
    Says which seeds an entry with fewer seeds is paired on; gives each entry with several seeds
    against ``baseline`` seed by seed (McNemar, unadjusted); names every run that collapsed
    (``collapsed``), since a difference against a collapsed run measures the collapse, not the
    activation; and for entries with several seeds, the paired test over the seeds where neither
    collapsed (Holm over those entries). Nothing collapses unless ``adversarial`` (see
    ``separation_sentence``)."""
    per_seed = {name: ev if isinstance(ev, list) else [ev] for name, ev in evals.items()}
    if baseline not in per_seed:
        return ""
    base = per_seed[baseline]
    seed_of = lambda i: first_seed + i
    parts = []
    by_common = {}  # entries with another number of seeds than the baseline: paired on the seeds both have
    for name, evs in per_seed.items():
        if name != baseline and len(evs) != len(base):
            by_common.setdefault(min(len(evs), len(base)), []).append(name)
    for common, names in sorted(by_common.items()):
        parts.append(f"{prose.listing(names)} {'is' if len(names) == 1 else 'are'} paired with {baseline} on "
                     f"seed{'s' if common > 1 else ''} {prose.listing([str(seed_of(i)) for i in range(common)])} "
                     "only, the seeds both have.")
    several = [name for name, evs in per_seed.items() if name != baseline and min(len(evs), len(base)) > 1]
    for name in several:
        tests = [stats.paired(stats.as_mask(a["robust_images"], name), stats.as_mask(b["robust_images"], baseline))
                 for a, b in zip(per_seed[name], base)]
        parts.append(f"Seed by seed, {name} minus {baseline} is " + prose.listing(
            [f"{stats.format_diff(t)} (seed {seed_of(i)}, p = {t.p_value:.2g})" for i, t in enumerate(tests)])
            + " points.")
    run = lambda name, i: name if len(per_seed[name]) == 1 else f"{name}'s seed {seed_of(i)}"
    down = [f"{run(name, i)} (robust {stats.format_interval(stats.wilson(stats.as_mask(ev['robust_images'])))}"
            f"%, clean {100 * ev['clean']:.1f}%)"
            for name, evs in per_seed.items() for i, ev in enumerate(evs) if adversarial and collapsed(ev)]
    if not down:
        return " ".join(parts)
    parts.append(f"Catastrophic overfitting (under {COLLAPSED:.0%} robust accuracy while clean accuracy is above "
                 f"chance) took {prose.listing(down)}; a difference against a collapsed run, pooled or not, "
                 "measures the collapse, not the activation.")
    kept = {}
    for name in several:
        seeds = [i for i, (a, b) in enumerate(zip(per_seed[name], base)) if not (collapsed(a) or collapsed(b))]
        if 0 < len(seeds) < min(len(per_seed[name]), len(base)):
            kept[name] = (seeds, stats.paired_seeds([per_seed[name][i]["robust_images"] for i in seeds],
                                                    [base[i]["robust_images"] for i in seeds]))
    p_holm = dict(zip(kept, stats.holm([t.p_value for _, t in kept.values()])))
    for name, (seeds, t) in kept.items():
        verdict = "separated" if p_holm[name] <= stats.ALPHA else "not separated"
        parts.append(f"Over seed{'s' if len(seeds) > 1 else ''} {prose.listing([str(seed_of(i)) for i in seeds])}, "
                     f"where neither collapsed, {name} minus {baseline} is "
                     f"{stats.format_diff(t)} points (McNemar p = {t.p_value:.2g}, Holm {p_holm[name]:.2g}): "
                     f"{verdict}.")
    if kept:
        parts.append(f"How often each activation collapses is another question, which {len(base)} seeds cannot answer.")
    return " ".join(parts)


def method_comparison(first: dict, second: dict, labels=("FGSM-RS", "N-FGSM"), key: str = "activation",
                      alpha: float = stats.ALPHA) -> tuple[pd.DataFrame, str]:
    """Two training methods, activation by activation, on the same images: each evaluation's clean
    and robust accuracy with intervals, and second minus first on robust accuracy (McNemar, Holm
    over the activations). ``first`` and ``second`` map a name to an evaluation record (the same
    seed). Returns the table and the sentence the chapter may say about it."""
    a, b = labels
    names = [name for name in second if name in first]
    if not names:
        return pd.DataFrame(columns=[key]), f"No activation was trained with both {a} and {b} here."
    tests = {name: stats.paired(second[name]["robust_images"], first[name]["robust_images"]) for name in names}
    p_holm = dict(zip(names, stats.holm([t.p_value for t in tests.values()])))
    rows = []
    for name in names:
        t = tests[name]
        rows.append({key: name, f"clean {a}": _clean_interval([first[name]]), f"clean {b}": _clean_interval([second[name]]),
                     f"robust {a}": stats.format_interval(stats.wilson(first[name]["robust_images"])),
                     f"robust {b}": stats.format_interval(stats.wilson(second[name]["robust_images"])),
                     f"robust {b} - {a} (points)": stats.format_diff(t),
                     "p (Holm)": f"{p_holm[name]:.3f}" if p_holm[name] >= 0.001 else "<0.001",
                     "separated": "yes" if p_holm[name] <= alpha else "no"})
    up = [n for n in names if p_holm[n] <= alpha and tests[n].diff > 0]
    down = [n for n in names if p_holm[n] <= alpha and tests[n].diff < 0]
    same = [n for n in names if p_holm[n] > alpha]
    parts = ([f"robust accuracy is higher with {b} than with {a} for {', '.join(up)}"] if up else []) + (
        [f"it is lower with {b} for {', '.join(down)}"] if down else []) + (
        [f"the data cannot separate {b} from {a} for {', '.join(same)}"] if same else [])
    n = len(first[names[0]]["robust_images"])
    sentence = f"On these {n} images, by the paired tests (McNemar, Holm, 5%): " + "; ".join(parts) + "."
    return pd.DataFrame(rows), sentence


def attack_sentence(masks: dict, alpha: float = stats.ALPHA) -> str:
    """Which of two attacks on the same model and images is stronger, from the paired test on their
    per-image robust masks (McNemar): the lower accuracy wins only where the test separates them."""
    (a, mask_a), (b, mask_b) = masks.items()
    test = stats.paired(mask_a, mask_b)
    n, diff = test.n, stats.format_diff(test)
    if test.p_value > alpha:
        return (f"On these {n} images the paired test (McNemar, 5%) cannot separate {a} from {b} "
                f"(difference {diff} points, p = {test.p_value:.2g}), so neither is the stronger attack here.")
    stronger, weaker = (a, b) if test.diff < 0 else (b, a)
    return (f"{stronger} is the stronger attack on these {n} images: accuracy under {a} minus under {b} is "
            f"{diff} points (McNemar p = {test.p_value:.2g}).")
