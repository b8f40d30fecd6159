import numpy as np
import pytest

from kafnotes import chapter, findings, thesis_models


def _mask(bits) -> str:
    return "".join("1" if b else "0" for b in bits)


def _ev(robust, clean=None):
    clean = robust if clean is None else clean
    return {"clean": float(np.mean(clean)), "robust": float(np.mean(robust)), "clean_images": _mask(clean),
            "robust_images": _mask(robust)}


def test_the_claim_is_table_7_2_against_relu_and_names_a_non_kaf_leader():
    gaps = findings.claim()
    assert gaps["kaf"] == pytest.approx(52.23 - 50.17) and "relu" not in gaps
    said = findings.claim_sentence(gaps)
    assert "+1.3 to +2.6 points above ReLU" in said  # kaf_relu 51.44 and kaf_elu 52.76 against 50.17
    assert "swish's (+3.7)" in said  # Table 7.2's top robust accuracy is Swish, not a KAF


def test_retrained_sentence_pools_seeds_and_ranks_only_what_the_test_separates():
    rng = np.random.default_rng(0)
    base = [rng.random(1000) < 0.3 for _ in range(2)]
    better = [b.copy() for b in base]
    for b in better:
        b[np.flatnonzero(~b)[:40]] = True  # kaf right on 40 more images per seed
    evals = {"relu": [_ev(b) for b in base], "kaf": [_ev(b) for b in better], "elu": [_ev(b) for b in base]}
    said = findings.retrained_sentence(evals, {"pgd_steps": 20})
    assert "(2 seeds each, PGD-20" in said and "kaf minus relu is +4.0 [" in said
    assert "place kaf above relu" in said and "cannot separate elu from relu" in said
    assert "Seed by seed, kaf minus relu is +4.0 [" in findings.retrained_sentence(evals, {"pgd_steps": 20})
    assert "(seed 7, p = " in findings.retrained_sentence(evals, {"pgd_steps": 20}, first_seed=6)


def test_retrained_sentence_does_not_lead_with_a_difference_a_collapsed_seed_drives():
    rng = np.random.default_rng(2)
    clean = rng.random(1000) < 0.6
    base = rng.random(1000) < 0.3
    evals = {"relu": [_ev(base, clean), _ev(np.zeros(1000, bool), clean)], "kaf": [_ev(base, clean)] * 2}
    said = findings.retrained_sentence(evals, {"pgd_steps": 20})
    assert "pooled over the seeds, a comparison that holds a collapsed run (below)." in said
    assert "kaf minus relu is +" not in said.split("Seed by seed")[0]  # no pooled difference up front
    assert "Over seed 0, where neither collapsed, kaf minus relu is +0.0 [" in said


def test_retrained_sentence_names_the_runs_chapter_5_flags():
    rng = np.random.default_rng(1)
    base = rng.random(1000) < 0.3
    evals = {"relu": [{**_ev(base), "note": ""}, {**_ev(base), "note": "overfitting (guard PGD-5 14% at epoch 3)"}],
             "swish": [{**_ev(base), "note": "overfitting (FGSM train acc 60% against PGD-5 16%)"}],
             "kaf": [{**_ev(base), "note": ""}] * 2}
    said = findings.retrained_sentence(evals, {"pgd_steps": 20})
    assert ("Chapter 5's note column flags relu (seed 1: overfitting (guard PGD-5 14% at epoch 3)) and swish "
            "(overfitting (FGSM train acc 60% against PGD-5 16%)).") in said
    assert said.endswith("measures what went wrong in its training, not its activation.")
    healthy = {name: [{**e, "note": ""} for e in evs] for name, evs in evals.items()}
    assert "note column" not in findings.retrained_sentence(healthy, {"pgd_steps": 20})


def _published(n=400, seed=0):
    """A catastrophically overfit ReLU, a better ReLU, and a KAF close to the better one."""
    rng = np.random.default_rng(seed)
    good = rng.random(n) < 0.4
    kaf = good.copy()
    kaf[np.flatnonzero(~good)[:3]] = True
    zero = np.zeros(n, bool)
    inflated = good.copy()
    inflated[np.flatnonzero(~good)[:60]] = True  # predicted-label PGD leaves 60 more images standing

    def model(robust, saved=None):
        audit = {"clean": 0.8, "pgd": float(robust.mean()), "pgd_images": _mask(robust), "pgd_predicted_images": _mask(inflated)}
        return {"audit": audit, "autoattack": _ev(robust),
                "as_saved": {"error": "No gradient defined"} if saved is None else _ev(saved)}

    return {"resnet20_relu_ocrob": model(zero, saved=good), "resnet20_relu_ocrob_lrf": model(good, saved=good),
            "resnet20_kaf_ocrob_lrfinder": model(kaf)}


