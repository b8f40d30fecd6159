"""The book's numbers must not depend on the CPU or its core count (issue: outputs recorded on one
x86-64 machine failed nbval on another). Each fork found has a test here that fails without its fix."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kafnotes import activations, settings

ROOT = Path(__file__).resolve().parents[1]

# A float32 matmul and a convolution's filter gradient: the two kernels that forked between CPUs.
_PROBE = """
import hashlib, json, os, sys
affinity = os.environ.pop("PROBE_CPUS", "")
if affinity:
    os.sched_setaffinity(0, {int(c) for c in affinity.split(",")})
if os.environ.get("PROBE_PLAIN_TF") == "1":
    import tensorflow as tf  # no kafnotes: TensorFlow's own defaults, apart from the environment
    tf.config.threading.set_inter_op_parallelism_threads(1)
    if os.environ.get("PROBE_INTRA"):
        tf.config.threading.set_intra_op_parallelism_threads(int(os.environ["PROBE_INTRA"]))
else:
    import kafnotes
    kafnotes.setup(0)
    import tensorflow as tf
import numpy as np
rng = np.random.default_rng(0)
a = tf.constant(rng.standard_normal((256, 1152)).astype(np.float32))
b = tf.constant(rng.standard_normal((1152, 64)).astype(np.float32))
x = tf.constant(rng.standard_normal((50, 32, 32, 16)).astype(np.float32))
k = tf.constant(rng.standard_normal((3, 3, 16, 16)).astype(np.float32))
with tf.GradientTape() as tape:
    tape.watch(k)
    loss = tf.reduce_sum(tf.square(tf.nn.conv2d(x, k, 1, "SAME")))
digest = lambda t: hashlib.sha256(t.numpy().tobytes()).hexdigest()[:16]
print(json.dumps({"matmul": digest(tf.matmul(a, b)), "dconv": digest(tape.gradient(loss, k))}))
"""


def _probe(**env):
    clean = {k: v for k, v in os.environ.items()
             if k not in ("ONEDNN_MAX_CPU_ISA", settings.ENV_THREADS)}
    clean.update(TF_CPP_MIN_LOG_LEVEL="3", TF_ENABLE_ONEDNN_OPTS="0", **env)
    out = subprocess.run([sys.executable, "-c", _PROBE], env=clean, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _has_avx512() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            return " avx512f" in f.read()
    except OSError:
        return False


def test_kafnotes_pins_onednn_to_avx2_kernels():
    """kafnotes' own process computes exactly what TF computes with oneDNN capped at AVX2."""
    ours = _probe(**{settings.ENV_THREADS: "2"})
    capped = _probe(PROBE_PLAIN_TF="1", PROBE_INTRA="2", ONEDNN_MAX_CPU_ISA="AVX2")
    assert ours == capped


@pytest.mark.skipif(not _has_avx512(), reason="the fork shows only on a CPU with AVX-512")
def test_uncapped_onednn_forks_on_avx512():
    """Why the cap exists: on an AVX-512 CPU oneDNN's own choice sums in another order."""
    capped = _probe(PROBE_PLAIN_TF="1", PROBE_INTRA="2", ONEDNN_MAX_CPU_ISA="AVX2")
    free = _probe(PROBE_PLAIN_TF="1", PROBE_INTRA="2")
    assert capped != free


