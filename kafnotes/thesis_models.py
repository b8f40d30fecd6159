"""The thesis' published adversarially trained ResNet20s, rebuilt as native Keras 3 models.

The 13 TF 2.3 SavedModels (MIT licence, (c) 2020 Federico Peconi) cannot all be differentiated as
saved (the Swish model's custom gradient was not saved), so we rebuild the thesis' ResNet20 variant
with kafnotes layers and copy the SavedModel's variables into it, in creation order.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
import zipfile
from pathlib import Path

import keras
import numpy as np

from . import activations, attacks, evaluation, models, records, stats

ENV_VAR = "KAFNOTES_THESIS_MODELS"
REPOSITORY = ("https://github.com/arbiter1elegantiae/"
              "Robustness-of-deep-neural-networks-with-trainable-activation-functions")
COMMIT = "90a646b0f3a3ea297a8911edbe50c3f55d1864eb"

# file stem -> (activation of the rebuild, Table 7.2 row it most likely is, or None)
PUBLISHED = {
    "resnet20_relu_ocrob": ("relu", "relu"),
    "resnet20_relu_ocrob_lrf": ("relu", "relu"),
    "resnet20_elu_ocrob": ("elu", "elu"),
    "resnet20_elu_ocrob_lrf": ("elu", "elu"),
    "resnet20_swish_ocrob_lrf": ("swish", "swish"),
    "resnet20_kaf_ocrob_lrfinder": ("kaf", "kaf"),
    "resnet20_kafs_ocrob": ("kaf", None),
    "resnet20_kafrelu_ocrob_lrfinder": ("kaf", "kaf_relu"),
    "resnet20_kafrelu_ocrob_lrfinder_last": ("kaf", None),
    "resnet20_kafelu_ocrob_lrf": ("kaf", "kaf_elu"),
    "resnet20_kafswish_ocrob_lrfinder": ("kaf", "kaf_swish"),
    "resnet20_kafswish_ocrob_lrfinder_tmp": ("kaf", None),
    "resnet20_kafs_freedictkb_ocrob_lrfinder": ("kaf_free", "kaf_free"),
}


class ThesisModelError(RuntimeError):
    pass


def checksums() -> dict[str, str]:
    lines = Path(__file__).with_name("_data").joinpath("thesis_models.sha256").read_text().splitlines()
    return {name.strip(): digest for digest, name in (line.split() for line in lines if line.strip())}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "kafnotes" / "thesis_models"


def candidate_folders(folder=None) -> list[Path]:
    """Where zips are looked for: ``folder``, $KAFNOTES_THESIS_MODELS, a ``shared/thesis_models`` beside
    the working folder or beside the package's checkout (this project's offline copy), then the
    download cache. The checkout matters because ``kafnotes run`` executes chapters in an output folder."""
    found = [Path(p) for p in (folder, os.environ.get(ENV_VAR)) if p]
    for start in (Path.cwd().resolve(), Path(__file__).resolve().parent):
        found += [p / "shared" / "thesis_models" for p in (start, *start.parents)][:6]
    return list(dict.fromkeys(found)) + [cache_dir()]


def zip_path(name: str, folder=None, download: bool = True) -> Path:
    """The verified zip of one published model, downloading it (checksummed) if no local copy exists."""
    if name not in PUBLISHED:
        raise ThesisModelError(f"unknown published model {name!r}; choose one of {', '.join(PUBLISHED)}")
    expected = checksums()[f"{name}.zip"]
    for base in candidate_folders(folder):
        path = base / f"{name}.zip"
        if path.is_file():
            if _sha256(path) != expected:
                raise ThesisModelError(f"{path} does not match its published sha256 ({expected[:12]}...); "
                                       f"delete it and download it again")
            return path
    if not download:
        raise ThesisModelError(f"{name}.zip not found in {[str(p) for p in candidate_folders(folder)]}")
    return _download(name, expected)


def _download(name: str, expected: str) -> Path:
    url = f"{REPOSITORY}/raw/{COMMIT}/resnet20_models/{name}.zip"
    dest = cache_dir() / f"{name}.zip"
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, suffix=".part")
    os.close(fd)
    try:
        urllib.request.urlretrieve(url, tmp)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise ThesisModelError(f"could not download {url} ({e}). Offline, put the zips in a folder and set "
                               f"{ENV_VAR} to it.") from e
    if _sha256(Path(tmp)) != expected:
        Path(tmp).unlink(missing_ok=True)
        raise ThesisModelError(f"{url} does not match its published sha256; not using it")
    os.replace(tmp, dest)
    return dest


def saved_model(name: str, folder=None):
    """The SavedModel as published (its serving signature outputs softmax probabilities)."""
    import tensorflow as tf
    path = zip_path(name, folder)
    target = cache_dir() / "unzipped" / name
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=target.parent))
        with zipfile.ZipFile(path) as z:
            z.extractall(staging)
        inner = next(p.parent for p in staging.rglob("saved_model.pb"))
        os.replace(inner, target)
        shutil.rmtree(staging, ignore_errors=True)
    return tf.saved_model.load(str(target))


def optimizer_config(name: str, folder=None) -> dict:
    """The optimizer the author trained ``name`` with, as Keras saved it in the SavedModel's metadata
    (the mixed-precision loss-scale wrapper removed): e.g. ``{"class_name": "SGD", "config": {...}}``."""
    import json
    from tensorflow.core.protobuf import saved_model_pb2
    with zipfile.ZipFile(zip_path(name, folder)) as z:
        pb = next(n for n in z.namelist() if n.endswith("saved_model.pb"))
        graph = saved_model_pb2.SavedModel.FromString(z.read(pb)).meta_graphs[0].object_graph_def
    for node in graph.nodes:
        metadata = node.user_object.metadata
        if metadata and '"training_config"' in metadata:
            config = json.loads(metadata)["training_config"]["optimizer_config"]
            while config["class_name"] == "LossScaleOptimizer":
                config = config["config"]["optimizer"]
            return config
    raise ThesisModelError(f"{name} was saved without its training config")


def training_recipe(name: str, folder=None, steps_per_epoch: float = 50_000 / 128) -> dict:
    """What ``name``'s saved optimizer says about its training, in a table row: the optimizer, its
    momentum, and the learning rate (a cyclical schedule if one was saved, else its last value)."""
    opt = optimizer_config(name, folder)
    config, lr = opt["config"], opt["config"]["learning_rate"]
    if isinstance(lr, dict):  # tensorflow-addons' TriangularCyclicalLearningRate, saved with the model
        c = lr["config"]
        lr = (f"cyclic {c['initial_learning_rate']:g} -> {c['maximal_learning_rate']:g}, half-cycle "
              f"{c['step_size'] / steps_per_epoch:.0f} epochs")
    else:
        lr = f"{lr:.2g} at the end (schedule not saved)"
    return {"optimizer": opt["class_name"], "momentum": config.get("momentum"),
            "nesterov": config.get("nesterov"), "learning rate": lr}


def rebuild(name: str, folder=None, kaf_mode: str = "table", precision: str | None = None):
    """A native Keras 3 ResNet20 (thesis variant, logits) carrying the published weights.

    ``precision="mixed_float16"`` computes in float16 as the published SavedModels do; the default
    float32 evaluates the same weights without float16 rounding. They differ little except for the
    ridge-initialised KAFs, whose large mixing coefficients (|alpha| up to ~73) make float16 sums noisy.
    ``None`` is Keras' floatx: float32, or float64 at the smoke profile.
    Returns ``(model, saved)`` where ``saved`` is the loaded SavedModel, for comparisons.
    """
    precision = precision or keras.config.floatx()
    if precision not in ("float32", "float64", "mixed_float16"):
        raise ValueError(f"precision must be 'float32', 'float64' or 'mixed_float16' (got {precision!r})")
    act, _ = PUBLISHED[name]
    saved = saved_model(name, folder)
    options = {"mode": kaf_mode} if act.startswith("kaf") else {}
    with models.precision(precision):
        model = models.resnet(20, act, variant="thesis", l2=0.0, **options)
    source = [v for v in saved.variables]
    i = 0
    for layer in model.layers:
        if not layer.weights:
            continue
        if isinstance(layer, activations.KAF):
            names = ["mix_coeffs", "dictionary"] + (["kernel_bw"] if layer.trainable_bandwidth else [])
            values = {}
            for expected in names:
                v = source[i]
                if expected not in v.name:
                    raise ThesisModelError(f"{name}: expected {expected} for {layer.name}, found {v.name}")
                values[expected] = v.numpy().astype(np.float32)
                i += 1
            layer.alpha.assign(values["mix_coeffs"].reshape(layer.alpha.shape))
            layer.dict.assign(values["dictionary"].reshape(layer.dict.shape))
            if "kernel_bw" in values:
                layer.gamma.assign(values["kernel_bw"].reshape(layer.gamma.shape))
            continue
        for w in layer.weights:
            v = source[i]
            if tuple(v.shape) != tuple(w.shape):
                raise ThesisModelError(f"{name}: shape mismatch at {layer.name}/{w.name}: {tuple(v.shape)} "
                                       f"in the SavedModel ({v.name}) vs {tuple(w.shape)}")
            w.assign(v.numpy().astype(np.float32))
            i += 1
    if i != len(source):
        raise ThesisModelError(f"{name}: {len(source) - i} SavedModel variables were not used")
    return model, saved


def compare(model, saved, x) -> dict:
    """Max differences between the rebuild and the SavedModel on ``x``: probabilities and labels."""
    import tensorflow as tf
    ours = tf.nn.softmax(tf.cast(model(x, training=False), tf.float32)).numpy()
    serve = saved.signatures["serving_default"]
    (input_name,) = serve.structured_input_signature[1]  # "input_1", "input_2", ... as saved
    theirs = next(iter(serve(**{input_name: tf.constant(x)}).values())).numpy()
    return {"max_abs_prob_diff": float(np.abs(ours - theirs).max()),
            "mean_abs_prob_diff": float(np.abs(ours - theirs).mean()),
            "label_agreement": float(np.mean(ours.argmax(1) == theirs.argmax(1)))}


def audit(name: str, x, y, eps: float = 8 / 255, alpha: float = 2 / 255, steps: int = 20, restarts: int = 1,
          apgd_steps: int = 20, seed: int = 0, rebuilt=None, runs=None, checklist_n: int | None = None) -> dict:
    """Chapter 7's attacks on published model ``name``, stored as a record and reused when asked again.

    On ``x, y``: clean accuracy in float32 and float16, FGSM, PGD on the true labels (and its
    examples fed to the float16 rebuild), PGD on the model's own predictions as the thesis ran it,
    APGD-CE/DLR, the worst case per image over PGD and both APGDs, and the sanity checklist.
    ``rebuilt``: the ``(float32, float16)`` rebuilds of ``name`` if already made. The record's key
    holds the model's sha256, the images, the attack and the code, so a rebuilt book reuses it and
    anything else attacks afresh. ``checklist_n``: run the checklist on the first that many images only.
    """
    from . import art_attacks
    if name not in PUBLISHED:
        raise ThesisModelError(f"unknown published model {name!r}; choose one of {', '.join(PUBLISHED)}")
    spec = {"model": name, "sha256": checksums()[f"{name}.zip"], "images": records.array_digest(x, y), "n": len(x),
            "eps": eps, "alpha": alpha, "steps": steps, "restarts": restarts, "apgd_steps": apgd_steps,
            "seed": seed, "precision": keras.config.floatx(),
            "masks": ["clean", "pgd", "worst", "fgsm", "pgd_predicted"]}  # what the record keeps per image
    m = evaluation.checklist_images(checklist_n, len(x))
    if m < len(x):  # only then: records of the whole-set checklist keep their keys
        spec["checklist_n"] = m
    path = Path(runs or records.runs_dir()) / "published" / f"{name}-audit-{records.config_key(spec)}.json"

    def attack():
        model, model_fp16 = rebuilt or (rebuild(name)[0], rebuild(name, precision="mixed_float16")[0])
        pgd = dict(eps=eps, alpha=alpha, steps=steps, restarts=restarts, seed=seed)
        x_pgd, pgd_ok = attacks.pgd(model, x, y, **pgd)
        apgd = art_attacks.autoattack(model, x, y, eps=eps, steps=apgd_steps, seed=seed)
        clean = attacks.predict_labels(model, x) == np.asarray(y)
        fgsm_ok = attacks.predict_labels(model, attacks.fgsm(model, x, y, eps=eps)[0]) == np.asarray(y)
        predicted_ok = attacks.pgd(model, x, y, labels="predicted", **pgd)[1]
        return {"spec": spec, "result": {
            "clean": float(clean.mean()),
            # per-image masks ('0'/'1'), for intervals and paired tests (kafnotes.stats)
            "clean_images": evaluation.mask_text(clean), "pgd_images": evaluation.mask_text(pgd_ok),
            "worst_images": evaluation.mask_text(pgd_ok & apgd["robust"]),
            "fgsm_images": evaluation.mask_text(fgsm_ok), "pgd_predicted_images": evaluation.mask_text(predicted_ok),
            "clean_float16": attacks.clean_accuracy(model_fp16, x, y),
            "fgsm": float(fgsm_ok.mean()),
            "pgd": float(pgd_ok.mean()),
            "pgd_to_float16": float(np.mean(attacks.predict_labels(model_fp16, x_pgd) == y)),
            "pgd_predicted": float(predicted_ok.mean()),
            "apgd_ce": apgd["apgd_ce"], "apgd_dlr": apgd["apgd_dlr"],
            "worst": float(np.mean(pgd_ok & apgd["robust"])),  # per image: broken by any of the three
            # the checklist attacks with one restart: at restarts=1 it starts from the PGD above
            "checks": attacks.sanity_checks(model, x[:m], y[:m], eps=eps, alpha=alpha, steps=steps, seed=seed,
                                            pgd_result=(x_pgd[:m], pgd_ok[:m]) if restarts == 1 else None),
        }}

    return records.reuse_or_record(path, attack)["result"]


def selection(P: dict) -> list[str]:
    """The published models a chapter audits at profile ``P``: two at ``smoke``, all 13 otherwise."""
    return ["resnet20_relu_ocrob", "resnet20_kaf_ocrob_lrfinder"] if P["name"] == "smoke" else list(PUBLISHED)


# The ReLU model trained like Table 7.2's KAF rows (a learning-rate range finder per activation, the
# "_lrf"/"_lrfinder" suffix), so the like-for-like baseline; "resnet20_relu_ocrob" was trained without it.
REFERENCE_RELU = "resnet20_relu_ocrob_lrf"


def relu_models(names) -> list[str]:
    """The ReLU models among ``names``, ``REFERENCE_RELU`` first, the others in their order."""
    relus = [n for n in names if PUBLISHED[n][0] == "relu"]
    return sorted(relus, key=lambda n: n != REFERENCE_RELU)


def reference_relu(names) -> str | None:
    """The ReLU model the published models are paired against: ``REFERENCE_RELU`` when it is among
    ``names``, else the first ReLU model there (``smoke`` audits only ``resnet20_relu_ocrob``), else None."""
    return next(iter(relu_models(names)), None)


def audit_at(name: str, x, y, P: dict, rebuilt=None, runs=None) -> dict:
    """``audit`` with profile ``P``'s attack (eps, PGD step, steps, restarts, the diagnostics' APGD
    iterations, seed, the checklist's images): chapter 7 and the closing chapter ask for the same record this way."""
    return audit(name, x, y, eps=P["eps"], alpha=P["pgd_alpha"], steps=P["pgd_steps"], restarts=P["pgd_restarts"],
                 apgd_steps=P["diagnostic_apgd_steps"], seed=P["seed"], rebuilt=rebuilt, runs=runs,
                 checklist_n=P.get("checklist_n"))


