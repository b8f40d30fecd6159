"""The audit's foundation: each rebuilt model must reproduce its SavedModel."""

import json

import numpy as np
import pytest

from kafnotes import thesis_models

# one of each kind of layer the rebuild maps: fixed activations, custom-gradient Swish, KAF, KAF_Free
NAMES = ["resnet20_relu_ocrob", "resnet20_swish_ocrob_lrf", "resnet20_kaf_ocrob_lrfinder",
         "resnet20_kafs_freedictkb_ocrob_lrfinder"]


@pytest.mark.parametrize("name", NAMES)
def test_rebuild_matches_the_saved_model(name, sample):
    model, saved = thesis_models.rebuild(name)
    result = thesis_models.compare(model, saved, sample.x_test[:100])
    # The originals ran in float16 (about 3 decimal digits); float32 rebuilds differ by that much.
    assert result["max_abs_prob_diff"] < 0.02, result
    assert result["label_agreement"] >= 0.99, result


@pytest.mark.parametrize("name", ["resnet20_kafrelu_ocrob_lrfinder", "resnet20_kafelu_ocrob_lrf"])
def test_ridge_initialised_kafs_match_only_in_float16(name, sample):
    # Their mixing coefficients reach |alpha| ~ 73, so float16 rounding moves their outputs a lot:
    # a float16 rebuild must reproduce the SavedModel far better than a float32 one does.
    x = sample.x_test[:100]
    m16, saved = thesis_models.rebuild(name, precision="mixed_float16")
    m32, _ = thesis_models.rebuild(name)
    half, full = thesis_models.compare(m16, saved, x), thesis_models.compare(m32, saved, x)
    assert half["label_agreement"] >= 0.93 and half["mean_abs_prob_diff"] < 0.006, half
    assert full["mean_abs_prob_diff"] > 2 * half["mean_abs_prob_diff"], (full, half)


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="precision must be"):
        thesis_models.rebuild("resnet20_relu_ocrob", precision="bfloat16")


def test_models_are_paired_against_the_relu_trained_like_the_kaf_rows():
    everything = list(thesis_models.PUBLISHED)
    assert thesis_models.reference_relu(everything) == "resnet20_relu_ocrob_lrf"  # not the first ReLU listed
    assert thesis_models.reference_relu(["resnet20_kaf_ocrob_lrfinder", "resnet20_relu_ocrob"]) == "resnet20_relu_ocrob"
    assert thesis_models.reference_relu(["resnet20_kaf_ocrob_lrfinder"]) is None
    assert "_lrf" in thesis_models.REFERENCE_RELU and thesis_models.PUBLISHED[thesis_models.REFERENCE_RELU][0] == "relu"


def test_every_published_model_has_a_checksum():
    sums = thesis_models.checksums()
    assert set(sums) == {f"{n}.zip" for n in thesis_models.PUBLISHED}
    assert all(len(d) == 64 for d in sums.values())


def test_checksum_mismatch_and_unknown_names_are_refused(tmp_path):
    (tmp_path / "resnet20_relu_ocrob.zip").write_bytes(b"not the model")
    with pytest.raises(thesis_models.ThesisModelError, match="does not match its published sha256"):
        thesis_models.zip_path("resnet20_relu_ocrob", folder=tmp_path)
    with pytest.raises(thesis_models.ThesisModelError, match="unknown published model"):
        thesis_models.zip_path("resnet18")


def test_rebuilt_model_is_differentiable():
    import tensorflow as tf
    model, _ = thesis_models.rebuild("resnet20_swish_ocrob_lrf")  # its SavedModel cannot do this
    x = tf.constant(np.random.default_rng(0).random((2, 32, 32, 3)).astype(np.float32))
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(model(x))
    assert np.isfinite(tape.gradient(loss, x).numpy()).all()


def test_the_thesis_trained_with_plain_sgd_as_the_book_does():
    """The optimizer settings are in no table of the thesis; its published models carry them."""
    from kafnotes.training import TrainConfig
    for name in thesis_models.PUBLISHED:
        opt = thesis_models.optimizer_config(name)
        assert opt["class_name"] == "SGD", name
        assert opt["config"]["momentum"] == TrainConfig().momentum == 0.0, name
        assert opt["config"]["nesterov"] is False, name


def test_training_recipe_reads_a_saved_schedule_or_the_last_rate():
    cyclic = thesis_models.training_recipe("resnet20_kafrelu_ocrob_lrfinder")
    assert cyclic["learning rate"] == "cyclic 0.01 -> 0.8, half-cycle 40 epochs"  # the thesis' ResNet20 range
    last = thesis_models.training_recipe("resnet20_relu_ocrob")
    assert last["learning rate"].endswith("at the end (schedule not saved)") and last["momentum"] == 0.0


