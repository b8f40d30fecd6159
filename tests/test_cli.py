import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from kafnotes import cli
from kafnotes.profiles import get_profile

ROOT = Path(__file__).resolve().parents[1]


def test_chapters_are_found_and_picked():
    names = [p.stem for p in cli.chapters(ROOT)]
    assert names == sorted(names) and names[0].startswith("01_")
    assert [p.stem for p in cli.pick_chapters(ROOT, ["02"])] == [n for n in names if n.startswith("02")]
    with pytest.raises(SystemExit, match="no chapter matches"):
        cli.pick_chapters(ROOT, ["99"])


def test_a_copy_staged_by_refresh_is_not_a_chapter(tmp_path):
    (tmp_path / "book").mkdir()
    for name in ("07_audit.ipynb", "07_audit.refresh.ipynb"):
        (tmp_path / "book" / name).write_text("{}")
    assert [p.name for p in cli.pick_chapters(tmp_path, ["07"])] == ["07_audit.ipynb"]


def test_parameters_are_parsed_as_literals():
    assert cli.parse_params(["epochs=3", "activations=['relu', 'kaf']", "data=sample"]) == {
        "epochs": 3, "activations": ["relu", "kaf"], "data": "sample"}
    with pytest.raises(SystemExit, match="key=value"):
        cli.parse_params(["epochs"])


def test_unknown_profile_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="valid profiles: smoke, cpu, study, full"):
        cli.main(["run", "01", "--profile", "tiny", "--root", str(ROOT), "--out", str(tmp_path)])


