"""The study's three architectures. Each takes an activation name or factory and returns logits."""

from __future__ import annotations

import contextlib

import keras
from keras import layers, regularizers

from . import activations

INPUT_SHAPE = (32, 32, 3)
RESNET_DEPTHS = (20, 32, 44, 56, 110)
# PyTorch's default (Keras' is 0.99): the running statistics settle in tens of steps, not hundreds,
# so short runs are evaluated with meaningful BN statistics.
BN_MOMENTUM = 0.9


def light_cnn(activation="relu", num_classes: int = 10, dropout=(0.2, 0.3), seed: int | None = None,
              **act_options) -> keras.Model:
    """Section 6.1: two blocks of [conv3x3 + BN + act] x2, max-pool and dropout; GAP, dense 128, dense 10."""
    act = activations.get(activation, **act_options)
    x = inputs = keras.Input(INPUT_SHAPE)
    for block, (filters, rate) in enumerate(zip((32, 64), dropout)):
        for i in range(2):
            x = layers.Conv2D(filters, 3, padding="same", name=f"conv{block + 1}_{i + 1}")(x)
            x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"bn{block + 1}_{i + 1}")(x)
            x = act(name=f"act{block + 1}_{i + 1}")(x)
        x = layers.MaxPooling2D(name=f"pool{block + 1}")(x)
        x = layers.Dropout(rate, seed=seed, name=f"drop{block + 1}")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dense(128, name="dense")(x)
    x = act(name="act_dense")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=f"light_cnn_{_name(activation)}")


def vgg_like(activation="relu", num_classes: int = 10, filters=(32, 64, 128),
             dropout=(0.2, 0.25, 0.3, 0.4), l2: float = 0.0012, seed: int | None = None,
             **act_options) -> keras.Model:
    """Section 7.1: three blocks of 2x [conv3x3, BN, act], max-pool, dropout rising 0.2 -> 0.4;
    flatten, dense 128 (+dropout), dense 10. He-uniform kernels, L2 on the dense layers."""
    if len(dropout) != len(filters) + 1:
        raise ValueError(f"vgg_like needs one dropout rate per block plus one for the dense layer "
                         f"({len(filters) + 1}), got {len(dropout)}")
    act = activations.get(activation, **act_options)
    x = inputs = keras.Input(INPUT_SHAPE)
    for block, (f, rate) in enumerate(zip(filters, dropout)):
        for i in range(2):
            x = layers.Conv2D(f, 3, padding="same", kernel_initializer="he_uniform",
                              name=f"conv{block + 1}_{i + 1}")(x)
            x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"bn{block + 1}_{i + 1}")(x)
            x = act(name=f"act{block + 1}_{i + 1}")(x)
        x = layers.MaxPooling2D(name=f"pool{block + 1}")(x)
        x = layers.Dropout(rate, seed=seed, name=f"drop{block + 1}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(128, kernel_initializer="he_uniform", kernel_regularizer=regularizers.l2(l2),
                     name="dense")(x)
    x = act(name="act_dense")(x)
    x = layers.Dropout(dropout[-1], seed=seed, name="drop_dense")(x)
    outputs = layers.Dense(num_classes, kernel_initializer="he_uniform",
                           kernel_regularizer=regularizers.l2(l2), name="logits")(x)
    return keras.Model(inputs, outputs, name=f"vgg_like_{_name(activation)}")


def resnet(depth: int = 20, activation="relu", num_classes: int = 10, l2: float = 5e-4,
           variant: str = "he", use_bias: bool | None = None, **act_options) -> keras.Model:
    """CIFAR ResNet (He et al. 2016) with 6n+2 weighted layers: depth 20, 32, 44, 56 or 110.

    ``variant="he"``: BN before each activation, the block's activation after the add, 1x1
    projection shortcuts. ``variant="thesis"``: the published code's block, with BN after the add
    and a 3x3 stride-2 projection shortcut (used to rebuild the thesis' models). Convolutions have
    biases only in the thesis variant, unless ``use_bias`` says otherwise.
    """
    if depth not in RESNET_DEPTHS and (depth - 2) % 6:
        raise ValueError(f"ResNet depth must be 6n+2, e.g. {RESNET_DEPTHS} (got {depth})")
    if variant not in ("he", "thesis"):
        raise ValueError(f"ResNet variant must be 'he' or 'thesis' (got {variant!r})")
    n = (depth - 2) // 6
    act = activations.get(activation, **act_options)
    reg = regularizers.l2(l2) if l2 else None
    bias = (variant == "thesis") if use_bias is None else use_bias

    def conv(filters, kernel, stride, name):
        return layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=bias,
                             kernel_initializer="he_normal", kernel_regularizer=reg, name=name)

    x = inputs = keras.Input(INPUT_SHAPE)
    x = conv(16, 3, 1, "conv0")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name="bn0")(x)
    x = act(name="act0")(x)
    for stage, filters in enumerate((16, 32, 64)):
        for block in range(n):
            stride = 2 if stage > 0 and block == 0 else 1
            p = f"s{stage + 1}b{block + 1}"
            shortcut = x
            y = conv(filters, 3, stride, f"{p}_conv1")(x)
            y = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{p}_bn1")(y)
            y = act(name=f"{p}_act1")(y)
            y = conv(filters, 3, 1, f"{p}_conv2")(y)
            if variant == "he":
                y = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{p}_bn2")(y)
                if stride != 1:
                    shortcut = conv(filters, 1, stride, f"{p}_proj")(x)
                    shortcut = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{p}_proj_bn")(shortcut)
                x = layers.Add(name=f"{p}_add")([y, shortcut])
            else:
                if stride != 1:
                    shortcut = conv(filters, 3, stride, f"{p}_proj")(x)
                x = layers.Add(name=f"{p}_add")([y, shortcut])
                x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{p}_bn2")(x)
            x = act(name=f"{p}_act2")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = layers.Dense(num_classes, kernel_initializer="he_normal", kernel_regularizer=reg,
                           name="logits")(x)
    return keras.Model(inputs, outputs, name=f"resnet{depth}_{_name(activation)}")


ARCHITECTURES = {"light_cnn": light_cnn, "vgg_like": vgg_like, "resnet20": lambda **kw: resnet(20, **kw),
                 "resnet32": lambda **kw: resnet(32, **kw), "resnet44": lambda **kw: resnet(44, **kw),
                 "resnet56": lambda **kw: resnet(56, **kw), "resnet110": lambda **kw: resnet(110, **kw)}


@contextlib.contextmanager
def precision(policy: str):
    """Build layers under Keras' dtype policy ``policy`` ("float32", "mixed_float16", ...), then put
    back whichever policy was in force, so no caller leaks its precision into the next model."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def build(arch: str, activation="relu", **kwargs) -> keras.Model:
    """Build an architecture by name: light_cnn, vgg_like or resnet{20,32,44,56,110}."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; valid names: {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[arch](activation=activation, **kwargs)


def weighted_depth(model: keras.Model) -> int:
    """Conv and dense layers on the main path (projection shortcuts are not counted, as in He et al.)."""
    return sum(isinstance(l, (layers.Conv2D, layers.Dense)) and not l.name.endswith("_proj")
               for l in model.layers)


def _name(activation) -> str:
    return activation if isinstance(activation, str) else getattr(activation, "activation_name", "custom")
