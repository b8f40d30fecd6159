"""The thesis' published numbers (CIFAR-10, clean / PGD-50-10 robust accuracy in %), for side-by-side tables.

Source: Peconi (2020), Tables 7.1 and 7.2 and section 6.1, as summarised in the project's SPEC.
"""

import pandas as pd

TABLE_7_1_VGG = pd.DataFrame([
    ("relu", 78.10, 45.41, 1e-4, 0.08), ("elu", 73.99, 45.49, 1e-4, 0.1), ("kaf", 77.93, 46.80, 0.01, 1.0),
    ("kaf_elu", 74.93, 45.40, 1e-4, 0.1), ("swish", 76.99, 47.73, 1e-4, 0.3),
    ("kaf_swish", 78.85, 46.33, 1e-4, 0.8), ("kaf_free", 77.54, 46.20, 0.01, 2.0),
], columns=["activation", "clean", "robust", "lr_min", "lr_max"])

TABLE_7_2_RESNET20 = pd.DataFrame([
    ("relu", 77.52, 50.17), ("elu", 75.42, 51.69), ("kaf", 78.08, 52.23), ("kaf_relu", 79.65, 51.44),
    ("kaf_elu", 78.69, 52.76), ("swish", 78.68, 53.88), ("kaf_swish", 79.21, 52.10), ("kaf_free", 78.88, 52.07),
], columns=["activation", "clean", "robust"])

# Section 6.1: light CNN, standard training; PGD eps 0.031, step 0.003, 40 restarts, 1000 test images.
SECTION_6_1_LIGHT = pd.DataFrame([
    ("relu", 77.96, 11.0), ("kwta", 65.33, 13.2), ("kaf", 68.80, 15.7),
], columns=["activation", "clean", "robust"])

# Section 7.2: clean training, 150 epochs; KafResNet56 did not learn (NaN gradients from step 1).
SECTION_7_2_CLEAN = pd.DataFrame([
    ("resnet20", "relu", 91.80), ("resnet56", "relu", 93.22), ("resnet20", "kaf", 90.07), ("resnet56", "kaf", None),
], columns=["arch", "activation", "clean"])