def test_every_chapter_is_parameterized_and_in_the_toc():
    toc = (ROOT / "_toc.yml").read_text()
    for nb_path in cli.chapters(ROOT):
        assert f"book/{nb_path.stem}" in toc
        nb = json.loads(nb_path.read_text())
        tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(tagged) == 1 and "profile = " in "".join(tagged[0]["source"])
        first_code = next(c for c in nb["cells"] if c["cell_type"] == "code")
        assert "google.colab" in "".join(first_code["source"])  # installs on Colab, nothing elsewhere
        executed = [c.get("execution_count") is not None for c in nb["cells"] if c["cell_type"] == "code"]
        assert all(executed), f"{nb_path.name} is committed unexecuted: run kafnotes refresh"
        assert any(c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code")


# the profile keys that set a chapter's scale: a chapter that reads one must let `-p` override it
SCALE_KEYS = {"seeds", "epochs", "adv_epochs", "clean_epochs", "norm_steps", "lr_finder_steps", "eps", "pgd_steps",
              "pgd_restarts", "apgd_steps", "n_eval", "square_queries", "adv_lr_min", "adv_lr_max", "adv_momentum"}


def test_a_chapter_passes_its_profile_parameters_to_the_profile():
    """``-p pgd_steps=50`` must reach the profile: a parameter named like a profile key but not passed
    to ``chapter.start`` would be ignored without a word. And the scale a chapter reads from its
    profile (epochs, attack strength, evaluation images) is a parameter too."""
    keys = set(get_profile("smoke"))
    for nb_path in cli.chapters(ROOT):
        cells = ["".join(c["source"]) for c in json.loads(nb_path.read_text())["cells"] if c["cell_type"] == "code"]
        params = next(s for s in cells if s.startswith("profile = "))
        names = set(re.findall(r"^(\w+) = ", params, re.M))
        start = next(s for s in cells if "chapter.start(" in s)
        for name in sorted(names & keys):
            assert f"{name}={name}" in start, f"{nb_path.name}: parameter {name} never reaches chapter.start"
        # the scale a chapter reads from its profile, directly or through chapter.evaluate/adversarial_config
        code = "\n".join(cells)
        read = set(re.findall(r'P\["(\w+)"\]', code)) & SCALE_KEYS
        if "chapter.evaluate(" in code or "chapter.stronger_attacks(" in code:
            read |= {"pgd_steps", "pgd_restarts", "n_eval"}  # eps too, unless the call sets it (chapter 2)
        if "standard_autoattack(" in code or "thesis_models.autoattack(" in code:
            read |= {"apgd_steps", "square_queries"}
        if "chapter.adversarial_config(" in code:
            read |= {"adv_epochs", "eps"}
        if "chapter.resnet_schedule(" in code:
            read |= {"adv_lr_min", "adv_lr_max", "adv_momentum"}
        missing = read - names
        assert not missing, f"{nb_path.name} reads {sorted(missing)} from its profile but has no parameter for them"


def test_run_executes_a_chapter_into_the_profile_folder(tmp_path):
    """One real papermill run with overrides; the committed source stays untouched."""
    source = (ROOT / "book" / "01_activation_functions.ipynb").read_bytes()
    result = subprocess.run([sys.executable, "-m", "kafnotes.cli", "run", "01", "--profile", "smoke",
                             "-p", "epochs=1", "--root", str(ROOT), "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stderr, result.stderr  # kernels start quietly
    assert "ERROR" not in result.stdout + result.stderr  # and stop quietly: nothing failed
    out = tmp_path / "book" / "01_activation_functions.ipynb"
    nb = json.loads(out.read_text())
    injected = [c for c in nb["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert injected and "epochs = 1" in "".join(injected[0]["source"])
    assert "remove-input" in injected[0]["metadata"]["tags"]
    assert list((tmp_path / "runs").rglob("record.json"))  # run records land beside the outputs
    assert (ROOT / "book" / "01_activation_functions.ipynb").read_bytes() == source


def _log_run(nb: Path) -> float:
    """A stand-in chapter for the scheduler: notes its start and end times, fails if asked to. A
    chapter whose metadata names a partner waits (up to a minute) until the partner has started too,
    which only happens if the two run at the same time."""
    import time
    start = time.time()
    if "fail" in nb.stem:
        raise RuntimeError(f"{nb.stem} failed")
    (nb.parent / f"{nb.stem}.started").touch()
    partner = json.loads(nb.read_text())["metadata"].get("partner")
    while partner and not (nb.parent / f"{partner}.started").exists():
        if time.time() - start > 60:
            raise RuntimeError(f"{nb.stem} never ran alongside {partner}")
        time.sleep(0.05)
    time.sleep(0.3)
    (nb.parent / f"{nb.stem}.times").write_text(f"{start} {time.time()}")
    return 0.3


def _chapter(folder: Path, stem: str, after=(), partner=None) -> Path:
    path = folder / f"{stem}.ipynb"
    path.write_text(json.dumps({"cells": [], "metadata": {"kafnotes": {"after": list(after)}, "partner": partner}}))
    return path


def test_parallel_chapters_wait_for_the_chapters_they_reuse(tmp_path):
    # 07 and 01 are independent and wait for each other: they finish only if they run in parallel
    nbs = [_chapter(tmp_path, "05_train"), _chapter(tmp_path, "06_attack", after=["05_train"]),
           _chapter(tmp_path, "07_other", partner="01_first"), _chapter(tmp_path, "01_first", partner="07_other")]
    cli.run_chapters(nbs, _log_run, jobs=2, label="test")
    times = {p.stem: [float(t) for t in p.read_text().split()] for p in tmp_path.glob("*.times")}
    assert set(times) == {"05_train", "06_attack", "07_other", "01_first"}
    assert times["06_attack"][0] >= times["05_train"][1]  # started only after 05 finished


def test_a_failed_chapter_fails_the_run_and_starts_nothing_new(tmp_path):
    nbs = [_chapter(tmp_path, "02_fail"), _chapter(tmp_path, "03_after", after=["02_fail"])]
    with pytest.raises(RuntimeError, match="02_fail failed"):
        cli.run_chapters(nbs, _log_run, jobs=2, label="test")
    assert not (tmp_path / "03_after.times").exists()
    with pytest.raises(SystemExit, match="--jobs must be at least 1"):
        cli.main(["run", "01", "--jobs", "0", "--root", str(ROOT), "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="--jobs must be at least 1"):
        cli.main(["refresh", "01", "--jobs", "0", "--root", str(ROOT)])


def test_train_command_trains_attacks_and_records(tmp_path, capsys):
    cli.main(["train", "--arch", "resnet20", "--activation", "kaf_elu", "--block", "he", "--data", "sample",
              "--n-train", "60", "--n-test", "30", "--epochs", "1", "--batch-size", "32", "--pgd-steps", "2",
              "--n-eval", "16", "--runs", str(tmp_path)])
    out = capsys.readouterr().out
    result = json.loads(out[out.rindex("\n{") + 1:])  # the summary is printed last
    assert result["n_eval"] == 16 and 0 <= result["robust"] <= result["clean"] <= 1
    (record,) = tmp_path.glob("*/record.json")
    config = json.loads(record.read_text())["config"]
    assert config["arch_options"] == {"variant": "he"} and config["activation"] == "kaf_elu"
    assert list(record.parent.glob("cli-eval-pgd2-1-n16.json"))


def test_records_only_fails_a_chapter_that_would_train_and_names_what_is_missing(tmp_path):
    """The published edition's guard: with --records-only, a missing record stops the build."""
    result = subprocess.run([sys.executable, "-m", "kafnotes.cli", "run", "01", "--profile", "smoke", "--records-only",
                             "--root", str(ROOT), "--out", str(tmp_path / "out"), "--runs", str(tmp_path / "empty")],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode != 0
    assert "MissingRecord" in result.stdout + result.stderr
    assert "KAFNOTES_RECORDS_ONLY=1 forbids computing it" in result.stdout + result.stderr


def test_the_study_profile_reads_its_committed_records():
    args = SimpleNamespace(runs=None, profile="study")
    assert cli.records_for(args, ROOT, ROOT / "outputs" / "study") == (ROOT / "results" / "study" / "runs").resolve()
    args = SimpleNamespace(runs=None, profile="smoke")
    assert cli.records_for(args, ROOT, ROOT / "outputs" / "smoke") == ROOT / "outputs" / "smoke" / "runs"


def test_order_check_names_the_cells_another_thread_count_moves(tmp_path, capsys):
    """A stand-in chapter with one cell that prints the thread count (as a sum whose order follows
    it would) and one that does not: order-check lists the first only and fails."""
    (tmp_path / "_toc.yml").write_text("root: intro\n")
    (tmp_path / "book").mkdir()
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "nbval_sanitize.cfg").write_text((ROOT / "tests" / "nbval_sanitize.cfg").read_text())
    code = lambda i, src, out: {"cell_type": "code", "id": f"c{i}", "execution_count": i, "metadata": {},
                                "source": src, "outputs": [{"output_type": "stream", "name": "stdout", "text": out}]}
    nb = {"nbformat": 4, "nbformat_minor": 5, "cells": [
        code(1, "import os\nprint(os.environ['KAFNOTES_THREADS'])", "2\n"), code(2, "print(6 * 7)", "42\n")],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}}
    (tmp_path / "book" / "01_sums.ipynb").write_text(json.dumps(nb))
    with pytest.raises(SystemExit, match="1 compared cell"):
        cli.main(["order-check", "--root", str(tmp_path)])
    out = capsys.readouterr().out
    assert "code cell 0 moves with 1 thread(s)" in out and "-[stdout] 2" in out and "+[stdout] 1" in out
    assert "code cell 1" not in out
    assert os.environ["KAFNOTES_THREADS"] == "2"  # the next chapters nbval runs keep the reference count
    with pytest.raises(SystemExit, match="reference count"):
        cli.main(["order-check", "--threads", "2", "--root", str(tmp_path)])
