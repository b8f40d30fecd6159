import numpy as np
import pytest

from kafnotes import analysis, attacks, models


def test_taps_perturbation_effect_and_kaf_shapes(sample):
    model = models.light_cnn("kaf")
    x, y = sample.x_test[:16], sample.y_test[:16]
    taps = analysis.activation_inputs(model, x)
    assert list(taps) == ["act1_1", "act1_2", "act2_1", "act2_2", "act_dense"]
    assert taps["act1_1"].shape == (16, 32, 32, 32) and taps["act_dense"].shape == (16, 128)
    x_adv, _ = attacks.pgd(model, x, y, steps=2, restarts=1)
    effect = analysis.perturbation_effect(model, x, x_adv)
    assert list(effect["layer"]) == list(taps) and (effect["l2_change"] > 0).all()
    zero = analysis.perturbation_effect(model, x, x)
    assert (zero["l2_change"] == 0).all()
    shapes = analysis.kaf_shapes(model)
    assert set(shapes) == set(taps) and shapes["act1_1"][1].shape[0] == 32


def test_norm_trace_marks_explosions_and_writes_tensorboard(sample, tmp_path):
    trace = analysis.norm_trace(models.resnet(20, "relu"), sample, steps=2, batch_size=16,
                                tensorboard_dir=tmp_path / "tb")
    assert set(trace["step"]) == {1, 2} and trace["depth"].max() == 22  # 20 layers + 2 projections
    assert trace["finite"].all() and analysis.first_nonfinite(trace) is None
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    bad = trace.copy()
    bad.loc[(bad["step"] == 2) & (bad["depth"] <= 3), ["grad_norm", "finite"]] = [np.nan, False]
    assert analysis.first_nonfinite(bad) == {"step": 2, "layers": 3, "deepest_layer": "s1b1_conv2",
                                             "shallowest_layer": "conv0"}


def test_a_resnet_norm_trace_is_recorded_and_read_back_without_training(sample, runs, monkeypatch):
    """Chapter 4's traces are records, so the published edition rebuilds them without training."""
    from kafnotes import records
    first = analysis.resnet_norm_trace(20, "kaf", sample, steps=2, batch_size=16, runs=runs)
    (path,) = runs.glob("normtrace-resnet20-kaf-*.json")
    monkeypatch.setenv(records.ENV_RECORDS_ONLY, "1")  # a second call must read, not train
    again = analysis.resnet_norm_trace(20, "kaf", sample, steps=2, batch_size=16, runs=runs)
    assert again.equals(first) and len(first) == 2 * 22
    # inf and NaN survive the record, and the finite column is recomputed from them
    columns = analysis._trace_columns(first)
    columns["grad_norm"][1][:2] = [np.inf, np.nan]
    frame = analysis._trace_frame(columns)
    assert list(frame["finite"]).count(False) == 2 and analysis.first_nonfinite(frame)["step"] == 2
    # another setting is another record, and without it records-only refuses to train
    with pytest.raises(records.MissingRecord, match="normtrace-resnet20-kaf"):
        analysis.resnet_norm_trace(20, "kaf", sample, steps=2, batch_size=16, clipnorm=1.0, runs=runs)
    assert [p.name for p in runs.glob("normtrace-*.json")] == [path.name]
