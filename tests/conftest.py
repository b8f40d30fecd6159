from kafnotes.settings import test_environment

test_environment()  # before TensorFlow is imported; nbval's kernels inherit it

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def sample():
    from kafnotes import data
    return data.load_cifar10("sample")


@pytest.fixture
def runs(tmp_path):
    return tmp_path / "runs"
