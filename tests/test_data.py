import numpy as np
import pytest

from kafnotes import data


def test_sample_is_small_balanced_and_float(sample):
    assert data.sample_path().stat().st_size <= 5 * 1024 * 1024
    assert sample.x_train.shape == (1000, 32, 32, 3) and sample.x_test.shape == (300, 32, 32, 3)
    assert sample.x_train.dtype == np.float32 and 0 <= sample.x_train.min() and sample.x_train.max() <= 1
    assert np.bincount(sample.y_train).tolist() == [100] * 10
    assert np.bincount(sample.y_test).tolist() == [30] * 10
    assert "stand-in" in sample.source and not sample.source.startswith("CIFAR-10")


def test_subsets_are_balanced_and_deterministic():
    a = data.load_cifar10("sample", n_train=200, n_test=50, seed=3)
    b = data.load_cifar10("sample", n_train=200, n_test=50, seed=3)
    c = data.load_cifar10("sample", n_train=200, n_test=50, seed=4)
    assert np.bincount(a.y_train).tolist() == [20] * 10
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.x_train, c.x_train)


def _write(path, **arrays):
    np.savez(path, **arrays)
    return path


def _arrays(n=20, dtype=np.uint8):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, 32, 32, 3)).astype(dtype)
    if np.issubdtype(dtype, np.floating):
        x = x / 255.0
    y = np.arange(n) % 10
    return dict(x_train=x, y_train=y, x_test=x[:10], y_test=y[:10])


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_local_npz_via_env_var(tmp_path, monkeypatch, dtype):
    path = _write(tmp_path / "c.npz", **_arrays(dtype=dtype))
    monkeypatch.setenv(data.ENV_VAR, str(path))
    c = data.load_cifar10()  # "auto" picks up the environment variable
    assert c.x_train.dtype == np.float32 and c.x_train.max() <= 1 and c.y_train.dtype == np.int32


def test_float_and_uint8_give_the_same_images(tmp_path):
    a = data.load_cifar10(_write(tmp_path / "a.npz", **_arrays(dtype=np.uint8)))
    b = data.load_cifar10(_write(tmp_path / "b.npz", **_arrays(dtype=np.float64)))
    np.testing.assert_allclose(a.x_train, b.x_train, atol=1e-6)


@pytest.mark.parametrize("change, message", [
    (lambda a: a.pop("y_test"), "lacks keys"),
    (lambda a: a.update(x_train=a["x_train"].transpose(0, 3, 1, 2)), "channels last"),
    (lambda a: a.update(x_train=a["x_train"].astype(np.int64)), "dtype"),
    (lambda a: a.update(y_train=a["y_train"] + 5), "0..9"),
    (lambda a: a.update(y_train=a["y_train"][:5]), "labels for"),
    (lambda a: a.update(x_test=a["x_test"] * 3.0), "must lie in"),
])
def test_bad_files_get_clear_errors(tmp_path, change, message):
    arrays = _arrays()
    change(arrays)
    path = _write(tmp_path / "bad.npz", **arrays)
    with pytest.raises(data.DataError, match=message):
        data.load_cifar10(path)


def test_missing_file_names_the_fix(tmp_path):
    with pytest.raises(data.DataError, match="KAFNOTES_CIFAR10.*sample"):
        data.load_cifar10(tmp_path / "nope.npz")


def test_offline_download_names_the_fix(monkeypatch):
    import keras

    def offline():
        raise OSError("network is unreachable")
    monkeypatch.setattr(keras.datasets.cifar10, "load_data", offline)
    with pytest.raises(data.DataError, match="Offline, set KAFNOTES_CIFAR10.*source='sample'"):
        data.load_cifar10("keras")


def test_bad_subset_sizes():
    with pytest.raises(data.DataError, match="multiple of 10"):
        data.load_cifar10("sample", n_train=15)
    with pytest.raises(data.DataError, match="needs 200 images of class"):
        data.load_cifar10("sample", n_test=2000)


def test_augmentation_pads_crops_and_flips():
    import tensorflow as tf
    x = np.random.default_rng(0).random((64, 32, 32, 3)).astype(np.float32)
    out = data.augment_batch(tf.constant(x), tf.constant([1, 2], tf.int64)).numpy()
    assert out.shape == x.shape
    padded = np.pad(x, [(0, 0), (4, 4), (4, 4), (0, 0)])
    for i in range(len(x)):  # each output is some 32x32 window of the padded image, maybe mirrored
        hits = [(r, c, f) for r in range(9) for c in range(9) for f in (False, True)
                if np.array_equal(out[i], (lambda w: w[:, ::-1] if f else w)(padded[i, r:r + 32, c:c + 32]))]
        assert hits, f"image {i} is not a crop of its padded input"
    again = data.augment_batch(tf.constant(x), tf.constant([1, 2], tf.int64)).numpy()
    np.testing.assert_array_equal(out, again)  # stateless: reproducible for a seed
    other = data.augment_batch(tf.constant(x), tf.constant([1, 3], tf.int64)).numpy()
    assert not np.array_equal(out, other)


def test_train_batches_depend_only_on_seed_and_epoch(sample):
    first = [y.numpy() for _, y in data.train_batches(sample.x_train, sample.y_train, 100, epoch=0, seed=0)]
    again = [y.numpy() for _, y in data.train_batches(sample.x_train, sample.y_train, 100, epoch=0, seed=0)]
    other = [y.numpy() for _, y in data.train_batches(sample.x_train, sample.y_train, 100, epoch=1, seed=0)]
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


def test_make_sample_roundtrip(tmp_path):
    src = _write(tmp_path / "src.npz", **_arrays(n=40))
    dst = data.make_sample(src, tmp_path / "s.npz", n_train=20, n_test=10)
    c = data.load_cifar10(dst)
    assert len(c.x_train) == 20 and np.bincount(c.y_train).tolist() == [2] * 10


def test_tables_never_call_a_stand_in_cifar10(monkeypatch):
    # the bundled sample keeps its label however it is reached, e.g. as KAFNOTES_CIFAR10 at `full`
    monkeypatch.setenv(data.ENV_VAR, str(data.sample_path()))
    assert data.load_cifar10("auto", n_train=10, n_test=10).source == data.describe_source("sample")
    stand_in = data.describe_source("/data/cifar10-jpeg75-10k.npz")
    assert stand_in == "CIFAR-10 (JPEG-q75 stand-in, cifar10-jpeg75-10k.npz)"
    assert data.describe_source("keras") == "CIFAR-10"
