"""kafnotes: the library behind the book "Robustness with trainable activation functions, revisited".

Data -> model -> train -> attack -> record -> plot:

    from kafnotes import data, models, training, attacks
    cifar = data.load_cifar10("sample")
    run = training.train(training.TrainConfig(arch="resnet20", activation="kaf"), cifar)
    attacks.robust_accuracy(run.model, cifar.x_test, cifar.y_test, steps=20, restarts=1)
"""

__version__ = "0.1.0"

import os as _os

from .settings import quiet_tensorflow as _quiet

_quiet()  # before TensorFlow is first imported

try:
    # The book runs on TensorFlow. The layers and models alone also run on Keras' other backends
    # (benchmarks/gpu_epoch.py times them on JAX), which need no TensorFlow.
    if _os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow":
        import tensorflow as _tf  # noqa: F401
except ImportError as e:  # Colab ships TF; elsewhere requirements.txt pins tensorflow-cpu
    raise ImportError("kafnotes needs TensorFlow >= 2.16 with Keras 3: `pip install tensorflow-cpu` "
                      "(CPU) or `pip install 'tensorflow[and-cuda]'` (NVIDIA GPU).") from e

from .settings import setup  # noqa: E402,F401
