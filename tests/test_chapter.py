from types import SimpleNamespace

import numpy as np

from kafnotes import chapter
from kafnotes.profiles import get_profile


def _record(losses, diverged=False, early=None):
    return {"flags": {"diverged": diverged, "early_stopped_epoch": early},
            "history": [{"loss": v} for v in losses]}


def test_training_note_names_what_went_wrong():
    assert chapter.training_note(_record([3.4, 2.9, 2.1])) == ""
    assert chapter.training_note(_record([3.5, 14.9])) == ""  # bad, but not an explosion
    assert chapter.training_note(_record([37.5, 4.8e8])) == "loss exploded (to 4.8e+08)"
    assert chapter.training_note(_record([3.85, 158.3, 19.3])) == "loss exploded (to 1.6e+02)"
    assert chapter.training_note(_record([3.4, float("nan")], diverged=True)) == "diverged"
    # the guard keeps epochs 1..2 and rolls back the third, so the third's loss does not count
    assert chapter.training_note(_record([3.4, 2.9, 90.0], early=2)) == "early stop (epoch 2)"
    assert chapter.training_note(_record([3.4, 40.0, 2.0], early=2)) == "loss exploded (to 40)"


def test_a_row_at_chance_says_so():
    exploded, fine = SimpleNamespace(record=_record([37.5, 4.8e8])), SimpleNamespace(record=_record([3.4, 2.1]))
    assert chapter.results_row(exploded, {"clean": 0.112, "robust": 0.0}, activation="kaf") == {
        "activation": "kaf", "clean": 0.112, "robust": 0.0, "note": "loss exploded (to 4.8e+08); at chance"}
    assert chapter.results_row(fine, {"clean": 0.35, "robust": 0.1})["note"] == ""
    assert chapter.results_row(fine, {"clean": 0.14, "robust": 0.1})["note"] == "at chance"
    assert chapter.results_row(fine, {"clean": 15 / 100, "robust": 0.1})["note"] == ""  # 5 points above


def test_the_note_columns_sentence_names_every_flagged_run_and_why():
    exploded, fine = SimpleNamespace(record=_record([37.5, 4.8e8])), SimpleNamespace(record=_record([3.4, 2.1]))
    notes = {"relu": chapter.run_note(fine, {"clean": 0.6, "robust": 0.3}),
             "kaf": chapter.run_note(exploded, {"clean": 0.112, "robust": 0.0}),
             "elu": chapter.run_note(fine, {"clean": 0.12, "robust": 0.1})}
    assert chapter.flagged_sentence(notes, lead="Here, the note column") == (
        "Here, the note column flags kaf (loss exploded (to 4.8e+08); at chance) and elu (at chance).")
    assert chapter.flagged_sentence({"relu": "", "kaf": ""}) == "In this run the note column flags no run."


def _ev(clean, robust):
    mask = lambda bits: "".join("1" if b else "0" for b in bits)
    return {"clean": sum(clean) / len(clean), "robust": sum(robust) / len(robust), "clean_images": mask(clean),
            "robust_images": mask(robust)}


def _three_models(seed):
    """relu; kaf, right on 40 more of 1000 images (separable); elu, on 3 more (not separable)."""
    import numpy as np
    rng = np.random.default_rng(seed)
    base = rng.random(1000) < 0.3
    better, close = base.copy(), base.copy()
    better[np.flatnonzero(~base)[:40]] = True
    close[np.flatnonzero(~base)[:3]] = True
    clean = rng.random(1000) < 0.6
    return base, {"relu": _ev(clean, base), "kaf": _ev(clean, better), "elu": _ev(clean, close)}


def test_intervals_mark_only_what_the_paired_test_separates():
    base, evals = _three_models(0)
    table = chapter.intervals(evals).set_index("activation")
    assert table.loc["kaf", "separated from relu"] == "yes" and table.loc["elu", "separated from relu"] == "no"
    assert table.loc["relu", "robust - relu (points)"] == "(baseline)"
    assert table.loc["kaf", "robust [95% CI]"].startswith(f"{(base.sum() + 40) / 10:.1f} [")
    assert chapter.separated(evals) == {"above": ["kaf"], "below": [], "not separated": ["elu"]}