def as_published_at(name: str, x, y, P: dict, runs=None) -> dict:
    """``attack_as_published`` with profile ``P``'s PGD (eps, step, steps, seed) on the first
    ``P["saved_n"]`` of ``x, y`` (all when None): the float16 graph is slow on a CPU."""
    m = evaluation.first_n(P.get("saved_n"), len(x), "saved_n")
    return attack_as_published(name, x[:m], y[:m], eps=P["eps"], alpha=P["pgd_alpha"], steps=P["pgd_steps"],
                               seed=P["seed"], runs=runs)


def saved_against_rebuild(audit: dict, as_saved: dict):
    """PGD on the SavedModel as saved minus PGD on the float rebuild (the audit's), paired on the
    images both ran on (the as-saved attack may run on the first ``saved_n`` only)."""
    saved = as_saved["robust_images"]
    return stats.paired(saved, audit["pgd_images"][:len(saved)])


def pgd(name: str, x, y, eps: float, alpha: float, steps: int, restarts: int = 1, seed: int = 0, rebuilt=None,
        runs=None) -> dict:
    """PGD on the true labels against published model ``name``'s float rebuild (``rebuilt`` if already
    made): ``robust`` and ``robust_images``, recorded beside its audit (chapter 7's step and eps curves)."""
    if name not in PUBLISHED:
        raise ThesisModelError(f"unknown published model {name!r}; choose one of {', '.join(PUBLISHED)}")
    spec = {"model": name, "sha256": checksums()[f"{name}.zip"], "images": records.array_digest(x, y), "n": len(x),
            "eps": eps, "alpha": alpha, "steps": steps, "restarts": restarts, "seed": seed, "attack": "pgd",
            "precision": keras.config.floatx()}
    path = Path(runs or records.runs_dir()) / "published" / f"{name}-pgd-{records.config_key(spec)}.json"

    def attack():
        _, robust = attacks.pgd(rebuilt or rebuild(name)[0], x, y, eps=eps, alpha=alpha, steps=steps,
                                restarts=restarts, seed=seed)
        return {"spec": spec, "robust": float(robust.mean()), "robust_images": evaluation.mask_text(robust)}

    return records.reuse_or_record(path, attack)


