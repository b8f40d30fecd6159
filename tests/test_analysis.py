import numpy as np

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