def test_intervals_pool_seeds_and_show_their_spread():
    evals = {"relu": [_ev([1, 0, 1, 0], [1, 0, 0, 0]), _ev([1, 1, 1, 0], [1, 1, 0, 0])],
             "kaf": [_ev([1, 0, 1, 1], [1, 1, 1, 0]), _ev([1, 1, 1, 1], [1, 1, 1, 1])]}
    table = chapter.intervals(evals).set_index("activation")
    assert table.loc["relu", "robust over seeds"] == "25.0-50.0 (2 seeds)"
    assert table.loc["kaf", "robust [95% CI]"].startswith("87.5 ")
    bounds = chapter.interval_bounds(evals).set_index("activation")
    assert bounds.loc["relu", "robust_low"] < bounds.loc["relu", "robust"] < bounds.loc["relu", "robust_high"]
    assert chapter.mean_over_seeds(evals["relu"]) == {"clean": 0.625, "robust": 0.375}


def test_a_table_mixing_one_and_two_seeds_says_which_rows_have_one():
    relu_seeds = [_ev([1, 1, 1, 0], [1, 0, 0, 0]), _ev([1, 1, 1, 0], [1, 1, 0, 0])]
    table = chapter.intervals({"relu": relu_seeds, "elu": _ev([1, 1, 0, 0], [1, 1, 1, 0])}).set_index("activation")
    assert table["robust over seeds"].to_dict() == {"relu": "25.0-50.0 (2 seeds)", "elu": "(1 seed)"}
    # elu's one seed is paired with relu's seed 0 only: 75% against 25% on the same four images
    assert table.loc["elu", "robust - relu (points)"].startswith("+50.0 ")


def test_the_checklist_runs_on_checklist_n_images_and_the_caption_says_so():
    import pytest
    P = get_profile("study")
    assert chapter.checklist_images(P["checklist_n"], 2000) == 500 and chapter.checklist_images(None, 2000) == 2000
    assert chapter.checklist_said(P, 2000) == "; 'checks passed': the checklist on the first 500 of the 2000 images"
    assert chapter.checklist_said(P, 300) == "" and chapter.checklist_said(get_profile("smoke"), 100) == ""
    with pytest.raises(ValueError, match="checklist_n=0"):
        chapter.checklist_images(0, 100)


def test_records_without_clean_masks_get_an_interval_from_the_count():
    old = {"clean": 0.5, "robust_images": "1100"}
    assert chapter.intervals({"relu": old}, baseline=None).loc[0, "clean [95% CI]"].startswith("50.0 [")


def test_with_intervals_formats_each_accuracy_from_its_count():
    import pandas as pd
    df = pd.DataFrame({"model": ["a", "b"], "PGD": [41.4, None]})
    shown = chapter.with_intervals(df, ["PGD"], 500)
    assert shown.loc[0, "PGD"].startswith("41.4 [37.") and shown.loc[1, "PGD"] == ""
    assert df.loc[0, "PGD"] == 41.4  # the numbers stay for plots


def test_unrounded_percentages_keep_their_count_on_2000_images():
    import pandas as pd
    from kafnotes import stats
    mask = np.arange(2000) < 1551  # 77.55%: rounded to 77.6 it would read as 1552 images
    exact = stats.format_interval(stats.wilson(mask))
    df = pd.DataFrame({"model": ["a"], "clean": [mask.mean()]})
    assert chapter.with_intervals(chapter.percent(df, ["clean"], digits=None), ["clean"], 2000).loc[0, "clean"] == exact
    assert chapter.with_intervals(chapter.percent(df, ["clean"]), ["clean"], 2000).loc[0, "clean"] != exact
    assert chapter.percent(df, ["clean"]).loc[0, "clean"] == 77.6  # the default still rounds, for plain tables


def test_the_ranking_sentence_says_only_what_the_test_supports():
    _, evals = _three_models(1)
    said = chapter.separation_sentence(evals)
    assert "place kaf above relu." in said and "cannot separate elu from relu" in said
    said = chapter.separation_sentence({"relu": evals["relu"], "elu": evals["elu"]})
    assert "separate nothing from relu" in said


def test_a_row_over_seeds_names_each_flagged_seed():
    healthy = SimpleNamespace(record={**_record([3.4, 2.1]), "config": {"seed": 0}})
    exploded = SimpleNamespace(record={**_record([37.5, 4.8e8]), "config": {"seed": 1}})
    row = chapter.results_row([healthy, exploded], [{"clean": 0.6, "robust": 0.3}, {"clean": 0.112, "robust": 0.0}])
    assert row["note"] == "seed 1: loss exploded (to 4.8e+08); at chance"
    assert row["clean"] == (0.6 + 0.112) / 2 and row["robust"] == 0.15
    assert chapter.results_row([healthy, healthy], [{"clean": 0.6, "robust": 0.3}] * 2)["note"] == ""
    try:
        chapter.results_row([healthy, exploded], [{"clean": 0.6, "robust": 0.3}])
    except ValueError as err:
        assert "one evaluation per run (got 2 runs, 1 evaluations)" in str(err)
    else:
        raise AssertionError("a missing evaluation must fail")


