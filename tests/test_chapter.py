from types import SimpleNamespace

from kafnotes import chapter


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