# Chapter 7's robustness curves: PGD against its number of steps, and against eps (in 1/255).
CURVE_STEPS = [1, 2, 5, 10, 20, 50]
CURVE_EPS = [2, 4, 8, 12, 16]


def curves(name: str, x, y, P: dict, rebuilt=None, runs=None) -> dict:
    """Published model ``name``'s PGD accuracy (true labels, one restart) against the number of steps
    (at the profile's eps and step; up to 10 at smoke) and against eps (step eps/4, at least 0.5/255;
    the profile's steps): ``steps``, ``by_steps``, ``eps``, ``by_eps``, each point recorded by ``pgd``."""
    steps = CURVE_STEPS[:4] if P["name"] == "smoke" else CURVE_STEPS
    at = lambda **attack: pgd(name, x, y, seed=P["seed"], rebuilt=rebuilt, runs=runs, **attack)["robust"]  # noqa: E731
    return {"steps": steps, "by_steps": [at(eps=P["eps"], alpha=P["pgd_alpha"], steps=s) for s in steps],
            "eps": CURVE_EPS,
            "by_eps": [at(eps=e / 255, alpha=max(e / 4, 0.5) / 255, steps=P["pgd_steps"]) for e in CURVE_EPS]}


def autoattack(name: str, x, y, P: dict, rebuilt=None, runs=None) -> dict:
    """Standard AutoAttack (``kafnotes.autoattack``, sized by profile ``P``) on published model
    ``name``'s float rebuild, recorded beside its audit and reused when asked again."""
    if name not in PUBLISHED:
        raise ThesisModelError(f"unknown published model {name!r}; choose one of {', '.join(PUBLISHED)}")
    folder = Path(runs or records.runs_dir()) / "published"
    return evaluation.autoattack_record(folder, f"{name}-autoattack", lambda: rebuilt or rebuild(name)[0], x, y, P,
                                        model=name, sha256=checksums()[f"{name}.zip"],
                                        precision=keras.config.floatx())