def test_published_sentence_ranks_against_each_relu_and_discounts_the_overfit_one():
    said = findings.published_sentence(_published())
    assert "resnet20_relu_ocrob scores 0.0 [" in said and "resnet20_relu_ocrob_lrf scores" in said
    # against the overfit ReLU everything would be above: nothing is ranked against it; against the sound
    # one the KAF is not separated
    assert "above resnet20_relu_ocrob" not in said
    assert "cannot separate resnet20_kaf_ocrob_lrfinder from resnet20_relu_ocrob_lrf" in said
    assert ("resnet20_relu_ocrob scores 0.0 [0.0, 1.0] under standard AutoAttack and is under 5% against PGD "
            "(catastrophic overfitting, chapter 7), so no model is ranked against it.") in said
    # the like-for-like ReLU (trained with the range finder, as the KAF rows) is the one the sentence leads with
    assert said.startswith("resnet20_relu_ocrob_lrf scores")


def test_published_sentence_without_a_relu_model_says_so():
    results = {k: v for k, v in _published().items() if "kaf" in k}
    assert "No published ReLU model" in findings.published_sentence(results)


def test_bugs_sentence_gives_each_gap_with_its_range_and_significance():
    said = findings.bugs_sentence(_published())
    # predicted labels: +15 points for the sound models (60 of 400), +37.5 and more for the overfit one
    assert said.startswith("Attacking the models' own predictions instead of the labels adds +14.2 [")
    assert "points of PGD accuracy (resnet20_relu_ocrob)" in said and "a difference in 3 of 3 models" in said
    # as saved: only the two ReLU models can be differentiated; the overfit one gains 40 points
    assert "as saved (float16, softmax head) instead of its logits adds +0.0 [" in said and "a difference in 1 of 2 models." in said


def test_published_table_keeps_every_correction_with_its_interval():
    table = findings.published_table(_published()).set_index("model")
    assert table.loc["resnet20_relu_ocrob", "Table 7.2 PGD-50-10"] == "50.2"
    assert table.loc["resnet20_relu_ocrob", "AutoAttack"].startswith("0.0 [0.0, ")
    assert table.loc["resnet20_kaf_ocrob_lrfinder", "PGD, as saved"] == "cannot be differentiated"


def test_the_closing_chapter_asks_for_chapter_5_and_7s_own_configs():
    P = {"name": "study", "adv_epochs": 6, "batch_size": 128, "eps": 8 / 255, "pgd_alpha": 2 / 255, "pgd_steps": 20,
         "pgd_restarts": 1, "apgd_steps": 100, "seed": 3, "adv_lr_min": 0.0, "adv_lr_max": 0.2, "adv_momentum": 0.9,
         "fgsm_alpha": None}
    built = chapter.resnet20_config("kaf", P, seed=1, variant="he", method="n_fgsm")
    assert built == chapter.adversarial_config("resnet20", "kaf", P, augment=True, lr_min=0.0, lr_max=0.2,
                                               momentum=0.9, fgsm_alpha=None, arch_options={"variant": "he"},
                                               seed=1, method="n_fgsm")
    assert thesis_models.selection({"name": "smoke"}) == ["resnet20_relu_ocrob", "resnet20_kaf_ocrob_lrfinder"]
    assert thesis_models.selection(P) == list(thesis_models.PUBLISHED)


def test_audit_at_passes_the_profile_attack(monkeypatch):
    seen = {}
    monkeypatch.setattr(thesis_models, "audit", lambda name, x, y, **kw: seen.update(kw) or {})
    thesis_models.audit_at("resnet20_relu_ocrob", None, None, {"eps": 0.03, "pgd_alpha": 0.01, "pgd_steps": 7,
                                                              "pgd_restarts": 2, "apgd_steps": 100, "diagnostic_apgd_steps": 9,
                                                              "seed": 4, "checklist_n": 50})
    assert seen == {"eps": 0.03, "alpha": 0.01, "steps": 7, "restarts": 2, "apgd_steps": 9, "seed": 4,
                    "rebuilt": None, "runs": None, "checklist_n": 50}


def test_the_saved_graph_on_fewer_images_is_paired_with_the_rebuild_on_those_and_labelled():
    results = _published()
    for r in results.values():  # the as-saved PGD ran on the first 100 of the 400 images (saved_n)
        if "robust_images" in r["as_saved"]:
            r["as_saved"] = {k: v[:100] if k.endswith("_images") else v for k, v in r["as_saved"].items()}
        r["as_saved"].setdefault("clean_images", "1" * 100)
    said = findings.bugs_sentence(results)
    assert "as saved (float16, softmax head) instead of its logits adds +0.0 [" in said  # the sound ReLU, same images
    table = findings.published_table(results).set_index("model")
    assert "PGD, as saved (first 100 images)" in table.columns and "PGD, as saved" not in table.columns
