import shutil
from pathlib import Path

import numpy as np
import pytest

import kafnotes
from kafnotes import data, evaluation, records, training
from kafnotes.profiles import get_profile
from kafnotes.training import TrainConfig


def _package_copy(tmp_path):
    copy = tmp_path / "kafnotes"
    shutil.copytree(Path(kafnotes.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__", "_data"))
    return copy


def test_fingerprint_follows_computing_modules_and_ignores_presentation(tmp_path):
    pkg = _package_copy(tmp_path)
    before = records.code_fingerprint(pkg)
    assert before == records.code_fingerprint(Path(kafnotes.__file__).parent)
    for name in ("plots.py", "chapter.py", "cli.py"):  # a caption or a figure changes no result
        (pkg / name).write_text((pkg / name).read_text() + "\n# reworded\n")
    records.code_fingerprint.cache_clear()
    assert records.code_fingerprint(pkg) == before
    (pkg / "training.py").write_text((pkg / "training.py").read_text() + "\n# changed\n")
    records.code_fingerprint.cache_clear()
    assert records.code_fingerprint(pkg) != before
    (pkg / "training.py").unlink()
    (pkg / "new_module.py").write_text("x = 1\n")  # unknown modules count as computing ones
    records.code_fingerprint.cache_clear()
    assert records.code_fingerprint(pkg) not in (before, records.code_fingerprint(_package_copy(tmp_path / "b")))


def test_fingerprint_names_the_code_this_process_imported(tmp_path):
    pkg = _package_copy(tmp_path)
    first = records.code_fingerprint(pkg)
    (pkg / "attacks.py").write_text("# edited while a run is going\n")
    assert records.code_fingerprint(pkg) == first  # cached: the edit is not what this process runs


def test_evaluation_is_recorded_and_reused(runs):
    cifar = data.load_cifar10("sample", n_train=100, n_test=40, seed=0)
    run = training.train(TrainConfig(arch="light_cnn", activation="relu", method="standard", optimizer="adam",
                                     schedule="constant", lr=3e-3, epochs=1, batch_size=50, eval_images=40),
                         cifar, runs=runs, verbose=False)
    P = get_profile("smoke", n_eval=40, pgd_steps=2)
    first = evaluation.evaluate(run, P, cifar)
    assert 0 <= first["robust"] <= first["clean"] <= 1 and first["attack"]["n"] == 40
    stored = list(run.path.glob("eval-*.json"))
    assert len(stored) == 1
    stored[0].write_text(stored[0].read_text().replace(f'"robust": {first["robust"]}', '"robust": 0.123'))
    assert evaluation.evaluate(run, P, cifar)["robust"] == 0.123  # read back, not recomputed
    other = evaluation.evaluate(run, P, cifar, steps=3)  # another attack is another record
    assert len(list(run.path.glob("eval-*.json"))) == 2 and np.isfinite(other["robust"])


def test_a_resumed_computation_counts_the_time_its_interrupted_runs_spent(tmp_path):
    record = records.reuse_or_record(tmp_path / "eval-x.json", lambda: {"robust": 0.5, "seconds_earlier": 600.0})
    assert record["seconds"] >= 600.0 and "seconds_earlier" not in record
    assert "seconds_earlier" not in records.read_json(tmp_path / "eval-x.json")


def test_standard_autoattack_keeps_its_progress_only_until_the_record_lands(runs):
    cifar = data.load_cifar10("sample", n_train=100, n_test=40, seed=0)
    run = training.train(TrainConfig(arch="light_cnn", activation="relu", method="standard", optimizer="adam",
                                     schedule="constant", lr=3e-3, epochs=1, batch_size=50, eval_images=40),
                         cifar, runs=runs, verbose=False)
    P = get_profile("smoke", n_eval=40, aa_n=20, apgd_steps=2, square_queries=5)
    record = evaluation.standard_autoattack(run, P, cifar)
    assert record["attack"]["n"] == 20 and len(record["robust_images"]) == 20
    assert list(run.path.glob("eval-*.json")) and not list(run.path.glob("*.progress.npz"))


def test_the_worst_case_is_per_image_over_recorded_attacks(runs):
    cifar = data.load_cifar10("sample", n_train=100, n_test=40, seed=0)
    run = training.train(TrainConfig(arch="light_cnn", activation="relu", method="standard", optimizer="adam",
                                     schedule="constant", lr=3e-3, epochs=1, batch_size=50, eval_images=40),
                         cifar, runs=runs, verbose=False)
    P = {**get_profile("smoke", n_eval=40, pgd_steps=2, apgd_steps=2), "seed": 0}
    ce, cw = evaluation.evaluate(run, P, cifar), evaluation.evaluate(run, P, cifar, loss="cw")
    apgd = evaluation.stronger_attacks(run, P, cifar)
    for e in (ce, cw, apgd):
        assert len(e["robust_images"]) == 40 and e["robust_images"].count("1") / 40 == pytest.approx(
            e.get("robust", e.get("apgd_worst")))
    assert set(apgd["checks"]) and evaluation.stronger_attacks(run, P, cifar) == apgd  # recorded, reused
    worst = evaluation.worst_case(ce, cw, apgd)
    assert worst <= min(ce["robust"], cw["robust"], apgd["apgd_worst"])
    # two attacks that each break half the images, different halves, leave none robust
    halves = {"robust_images": "1" * 20 + "0" * 20}, {"robust_images": "0" * 20 + "1" * 20}
    assert evaluation.worst_case(*halves) == 0.0
    with pytest.raises(ValueError, match="same images"):
        evaluation.worst_case(ce, {"robust_images": "1" * 10})


def test_the_test_records_folder_is_removed_when_the_test_process_exits():
    import subprocess
    import sys
    code = ("import os; from kafnotes.settings import test_environment; test_environment(); "
            "d = os.environ['KAFNOTES_RUNS']; open(os.path.join(d, 'record.json'), 'w').close(); print(d)")
    folder = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert folder and "kafnotes-test-runs-" in folder
    assert not Path(folder).exists()


def test_environment_stamp_names_the_cpu_and_its_kernels():
    """Records made on two machines can only be compared if they say which CPU and kernels ran."""
    env = records.environment()
    assert env["cpu"] and env["machine"]
    if env["machine"] == "x86_64":
        assert "avx" in env["cpu_flags"].split()
    assert env["onednn_max_isa"] == "AVX2"  # kafnotes' cap, in force in this process
    assert "intra_op_threads" in env


_TINY_SMOKE_RUN = """
from kafnotes import chapter, data, records, training
cifar = data.load_cifar10("sample", n_train=100, n_test=40, seed=0)
config = training.TrainConfig(arch="light_cnn", activation="relu", method="standard", optimizer="adam",
                              schedule="constant", lr=3e-3, epochs=1, batch_size=50, eval_images=40)
run = training.train(config, cifar, verbose=False)
print(run.path.name, f"{run.history[-1]['loss']:.5f}")
"""


def _tiny_smoke_run(package_parent, runs):
    import os
    import subprocess
    import sys
    env = {**os.environ, "PYTHONPATH": str(package_parent), "KAFNOTES_RUNS": str(runs)}
    out = subprocess.run([sys.executable, "-c", _TINY_SMOKE_RUN], capture_output=True, text=True, env=env,
                         check=True, cwd=package_parent).stdout.split()
    return out[0], out[1]  # the run's folder (its key) and the loss a chapter would print


def test_a_numerics_change_that_forgets_its_bump_keeps_the_key_but_changes_the_smoke_output(tmp_path):
    """Keys name NUMERICS_VERSION, not the code, so records survive refactors. A change that alters
    numbers and forgets to bump would then reuse stale records; the smoke outputs catch it, because
    `pytest --nbval` recomputes every chapter from an empty records folder (``test_environment``)."""
    pkg = _package_copy(tmp_path / "altered")
    shutil.copytree(Path(kafnotes.__file__).parent / "_data", pkg / "_data")
    source = (pkg / "training.py").read_text()
    assert "loss = ce(y, logits)" in source
    (pkg / "training.py").write_text(source.replace("loss = ce(y, logits)", "loss = 1.01 * ce(y, logits)"))
    as_is = _tiny_smoke_run(Path(kafnotes.__file__).parent.parent, tmp_path / "runs-a")
    altered = _tiny_smoke_run(pkg.parent, tmp_path / "runs-b")
    assert altered[0] == as_is[0]  # same key: the published edition would reuse the old record ...
    assert altered[1] != as_is[1]  # ... but the recomputed smoke output differs, so nbval fails


def test_keys_follow_the_numerics_version_and_the_data_not_the_file_name(monkeypatch):
    cifar = data.load_cifar10("sample", n_train=100, n_test=40, seed=0)
    ident = {"config": {"lr": 1.0}, "data": {"checksum": cifar.checksum}}
    key = records.config_key(ident)
    monkeypatch.setattr(records, "NUMERICS_VERSION", records.NUMERICS_VERSION + 1)
    assert records.config_key(ident) != key
    other = data.load_cifar10("sample", n_train=100, n_test=40, seed=1)  # other images, same count
    assert other.checksum != cifar.checksum
    assert data.load_cifar10(data.sample_path(), n_train=100, n_test=40, seed=0).checksum == cifar.checksum


def test_records_only_mode_refuses_to_train_or_attack_and_says_how_to_fix_it(runs, monkeypatch):
    cifar = data.load_cifar10("sample", n_train=100, n_test=40, seed=0)
    config = TrainConfig(arch="light_cnn", activation="relu", method="standard", optimizer="adam",
                         schedule="constant", lr=3e-3, epochs=1, batch_size=50, eval_images=40)
    P = get_profile("smoke", n_eval=40, pgd_steps=2)
    monkeypatch.setenv(records.ENV_RECORDS_ONLY, "1")
    with pytest.raises(records.MissingRecord, match="KAFNOTES_RECORDS_ONLY=1 forbids"):
        training.train(config, cifar, runs=runs, verbose=False)
    monkeypatch.delenv(records.ENV_RECORDS_ONLY)
    run = training.train(config, cifar, runs=runs, verbose=False)
    monkeypatch.setenv(records.ENV_RECORDS_ONLY, "1")
    assert training.train(config, cifar, runs=runs, verbose=False).reused  # a finished run is read back
    with pytest.raises(records.MissingRecord, match="eval-"):
        evaluation.evaluate(run, P, cifar)


def test_a_transfer_attack_is_recorded_beside_its_target_and_matches_the_attack_it_replaces(runs, monkeypatch):
    from kafnotes import attacks
    cifar = data.load_cifar10("sample", n_train=100, n_test=40, seed=0)
    config = lambda act: TrainConfig(arch="light_cnn", activation=act, method="standard", optimizer="adam",
                                     schedule="constant", lr=3e-3, epochs=1, batch_size=50, eval_images=40)
    source, target = (training.train(config(a), cifar, runs=runs, verbose=False) for a in ("relu", "elu"))
    P = get_profile("smoke", n_eval=40, pgd_steps=2)
    first = evaluation.transfer(source, target, P, cifar)
    x, y = evaluation.eval_subset(P, cifar)
    x_adv, _ = attacks.pgd(source.model, x, y, eps=P["eps"], alpha=P["pgd_alpha"], steps=2, restarts=1)
    assert first["robust_images"] == evaluation.mask_text(attacks.predict_labels(target.model, x_adv) == y)
    assert first["attack"]["transfer_from"] == source.path.name and list(target.path.glob("eval-*.json"))
    monkeypatch.setenv(records.ENV_RECORDS_ONLY, "1")
    assert evaluation.transfer(source, target, P, cifar) == first  # read back, not attacked again
    with pytest.raises(records.MissingRecord):
        evaluation.transfer(target, source, P, cifar)  # the other direction is another record
