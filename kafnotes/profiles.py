"""Four scales at which every chapter runs: ``smoke``, ``cpu``, ``study`` and ``full``.

A profile is a plain dict; papermill parameters (or keyword overrides) replace its values.
"""

from __future__ import annotations

import copy

# adv_lr_min, adv_lr_max, adv_momentum, fgsm_alpha: the ResNet20 FGSM training schedule of chapters 5
# and 6 (one cycle lr_min -> lr_max -> lr_min, SGD momentum, FGSM step; None: 1.25 eps). The thesis'
# own (0.01 -> 0.8, no momentum) everywhere but at study: compressed to 6 epochs it overfits ReLU
# catastrophically (results/study/README.md), so study uses Wong et al.'s reference schedule instead.
THESIS_SCHEDULE = dict(adv_lr_min=0.01, adv_lr_max=0.8, adv_momentum=0.0, fgsm_alpha=None)
_REFERENCE_SCHEDULE = dict(adv_lr_min=0.0, adv_lr_max=0.2, adv_momentum=0.9, fgsm_alpha=None)

# apgd_steps: AutoAttack's APGD iterations (chapters 6 and 7). Croce and Hein's 100 at full scale; at cpu
# the same budget as PGD, since ART's APGD costs about 2x a PGD step and would dominate those chapters.
# diagnostic_apgd_steps: the iterations of the diagnostics beside it (ART's APGD-CE and APGD-DLR on every
# evaluation image: chapter 6's stronger attacks, chapter 7's audit). At study, 100 would cost about
# 1.5 h per model on 2 cores (21 models); AutoAttack's own APGD-CE runs 100 there, so the diagnostics
# run PGD's budget, 20, as at cpu.
_EVAL_SMOKE = dict(eps=8 / 255, pgd_alpha=2 / 255, pgd_steps=5, pgd_restarts=1, apgd_steps=10, diagnostic_apgd_steps=10,
                  n_eval=100,
                   aa_n=50, square_queries=100, square_n=None, checklist_n=None, saved_n=None, **THESIS_SCHEDULE)

# Standard AutoAttack (kafnotes.autoattack; chapters 6 and 7): APGD-CE and APGD-T (9 targets) with
# apgd_steps iterations on the first aa_n evaluation images (all when None), then Square with
# square_queries queries on the first square_n of them. Square's queries are what 2 cores cannot
# afford at the standard 5000 on every image (about an hour per model on 500 images), so the cheaper
# profiles cut them and say so in every caption. checklist_n: the Carlini et al. checklist (five more
# PGD runs, half of chapter 7's attack cost per model) on the first checklist_n evaluation images
# (all when None); study runs it on AutoAttack's 500, and the captions say so. saved_n: chapter 7's PGD
# on the SavedModels as saved (float16 arithmetic, slow on a CPU: 188 s per KAF model on 500 images)
# on the first saved_n evaluation images, paired with the rebuild's PGD on the same ones. At cpu all
# three run on the first 100 evaluation images, the others on 300, and Square gets 500 queries: with
# all three on 500 images, and 1000 queries, chapter 7 took about 3.8 hours; with the three on 100 of
# 500, 84 minutes (benchmarks/chapter7_cost.py, 2 cores alone; README, "Standard AutoAttack").

