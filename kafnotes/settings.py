"""Process-wide setup: quiet TensorFlow, determinism, progress bars."""

from __future__ import annotations

import logging
import os
import warnings


# Environment that must be in place before TensorFlow's first op; a value the user set wins.
# - TF_CPP_MIN_LOG_LEVEL: TF's C++ log lines would land in notebook outputs (nbval compares them).
# - TF_ENABLE_ONEDNN_OPTS=0: no oneDNN graph rewrites, whose kernels vary from run to run.
# - ONEDNN_MAX_CPU_ISA=AVX2: TF's float32 matmul and convolution gradients still run oneDNN's sgemm,
#   which picks its kernel by instruction set, so an AVX-512 CPU summed in another order than an AVX2
#   one and the book's numbers forked by CPU (tests/test_determinism.py). Capped at AVX2, every
#   x86-64 CPU from 2013 on runs the same kernels.
NUMERICS_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0", "ONEDNN_MAX_CPU_ISA": "AVX2"}
# Intra-op threads for runs that must match stored outputs (tests, `kafnotes refresh`): how TF splits
# a reduction or a matmul's inner dimension depends on the thread count, so 2 and 8 cores differ.
ENV_THREADS = "KAFNOTES_THREADS"
REFERENCE_THREADS = "2"


def quiet_tensorflow():
    """Keep TF's log lines out of notebook outputs and pin the CPU kernels (``NUMERICS_ENV``)."""
    for key, value in NUMERICS_ENV.items():
        os.environ.setdefault(key, value)
    warnings.filterwarnings("ignore", message=".*PyTorch not found.*")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)


def setup(seed: int = 0, deterministic: bool = True):
    """Seed Python, NumPy, TF and Keras, and make TF ops deterministic (bit-identical CPU runs).

    With ``$KAFNOTES_THREADS`` set, TF also uses exactly that many intra-op threads, so results do
    not depend on the machine's core count either."""
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
            if os.environ.get(ENV_THREADS):
                tf.config.threading.set_intra_op_parallelism_threads(int(os.environ[ENV_THREADS]))
        except RuntimeError:  # TF already ran an op with another setting; it cannot change now
            warnings.warn("kafnotes.setup() came after TensorFlow's first op, so runs may differ in the "
                          "last bits from one process to the next; call it first for bit-identical runs.")


def show_progress(progress: bool | None) -> bool:
    """Progress bars go to stderr, which nbval cannot compare: off unless asked or KAFNOTES_PROGRESS=1."""
    if progress is not None:
        return progress
    return os.environ.get("KAFNOTES_PROGRESS", "0") == "1"


def test_environment():
    """For pytest (and the nbval kernels it starts, which inherit the environment): quiet TF, pinned
    kernels and thread count, no user data, and a fresh records folder, so every run recomputes instead of reusing.
    The folder (tens of MB of weights) is removed when the test process exits, its kernels done."""
    import atexit
    import shutil
    import tempfile
    quiet_tensorflow()
    os.environ[ENV_THREADS] = REFERENCE_THREADS  # the stored outputs were made with this many threads
    os.environ["PYTHONWARNINGS"] = "ignore"  # as in `kafnotes run`/`refresh` kernels: no stray stderr
    os.environ["KAFNOTES_RUNS"] = runs = tempfile.mkdtemp(prefix="kafnotes-test-runs-")
    atexit.register(shutil.rmtree, runs, ignore_errors=True)
    os.environ.pop("KAFNOTES_CIFAR10", None)
