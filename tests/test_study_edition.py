"""The published edition builds from its committed records, training and attacking nothing.

``results/study/edition.json`` lists the chapters whose `study` records are all committed; each is
executed here with ``--records-only``, so a missing or orphaned record (a config change, a numerics
bump) fails the test and names the record. Chapters join the list as their runs land
(``results/study/README.md``); with all eight listed, this is the check that the edition is complete.
The records are keyed on the JPEG-q75 stand-in's checksum, so the test needs that file.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EDITION = ROOT / "results" / "study" / "edition.json"
STAND_IN = "cifar10-jpeg75-50k.npz"


def stand_in() -> Path | None:
    """The 50k stand-in: $KAFNOTES_CIFAR10 if it names it, else ``shared/data`` beside a parent folder."""
    named = os.environ.get("KAFNOTES_CIFAR10")
    if named and Path(named).name == STAND_IN and Path(named).is_file():
        return Path(named).resolve()
    for parent in [ROOT, *ROOT.parents][:6]:
        path = parent / "shared" / "data" / STAND_IN
        if path.is_file():
            return path
    return None


def complete_chapters() -> list[str]:
    chapters = json.loads(EDITION.read_text())["complete"]
    assert chapters, f"{EDITION} lists no chapter (`kafnotes run` with none would execute every chapter)"
    known = {p.name[:2] for p in (ROOT / "book").glob("[0-9][0-9]_*.ipynb")}
    unknown = sorted(set(chapters) - known)
    assert not unknown, f"{EDITION} lists chapters the book does not have: {unknown}"
    return chapters


def test_the_edition_lists_only_chapters_the_book_has():
    assert complete_chapters() == sorted(set(complete_chapters()))


def test_every_complete_chapter_builds_at_study_from_its_committed_records(tmp_path):
    chapters = complete_chapters()
    data = stand_in()
    if data is None:
        pytest.skip(f"the study records are keyed on the stand-in {STAND_IN}, which is not here "
                    "(set KAFNOTES_CIFAR10 to its path)")
    result = subprocess.run(
        [sys.executable, "-m", "kafnotes.cli", "run", *chapters, "--profile", "study", "--records-only",
         "--root", str(ROOT), "--out", str(tmp_path / "out"), "--jobs", "2"],
        capture_output=True, text=True, timeout=1800, env={**os.environ, "KAFNOTES_CIFAR10": str(data)})
    said = result.stdout + result.stderr
    assert result.returncode == 0, f"the study edition of {chapters} needs records it does not have:\n{said[-4000:]}"
    for chapter in chapters:
        assert list((tmp_path / "out" / "book").glob(f"{chapter}_*.ipynb")), f"chapter {chapter} was not executed"
