import keras
import numpy as np
import pytest

from kafnotes import models
from kafnotes.activations import KAF, KWinnersTakeAll


@pytest.mark.parametrize("depth", [20, 32, 44, 56, 110])
def test_resnet_depths(depth):
    model = models.resnet(depth)
    assert models.weighted_depth(model) == depth
    assert model.output_shape == (None, 10)


def test_parameter_counts_are_sane():
    assert 0.26e6 < models.resnet(20).count_params() < 0.28e6  # He et al.: 0.27M
    assert 0.84e6 < models.resnet(56).count_params() < 0.87e6  # 0.85M
    trainable = lambda m: sum(int(np.prod(w.shape)) for w in m.trainable_weights)
    kaf = trainable(models.resnet(20, "kaf")) - trainable(models.resnet(20))
    assert kaf == 20 * (16 * 7 + 32 * 6 + 64 * 6)  # one alpha vector per channel of every activation
    assert models.light_cnn().count_params() < 0.1e6 and models.vgg_like().count_params() > 0.5e6


def test_models_return_logits():
    x = np.random.default_rng(0).random((4, 32, 32, 3)).astype(np.float32)
    for model in (models.light_cnn(), models.vgg_like(), models.resnet(20)):
        out = model(x).numpy()
        assert out.shape == (4, 10) and not np.allclose(out.sum(1), 1.0)  # not softmax
        assert model.layers[-1].get_config()["activation"] == "linear"


def test_thesis_variant_differs_in_block_layout():
    thesis = models.resnet(20, variant="thesis")
    assert thesis.get_layer("s2b1_proj").kernel.shape == (3, 3, 16, 32)
    assert models.resnet(20).get_layer("s2b1_proj").kernel.shape == (1, 1, 16, 32)


@pytest.mark.parametrize("build", [lambda: models.resnet(20, "kaf_free"), lambda: models.light_cnn("kwta"),
                                   lambda: models.vgg_like("kaf_elu", mode="exact")])
def test_save_load_roundtrip_identical(tmp_path, build):
    model = build()
    x = np.random.default_rng(1).random((3, 32, 32, 3)).astype(np.float32)
    for layer in model.layers:  # move away from the initial weights so the check means something
        if isinstance(layer, KAF):
            layer.alpha.assign(layer.alpha + 0.1)
        if isinstance(layer, KWinnersTakeAll):
            layer.set_ratio(0.17)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(model(x).numpy(), loaded(x).numpy())


def test_bad_architecture_arguments():
    with pytest.raises(ValueError, match="6n\\+2"):
        models.resnet(21)
    with pytest.raises(ValueError, match="valid names"):
        models.build("resnet18")
    with pytest.raises(ValueError, match="unknown activation"):
        models.light_cnn("relu7")
    with pytest.raises(ValueError, match="variant"):
        models.resnet(20, variant="preact")


def test_precision_builds_in_a_policy_and_restores_the_previous_one():
    import keras
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        with models.precision("mixed_float16"):
            model = models.resnet(20, "kaf")
        assert keras.config.dtype_policy().name == "mixed_bfloat16"
        assert model.layers[-1].compute_dtype == "float16" and model.layers[-1].variable_dtype == "float32"
        with pytest.raises(RuntimeError):
            with models.precision("float32"):
                raise RuntimeError("a failed build")
        assert keras.config.dtype_policy().name == "mixed_bfloat16"
    finally:
        keras.config.set_dtype_policy("float32")