# seeds: how many times chapters 3 and 5 train each activation (seeds seed, seed+1, ...); tables
# pool the paired tests over seeds and show the spread. seeds_for: more seeds for some activations
# (the ones a conclusion turns on), where the budget cannot give every activation as many.
# resnet_activations, vgg_activations: what chapters 5-6 and 3 train. All eight (seven for VGG, which
# has no kaf_relu in the thesis) everywhere but at study, whose budget trains the four the question
# turns on in chapter 5 (chapter 7 audits the thesis' own models of the other four at full scale)
# and the two chapter 3's VGG comparison is about, ReLU and KAF.
ALL_RESNET = ["relu", "elu", "kaf", "kaf_relu", "kaf_elu", "swish", "kaf_swish", "kaf_free"]
ALL_VGG = ["relu", "elu", "kaf", "kaf_elu", "swish", "kaf_swish", "kaf_free"]
_EVERY_ACTIVATION = dict(seeds_for={}, resnet_activations=ALL_RESNET, vgg_activations=ALL_VGG)
# dtype: the float type models compute in. smoke runs float64 so that its stored outputs (what
# `pytest --nbval` compares) are the same on every CPU: each CPU's matmul kernels round in their own
# order, and in float32 two epochs of training amplify those last-bit differences into other
# accuracies, while in float64 they stay far below the printed digits (tests/test_determinism.py).
PROFILES: dict[str, dict] = {
    "smoke": dict(
        description="bundled sample (JPEG-q75 stand-in); seconds per model on 2 CPU cores",
        dtype="float64", seeds=1, data="sample", n_train=500, n_test=300, batch_size=50, epochs=2, adv_epochs=2,
        resnet_depths=(20, 56), norm_steps=5, norm_batch=32, clean_epochs=1, lr_finder_steps=12,
        **_EVERY_ACTIVATION, **_EVAL_SMOKE),
    "cpu": dict(
        description="a 5000 / 1000-image subset, each chapter within about an hour on a 2-core laptop",
        dtype="float32", seeds=1, data="auto", n_train=5000, n_test=1000, batch_size=128, epochs=8, adv_epochs=8,
        resnet_depths=(20, 56), norm_steps=30, norm_batch=128, clean_epochs=6, lr_finder_steps=60,
        eps=8 / 255, pgd_alpha=2 / 255, pgd_steps=20, pgd_restarts=1, apgd_steps=20, diagnostic_apgd_steps=20, n_eval=300,
        aa_n=100, square_queries=500, square_n=None, checklist_n=100, saved_n=100, **_EVERY_ACTIVATION, **THESIS_SCHEDULE),
    # The published edition: the largest scale that 2 CPU cores afford (README, "The study edition", has
    # the budget chapter by chapter). All training images; all test images (the stand-in's 2,000, or
    # real CIFAR-10's 10,000). Its records are committed in results/study/runs, so `kafnotes book`
    # builds it without training. The hours go where the question is decided: chapter 5's four
    # activations, two seeds of ReLU and KAF and N-FGSM, and chapter 7's 13 published models; the
    # mechanism chapters train less (5 epochs of the light CNN, 1 clean epoch of the ResNets in
    # chapter 4: 390 steps, enough to see which ones train at all).
    "study": dict(
        description="all training and test images; the largest scale 2 CPU cores afford (about 24 h in all; README)",
        dtype="float32", seeds=1, data="auto", n_train=None, n_test=None, batch_size=128, epochs=5, adv_epochs=6,
        resnet_depths=(20, 56), norm_steps=100, norm_batch=128, clean_epochs=1, lr_finder_steps=200,
        eps=8 / 255, pgd_alpha=2 / 255, pgd_steps=20, pgd_restarts=1, apgd_steps=100, diagnostic_apgd_steps=20, n_eval=None,
        aa_n=500, square_queries=1000, square_n=500, checklist_n=500, saved_n=None, **_REFERENCE_SCHEDULE,
        seeds_for={"relu": 2, "kaf": 2}, resnet_activations=["relu", "elu", "swish", "kaf"],
        vgg_activations=["relu", "kaf"]),
    "full": dict(
        description="the thesis' scale: full CIFAR-10, the thesis' epochs, PGD-50-10 on the whole test set (GPU)",
        dtype="float32", seeds=3, data="auto", n_train=None, n_test=None, batch_size=128, epochs=60, adv_epochs=80,
        resnet_depths=(20, 56), norm_steps=100, norm_batch=128, clean_epochs=150, lr_finder_steps=400,
        eps=8 / 255, pgd_alpha=2 / 255, pgd_steps=50, pgd_restarts=10, apgd_steps=100, diagnostic_apgd_steps=100, n_eval=None,
        aa_n=None, square_queries=5000, square_n=None, checklist_n=None, saved_n=None, **_EVERY_ACTIVATION, **THESIS_SCHEDULE),
}


# Profiles whose run records are committed, relative to the repository root: `kafnotes run/book`
# reads and writes them there, so the published edition builds from them without training.
COMMITTED_RECORDS = {"study": "results/study/runs"}


def get_profile(name: str, **overrides) -> dict:
    """A copy of profile ``name`` with ``overrides`` applied (``None`` values are ignored)."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; valid profiles: {', '.join(PROFILES)}")
    profile = copy.deepcopy(PROFILES[name])
    unknown = set(overrides) - set(profile)
    if unknown:
        raise ValueError(f"unknown profile keys {sorted(unknown)}; valid keys: {', '.join(sorted(profile))}")
    profile.update({k: v for k, v in overrides.items() if v is not None})
    profile["name"] = name
    return profile
