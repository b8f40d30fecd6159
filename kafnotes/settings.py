"""Process-wide setup: quiet TensorFlow, determinism, progress bars."""

from __future__ import annotations

import logging
import os
import warnings


def quiet_tensorflow():
    """Keep TF's C++ and Python log lines out of notebook outputs (nbval compares them)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # stable numerics across runs
    warnings.filterwarnings("ignore", message=".*PyTorch not found.*")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)


def setup(seed: int = 0, deterministic: bool = True):
    """Seed Python, NumPy, TF and Keras, and make TF ops deterministic (bit-identical CPU runs)."""
    quiet_tensorflow()
    import keras
    import tensorflow as tf
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
        # Ops that TF runs side by side share the CPU threads, and identical runs then drifted apart in
        # the last bits (VGG with KAF_Free, ResNet56: 3-4 different results in 4 runs). One op at a
        # time made them bit-identical, with no loss of speed on 2 cores.
        try:
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:  # TF already ran an op with another setting; it cannot change now
            warnings.warn("kafnotes.setup() came after TensorFlow's first op, so runs may differ in the "
                          "last bits from one process to the next; call it first for bit-identical runs.")


def show_progress(progress: bool | None) -> bool:
    """Progress bars go to stderr, which nbval cannot compare: off unless asked or KAFNOTES_PROGRESS=1."""
    if progress is not None:
        return progress
    return os.environ.get("KAFNOTES_PROGRESS", "0") == "1"


def test_environment():
    """For pytest (and the nbval kernels it starts, which inherit the environment): quiet TF, stable
    numerics, no user data, and a fresh records folder, so every run recomputes instead of reusing.
    The folder (tens of MB of weights) is removed when the test process exits, its kernels done."""
    import atexit
    import shutil
    import tempfile
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ["PYTHONWARNINGS"] = "ignore"  # as in `kafnotes run`/`refresh` kernels: no stray stderr
    os.environ["KAFNOTES_RUNS"] = runs = tempfile.mkdtemp(prefix="kafnotes-test-runs-")
    atexit.register(shutil.rmtree, runs, ignore_errors=True)
    os.environ.pop("KAFNOTES_CIFAR10", None)