def test_an_audit_is_recorded_and_reused_and_keyed_by_its_attack(sample, tmp_path):
    x, y = sample.x_test[:8], sample.y_test[:8]
    attack = dict(eps=8 / 255, alpha=2 / 255, steps=2, restarts=1, apgd_steps=2, runs=tmp_path)
    first = thesis_models.audit("resnet20_relu_ocrob", x, y, **attack)
    assert first["pgd"] <= first["clean"] and first["worst"] <= min(first["pgd"], first["apgd_ce"], first["apgd_dlr"])
    assert set(first["checks"]) and all({"value", "ok"} == set(c) for c in first["checks"].values())
    # every accuracy the chapter pairs keeps its per-image mask, and the mask gives the accuracy
    for key in ("clean", "pgd", "worst", "fgsm", "pgd_predicted"):
        mask = first[f"{key}_images"]
        assert len(mask) == 8 and mask.count("1") / 8 == pytest.approx(first[key]), key
    (record,) = (tmp_path / "published").glob("*.json")
    # the second call reads the record: mark it and see the mark come back
    data = json.loads(record.read_text())
    data["result"]["clean"] = -1.0
    record.write_text(json.dumps(data))
    assert thesis_models.audit("resnet20_relu_ocrob", x, y, **attack)["clean"] == -1.0
    # another attack, or other images, is another record
    thesis_models.audit("resnet20_relu_ocrob", x, y, **{**attack, "steps": 3})
    thesis_models.audit("resnet20_relu_ocrob", x[:4], y[:4], **attack)
    assert len(list((tmp_path / "published").glob("*.json"))) == 3
    # the checklist on the first 4 images is another record too; on all 8 it is the first one
    assert thesis_models.audit("resnet20_relu_ocrob", x, y, checklist_n=8, **attack)["clean"] == -1.0
    subset = thesis_models.audit("resnet20_relu_ocrob", x, y, checklist_n=4, **attack)
    assert len(list((tmp_path / "published").glob("*.json"))) == 4 and len(subset["pgd_images"]) == 8
    with pytest.raises(thesis_models.ThesisModelError, match="unknown published model 'resnet20_tanh'"):
        thesis_models.audit("resnet20_tanh", x, y, **attack)


def test_a_saved_model_is_attacked_as_published_or_says_why_it_cannot_be(sample, tmp_path):
    x, y = sample.x_test[:20], sample.y_test[:20]
    relu = thesis_models.attack_as_published("resnet20_relu_ocrob", x, y, steps=2, runs=tmp_path)
    saved = thesis_models.AsPublished("resnet20_relu_ocrob")
    assert len(relu["robust_images"]) == 20 and relu["robust"] <= relu["clean"]
    assert relu["clean_images"] == "".join("1" if p == t else "0" for p, t in
                                           zip(np.argmax(saved(x).numpy(), -1), y))  # the saved graph's own labels
    swish = thesis_models.attack_as_published("resnet20_swish_ocrob_lrf", x, y, steps=2, runs=tmp_path)
    assert "No gradient defined" in swish["error"] and "robust_images" not in swish  # its custom gradient was not saved


def test_a_published_models_pgd_is_recorded_and_equals_the_attack_it_replaces(sample, tmp_path, monkeypatch):
    from kafnotes import attacks, records
    x, y = sample.x_test[:8], sample.y_test[:8]
    model = thesis_models.rebuild("resnet20_relu_ocrob")[0]
    attack = dict(eps=4 / 255, alpha=1 / 255, steps=2)
    first = thesis_models.pgd("resnet20_relu_ocrob", x, y, rebuilt=model, runs=tmp_path, **attack)
    _, robust = attacks.pgd(model, x, y, restarts=1, seed=0, **attack)
    assert first["robust_images"] == "".join("1" if r else "0" for r in robust)
    monkeypatch.setenv(records.ENV_RECORDS_ONLY, "1")
    assert thesis_models.pgd("resnet20_relu_ocrob", x, y, runs=tmp_path, **attack) == first  # no model needed
    with pytest.raises(records.MissingRecord):
        thesis_models.pgd("resnet20_relu_ocrob", x, y, runs=tmp_path, **{**attack, "steps": 3})


def test_the_saved_graph_is_attacked_on_the_first_saved_n_images_and_paired_on_them(monkeypatch):
    seen = []
    monkeypatch.setattr(thesis_models, "attack_as_published", lambda name, x, y, **kw: seen.append(len(x)) or {})
    x, y = np.zeros((10, 32, 32, 3)), np.zeros(10, int)
    P = {"eps": 8 / 255, "pgd_alpha": 2 / 255, "pgd_steps": 5, "seed": 0}
    for saved_n, expected in ((None, 10), (4, 4), (50, 10)):
        thesis_models.as_published_at("resnet20_relu_ocrob", x, y, {**P, "saved_n": saved_n})
        assert seen[-1] == expected
    with pytest.raises(ValueError, match="saved_n=0: give a positive number"):
        thesis_models.as_published_at("resnet20_relu_ocrob", x, y, {**P, "saved_n": 0})
    # as saved: 3 of 4 robust; the rebuild: 1 of those 4 (its other 6 images play no part)
    test = thesis_models.saved_against_rebuild({"pgd_images": "1000111111"}, {"robust_images": "1110"})
    assert test.n == 4 and test.diff == pytest.approx(0.5)


def test_the_curves_attack_each_step_count_and_eps_with_pgd(monkeypatch):
    calls = []
    monkeypatch.setattr(thesis_models, "pgd", lambda name, x, y, **kw: calls.append(kw) or {"robust": kw["steps"] / 100})
    P = {"name": "cpu", "eps": 8 / 255, "pgd_alpha": 2 / 255, "pgd_steps": 20, "seed": 3}
    curves = thesis_models.curves("resnet20_relu_ocrob", None, None, P)
    assert curves["steps"] == [1, 2, 5, 10, 20, 50] and curves["by_steps"] == [0.01, 0.02, 0.05, 0.1, 0.2, 0.5]
    assert curves["eps"] == [2, 4, 8, 12, 16] and curves["by_eps"] == [0.2] * 5
    assert calls[0] == {"seed": 3, "rebuilt": None, "runs": None, "eps": 8 / 255, "alpha": 2 / 255, "steps": 1}
    assert [c["alpha"] * 255 for c in calls[6:]] == pytest.approx([0.5, 1, 2, 3, 4])  # eps/4, at least 0.5/255
    assert thesis_models.curves("resnet20_relu_ocrob", None, None, {**P, "name": "smoke"})["steps"] == [1, 2, 5, 10]