def _seeds(collapse_relu_seed1: bool):
    """relu and kaf with two seeds, elu with one; kaf right on 6 images relu gets wrong and wrong on 2
    it gets right, of 1000 (not separable); relu's seed 1 at 0% robust (collapsed) or like kaf's."""
    rng = np.random.default_rng(3)
    clean = rng.random(1000) < 0.6
    base = [rng.random(1000) < 0.3 for _ in range(2)]
    kaf = [b.copy() for b in base]
    for k, b in zip(kaf, base):
        k[np.flatnonzero(~b)[:6]] = True
        k[np.flatnonzero(b)[:2]] = False
    relu = [base[0], np.zeros(1000, bool) if collapse_relu_seed1 else base[1]]
    return {"relu": [_ev(clean, m) for m in relu], "kaf": [_ev(clean, m) for m in kaf], "elu": [_ev(clean, base[0])]}


def test_the_ranking_sentence_shows_what_pooling_over_seeds_hides():
    said = chapter.separation_sentence(_seeds(collapse_relu_seed1=True), first_seed=4)
    # the pooled test places kaf above relu, driven by relu's collapsed seed: the sentence does not rank them
    assert "kaf above relu" not in said and "rank nothing against relu" not in said
    assert "The paired test of kaf against relu pairs a collapsed run (below), so it ranks nothing." in said
    assert "elu is paired with relu on seed 4 only, the seeds both have." in said
    assert "Seed by seed, kaf minus relu is +0.4 [" in said and "(seed 4, p = " in said and "(seed 5, p = " in said
    assert "took relu's seed 5 (robust 0.0 [0.0, 0.4]%, clean" in said
    assert "Over seed 4, where neither collapsed, kaf minus relu is +0.4 [" in said and ": not separated." in said
    healthy = chapter.seeds_sentence(_seeds(collapse_relu_seed1=False))
    assert "Seed by seed" in healthy and "Catastrophic" not in healthy and "where neither collapsed" not in healthy
    one_seed = {name: evs[:1] for name, evs in _seeds(collapse_relu_seed1=True).items()}
    assert chapter.seeds_sentence(one_seed) == ""
    assert chapter.separation_sentence(one_seed) == chapter.separation_sentence(
        {name: evs[0] for name, evs in one_seed.items()})


def test_a_collapsed_single_run_is_named_and_not_ranked_against():
    seeds = _seeds(collapse_relu_seed1=True)
    evals = {"relu": seeds["relu"][1], "kaf": seeds["kaf"][1], "elu": seeds["elu"][0]}  # relu's run collapsed
    said = chapter.separation_sentence(evals)
    assert said.startswith("On robust accuracy, the paired tests (McNemar, Holm, 5%) on these 1000 images rank "
                           "nothing against relu. The paired test of kaf, elu against relu pairs a collapsed run")
    assert "took relu (robust 0.0 [0.0, 0.4]%, clean 60.3%)" in said
    # against a sound baseline, the collapsed entry is the one not ranked, and the others still are
    evals = {"kaf": seeds["kaf"][1], "relu": seeds["relu"][1], "elu": seeds["elu"][0]}
    said = chapter.separation_sentence(evals, baseline="kaf")
    assert "The paired test of relu against kaf pairs a collapsed run" in said and "relu below kaf" not in said
    assert chapter.collapsed({"clean": 0.6, "robust_images": "0" * 99 + "1"})  # masks suffice (chapter 7's)
    standard = chapter.separation_sentence(evals, baseline="kaf", adversarial=False)  # never robust: no collapse
    assert "collapse" not in standard and "relu below kaf" in standard


def test_collapse_needs_a_model_that_learned():
    assert chapter.collapsed({"clean": 0.66, "robust": 0.0})
    assert not chapter.collapsed({"clean": 0.12, "robust": 0.0})  # at chance: never learned, nothing collapsed
    assert not chapter.collapsed({"clean": 0.62, "robust": 0.067})  # overfit, but not to under 5%
    # a worst-case entry carries one attack's accuracy beside its mask: the mask, which the tests read, decides
    assert chapter.collapsed({"clean": 0.62, "robust": 0.067, "robust_images": "0" * 99 + "1"})
    assert not chapter.collapsed({"clean": 0.62, "robust": 0.01, "robust_images": "0" * 90 + "1" * 10})


def _guarded(rows, n_train=50000, batch_size=128):
    history = [{"epoch": i + 1, "loss": 2.0, "train_acc": t, "guard_pgd5": g / 128} for i, (t, g) in enumerate(rows)]
    return {"flags": {"diverged": False, "early_stopped_epoch": None}, "history": history,
            "config": {"batch_size": batch_size}, "data": {"n_train": n_train}}


