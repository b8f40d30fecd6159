import os
import tempfile

# Before anything imports TensorFlow, and inherited by nbval's kernels: quiet logs, stable numerics,
# and a fresh records folder so every session recomputes instead of reusing stale runs.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ["KAFNOTES_RUNS"] = tempfile.mkdtemp(prefix="kafnotes-test-runs-")
os.environ.pop("KAFNOTES_CIFAR10", None)

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def sample():
    from kafnotes import data
    return data.load_cifar10("sample")


@pytest.fixture
def runs(tmp_path):
    return tmp_path / "runs"