class AsPublished:
    """A published SavedModel as its author's attacks saw it: the serving signature (the precision and
    softmax head that were saved) behind a logits-like output, log(clip(p, 1e-7, 1 - 1e-7)). Its
    cross-entropy is the one Keras computes on probabilities (which clips them the same way), so an
    image whose float16 softmax saturates has a zero gradient here, as it had for ART's PGD."""

    def __init__(self, name: str, folder=None):
        self.name = name
        self._saved = saved_model(name, folder)  # keeps the loaded graph alive
        self._serve = self._saved.signatures["serving_default"]
        (self._input,) = self._serve.structured_input_signature[1]

    def __call__(self, x, training=False):
        import tensorflow as tf
        p = next(iter(self._serve(**{self._input: tf.cast(x, tf.float32)}).values()))
        return tf.math.log(tf.clip_by_value(tf.cast(p, tf.float32), 1e-7, 1 - 1e-7))


def attack_as_published(name: str, x, y, eps: float = 8 / 255, alpha: float = 2 / 255, steps: int = 20,
                        seed: int = 0, runs=None) -> dict:
    """PGD (true labels, one restart) on the SavedModel as saved (``AsPublished``), recorded beside
    the audit: ``robust_images`` and ``robust``, or ``error`` when the saved graph cannot be
    differentiated (a custom gradient that was not saved)."""
    if name not in PUBLISHED:
        raise ThesisModelError(f"unknown published model {name!r}; choose one of {', '.join(PUBLISHED)}")
    spec = {"model": name, "sha256": checksums()[f"{name}.zip"], "images": records.array_digest(x, y), "n": len(x),
            "eps": eps, "alpha": alpha, "steps": steps, "seed": seed, "attack": "pgd-as-published"}
    path = Path(runs or records.runs_dir()) / "published" / f"{name}-as-published-{records.config_key(spec)}.json"

    def attack():
        model = AsPublished(name)
        clean = attacks.predict_labels(model, x) == np.asarray(y)
        try:
            _, robust = attacks.pgd(model, x, y, eps=eps, alpha=alpha, steps=steps, restarts=1, seed=seed)
        except Exception as e:  # noqa: BLE001 - TF wraps it in autograph's StagingError
            if "No gradient defined" not in str(e):
                raise
            return {"spec": spec, "clean": float(clean.mean()), "clean_images": evaluation.mask_text(clean),
                    "error": next(line.strip() for line in str(e).splitlines() if "No gradient defined" in line)[:160]}
        return {"spec": spec, "clean": float(clean.mean()), "clean_images": evaluation.mask_text(clean),
                "robust": float(robust.mean()), "robust_images": evaluation.mask_text(robust)}

    return records.reuse_or_record(path, attack)