def test_gradual_overfitting_is_flagged_when_the_guard_slides_while_fgsm_accuracy_rises():
    # the cpu profile's ReLU ResNet20: PGD-5 drifts from 16% to 6% over two epochs, no 20-point fall
    sliding = _guarded([(0.22, 13), (0.25, 20), (0.29, 9), (0.31, 8)], n_train=5000)
    # the same slide in a model whose FGSM accuracy stayed near chance says nothing about overfitting
    assert chapter.training_note(_guarded([(0.12, 18), (0.16, 3)])) == ""
    note = chapter.training_note(sliding)
    assert note.startswith("overfitting (guard PGD-5 16% at epoch 2, 6% at 4")
    # the same slide while FGSM accuracy falls too is a worse model, not overfitting
    assert "guard" not in chapter.training_note(_guarded([(0.31, 20), (0.29, 9), (0.25, 8)], n_train=5000))
    # a healthy run: both rise together
    assert chapter.training_note(_guarded([(0.18, 25), (0.25, 29), (0.32, 33)])) == ""


def test_fgsm_accuracy_far_above_the_guard_is_flagged():
    # the study profile's ReLU ResNet20: 65% against its own FGSM, 0% against PGD-5
    assert "FGSM train acc 65% against PGD-5 0%" in chapter.training_note(_guarded([(0.60, 0), (0.65, 0)]))
    assert chapter.training_note(_guarded([(0.30, 33), (0.32, 33)])) == ""  # 32% vs 26%: within the gap
    assert chapter.training_note(_guarded([(0.12, 0), (0.15, 0)])) == ""  # near chance: nothing to overfit


def test_method_comparison_pairs_each_activation_with_itself():
    import numpy as np
    rng = np.random.default_rng(0)
    base = rng.random(1000) < 0.3
    better = base.copy()
    better[np.flatnonzero(~base)[:60]] = True  # 60 more images robust, none lost
    mask = lambda m: "".join("1" if v else "0" for v in m)
    ev = lambda m: {"clean": 0.6, "robust": m.mean(), "robust_images": mask(m)}
    table, sentence = chapter.method_comparison({"relu": ev(base), "kaf": ev(base)},
                                                {"relu": ev(better), "kaf": ev(base)})
    assert list(table["separated"]) == ["yes", "no"]
    assert table.iloc[0]["robust N-FGSM - FGSM-RS (points)"].startswith("+6.0")
    assert "robust accuracy is higher with N-FGSM than with FGSM-RS for relu" in sentence
    assert "cannot separate N-FGSM from FGSM-RS for kaf" in sentence
    empty, said = chapter.method_comparison({"relu": ev(base)}, {})
    assert empty.empty and said == "No activation was trained with both FGSM-RS and N-FGSM here."


def test_the_ranking_sentence_without_its_baseline_says_why_instead_of_failing():
    ev = {"clean": 0.5, "robust": 0.5, "robust_images": "0101"}
    assert chapter.separation_sentence({"kaf": ev}).startswith("No paired test here: it needs relu")


def test_the_stronger_attack_is_named_only_when_the_paired_test_separates():
    import numpy as np
    direct = np.ones(200, bool)
    transfer = direct.copy()
    transfer[:40] = False  # the transfer attack breaks 40 images the direct one did not
    said = chapter.attack_sentence({"direct": direct, "transfer": transfer})
    assert said.startswith("transfer is the stronger attack on these 200 images")
    assert "cannot separate direct from transfer" in chapter.attack_sentence({"direct": direct, "transfer": direct})


def test_the_scale_sentence_names_the_profile_and_warns_only_at_smoke():
    class Data:
        x_train, x_test = [0] * 500, [0] * 300
    P = dict(name="smoke", data_label="bundled sample", adv_epochs=2, n_eval=100)
    said = chapter.scale_sentence(P, Data())
    assert said.startswith("This run is at the `smoke` profile: 500 training images (bundled sample), 2 epochs, "
                           "evaluated on 100 test images.")
    assert "only that the pipeline runs" in said
    study = chapter.scale_sentence(dict(P, name="study", n_eval=None), Data())
    assert "evaluated on 300 test images." in study and "pipeline" not in study
    plain = chapter.scale_sentence(P, Data(), markdown=False)  # pasted as text into another page
    assert "`" not in plain and plain == said.replace("`", "")