def test_thread_count_is_pinned_not_taken_from_the_machine():
    """With $KAFNOTES_THREADS the result is the same on 1 visible core as on all of them, while
    TensorFlow's own thread counts (1 and 2 intra-op threads) sum in different orders."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two cores to compare")
    one_core = _probe(PROBE_CPUS="0", **{settings.ENV_THREADS: "2"})
    all_cores = _probe(**{settings.ENV_THREADS: "2"})
    assert one_core == all_cores
    plain = [_probe(PROBE_PLAIN_TF="1", PROBE_INTRA=n, ONEDNN_MAX_CPU_ISA="AVX2") for n in ("1", "2")]
    assert plain[0] != plain[1]


_RIDGE = """
import json, numpy as np
from kafnotes import activations as a
d = a.dictionary(20, 3.0)
print(json.dumps({f: a.ridge_alpha(f, d, a.thesis_gamma(d)).tobytes().hex() for f in ("relu", "elu", "swish")}))
"""


def test_ridge_initialisation_is_identical_for_every_openblas_kernel():
    """OpenBLAS picks its kernels per CPU (OPENBLAS_CORETYPE forces one): np.linalg.solve gave other
    bits on Haswell than on SkylakeX kernels, and the ridge-initialised KAFs other starting weights."""
    outs = []
    for core in ("Haswell", "SkylakeX", "Zen"):
        env = {**os.environ, "OPENBLAS_CORETYPE": core}
        out = subprocess.run([sys.executable, "-c", _RIDGE], env=env, capture_output=True, text=True,
                             timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        outs.append(out.stdout.strip().splitlines()[-1])
    assert len(set(outs)) == 1


def test_elementwise_solve_matches_lapack():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((12, 12)) + 12 * np.eye(12)
    b = rng.standard_normal(12)
    np.testing.assert_allclose(activations.solve_elementwise(a, b), np.linalg.solve(a, b), rtol=1e-12)
    d = activations.dictionary(20, 3.0)
    gamma = activations.thesis_gamma(d)
    k = np.exp(-gamma * (d[:, None] - d[None, :]) ** 2) + 1e-6 * np.eye(20)
    alpha = activations.ridge_alpha("elu", d, gamma)
    np.testing.assert_allclose(k @ alpha, activations._INITS["elu"](d), atol=1e-7)


def test_elementwise_solve_needs_pivoting():
    a = np.array([[0.0, 1.0], [1.0, 0.0]])  # a zero first pivot: without row swaps this divides by 0
    np.testing.assert_allclose(activations.solve_elementwise(a, np.array([2.0, 3.0])), [3.0, 2.0])


_TRAIN = """
import json, sys
import keras
import numpy as np
import kafnotes
kafnotes.setup(0)
from kafnotes import attacks, chapter, data, profiles, training
keras.config.set_floatx(sys.argv[1])
P = profiles.get_profile("smoke")
cifar = data.load_cifar10("sample", n_train=500, n_test=100, seed=0)
config = chapter.adversarial_config("resnet20", "relu", P, lr_min=0.0, lr_max=0.2, augment=True)
run = training.train(config, cifar, runs=sys.argv[2], verbose=False)
np.save(sys.argv[2] + "/weights.npy", np.concatenate([v.numpy().ravel() for v in run.model.weights]))
x, y = cifar.x_test, cifar.y_test
print(json.dumps({"loss": [round(h["loss"], 4) for h in run.history], "clean": attacks.clean_accuracy(run.model, x, y),
                  "robust": attacks.robust_accuracy(run.model, x, y, eps=8 / 255, alpha=2 / 255, steps=5, restarts=1)}))
"""


def _train_smoke(dtype, threads, folder):
    env = {**os.environ, settings.ENV_THREADS: str(threads)}
    out = subprocess.run([sys.executable, "-c", _TRAIN, dtype, str(folder)], env=env, capture_output=True,
                         text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1]), np.load(folder / "weights.npy")


def test_float64_keeps_summation_order_out_of_the_printed_digits(tmp_path):
    """Why smoke computes in float64. One and two threads sum TF's matmuls in different orders, as
    two CPUs do (their kernels block the sums by their own cache sizes, which nothing can pin). In
    float32, smoke's two epochs of FGSM training amplify those last bits into other weights and
    accuracies; in float64 the same difference stays near 1e-8 and every printed number agrees."""
    results = {(dtype, threads): _train_smoke(dtype, threads, tmp_path / f"{dtype}-{threads}")
               for dtype in ("float32", "float64") for threads in (1, 2)}
    gap = {dtype: float(np.max(np.abs(results[dtype, 1][1] - results[dtype, 2][1])))
           for dtype in ("float32", "float64")}
    assert results["float64", 1][0] == results["float64", 2][0]
    assert gap["float64"] < 1e-5
    assert gap["float32"] > 1000 * gap["float64"]  # the fork is real, and float64 is what removes it


def _result_outputs(path: Path) -> list[str]:
    """The text of every output that nbval compares."""
    nb = json.loads(path.read_text())
    texts = []
    for cell in nb["cells"]:
        if cell["cell_type"] != "code" or "nbval-ignore-output" in cell["metadata"].get("tags", []):
            continue
        if "NBVAL_IGNORE_OUTPUT" in "".join(cell["source"]):
            continue
        for out in cell.get("outputs", []):
            text = out.get("text") or out.get("data", {}).get("text/plain")
            if text:
                texts.append("".join(text))
    return texts


def test_chapters_give_the_same_outputs_alone_in_either_order_and_in_parallel(tmp_path):
    """`kafnotes book` runs chapters side by side, nbval one after another: neither may matter."""
    def run(order, jobs, out):
        result = subprocess.run([sys.executable, "-m", "kafnotes.cli", "run", *order, "--profile", "smoke",
                                 "-p", "epochs=1", "-p", "n_train=100", "--jobs", str(jobs), "--root", str(ROOT),
                                 "--out", str(out)], capture_output=True, text=True, timeout=1200)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        return {nb.stem: _result_outputs(nb) for nb in sorted((out / "book").glob("*.ipynb"))}

    forward = run(["01", "02"], 1, tmp_path / "forward")
    backward = run(["02", "01"], 1, tmp_path / "backward")
    parallel = run(["01", "02"], 2, tmp_path / "parallel")
    assert len(forward) == 2 and all(forward.values())
    assert forward == backward == parallel