def test_seeds_for_gives_the_activations_a_conclusion_turns_on_more_seeds():
    P = get_profile("smoke", seeds=1)
    P["seeds_for"] = {"relu": 2, "kaf": 3}
    assert list(chapter.seeds_of(P, "relu", seed=5)) == [5, 6] and list(chapter.seeds_of(P, "elu")) == [0]
    assert chapter.seeds_said(P, ["relu", "elu", "kaf"]) == "1 seed, 2 for relu, 3 for kaf"
    assert chapter.seeds_said(P, ["elu"]) == "1 seed(s)"
    assert list(chapter.seeds_of(get_profile("smoke", seeds=4), "relu")) == [0, 1, 2, 3]  # -p seeds wins when larger


def test_autoattack_stages_keep_the_ensembles_order_when_read_back_from_a_record():
    """A record read back from JSON has its stages sorted by name (clean after apgd_t); the table
    must still read clean, APGD-CE, APGD-T, Square from left to right."""
    import json
    from kafnotes.evaluation import mask_text
    masks = np.array([True, False, True, True])

    def record(square):
        fresh = {"accuracy": {"clean": 0.75, "apgd_ce": 0.5, "apgd_t": 0.5, "square": square},
                 "clean_images": mask_text(masks), "robust_images": mask_text(masks & (square > 0.3))}
        return json.loads(json.dumps(fresh, sort_keys=True))  # as records.write_json stores it

    table = chapter.autoattack_table({"relu": record(0.5), "kaf": record(0.25)})
    stages = [c for c in table.columns if c.startswith("after ")]
    assert stages == ["after clean", "after apgd_ce", "after apgd_t", "after square"]
    assert table.set_index("activation").loc["kaf", "after square"] == 25.0


def test_the_checklist_table_gives_each_accuracy_its_interval_and_leaves_other_values_as_they_are():
    from kafnotes import attacks, stats
    checks = {"relu": {"clean accuracy": {"value": 0.08, "ok": True}, "eps=0.5 drives accuracy to ~0": {"value": 0.13, "ok": False},
                       "adversarial inputs within the eps-ball": {"value": 0.0314, "ok": True},
                       "Square breaks no image that APGD left": {"value": 1.0, "ok": False}}}
    table = chapter.checklist_table(checks, 100)["relu"]
    assert table["clean accuracy"] == "✓ " + str(stats.wilson_count(8, 100)) and table["clean accuracy"].startswith("✓ 8.0 [")
    assert table["eps=0.5 drives accuracy to ~0"].startswith("✗ 13.0 [")
    assert table["adversarial inputs within the eps-ball"] == "✓ 0.031"
    assert table["Square breaks no image that APGD left"] == "✗ 1.000"
    names = ["clean accuracy", "robust <= clean", "more steps (40) do not help the model",
             "fewer steps (5) do not hurt it more", "smaller eps (0.0157) is not worse", "eps=0.5 drives accuracy to ~0"]
    assert all(attacks.is_accuracy_check(n) for n in names)
    assert not any(attacks.is_accuracy_check(n) for n in ("adversarial inputs within the eps-ball",
                                                          "adversarial inputs within [0, 1]",
                                                          "no image has a zero input gradient"))


def test_learning_curves_draw_each_accuracys_interval_as_a_band_when_told_its_images():
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.collections import PolyCollection
    from kafnotes import plots, stats
    from kafnotes.training import Run
    history = [{"epoch": 1, "test_acc": 0.2}, {"epoch": 2, "test_acc": 0.5}]
    run = Run(model=None, record={"history": history, "config": {"eval_images": 500, "batch_size": 128},
                                  "data": {"n_test": 300}}, path=None)
    assert run.test_images == 300 and run.guard_images == 128  # the test set is smaller than eval_images
    fig = plots.learning_curves({"relu": run.history}, n={"relu": run.test_images})
    (band,) = [c for c in fig.axes[0].collections if isinstance(c, PolyCollection)]
    lows = sorted(set(band.get_paths()[0].vertices[:, 1].round(6)))
    assert round(stats.wilson_count(60, 300).low, 6) in lows and round(stats.wilson_count(150, 300).high, 6) in lows
    assert not [c for c in plots.learning_curves({"relu": run.history}).axes[0].collections]  # no n, no band


def test_an_epochs_time_leaves_out_the_time_the_run_was_stopped():
    from kafnotes.training import Run
    record = {"seconds_per_epoch": [400.0, 900.0, 410.0]}
    assert Run(model=None, record=record, path=None).epoch_seconds == 570.0
    stopped = Run(model=None, record={**record, "paused_seconds": 480.0}, path=None)  # SIGSTOP in epoch 2
    assert stopped.epoch_seconds == 410.0
