import json
import re
from pathlib import Path

import pytest

from kafnotes import prose

BOOK = Path(__file__).resolve().parents[1] / "book"


def test_a_glued_text_is_hidden_markdown_under_its_name():
    data, metadata = prose.bundle("fit_errors", "within 0.05 of ReLU")
    assert data == {prose.RECORD_PREFIX + "text/markdown": "within 0.05 of ReLU",
                    prose.RECORD_PREFIX + "text/plain": "within 0.05 of ReLU"}
    assert metadata == {"scrapbook": {"name": "fit_errors", "mime_prefix": prose.RECORD_PREFIX}}


@pytest.mark.parametrize("name, text, problem", [("2x", "a", "glue name"), ("a b", "a", "glue name"),
                                                  ("ok", "", "non-empty string"), ("ok", 3.0, "non-empty string")])
def test_a_bad_glue_is_refused_with_the_reason(name, text, problem):
    with pytest.raises(ValueError, match=problem):
        prose.bundle(name, text)


def test_numbers_read_as_prose():
    assert prose.pct(0.4146) == "41.5%" and prose.pct(0.05, 0) == "5%"
    assert prose.listing([]) == "none" and prose.listing(["a"]) == "a"
    assert prose.listing(["a", "b", "c"]) == "a, b and c"
    assert prose.power_of_ten(9.26e18) == "9.3·10¹⁸"
    assert prose.power_of_ten(85.6) == "85.6"
    assert prose.power_of_ten(float("inf")) == "infinite" and prose.power_of_ten(float("nan")) == "NaN"


def test_references_finds_every_role_form():
    md = "a {glue:md}`one` b {glue:text}`two:.1f` c {glue}`three` d {glue:md}`other.ipynb::four`"
    assert prose.references(md) == ["one", "two", "three", "four"]


def _glued(nb) -> dict:
    names = {}
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            book = out.get("metadata", {}).get("scrapbook")
            if book:
                names[book["name"]] = out["data"]
    return names


@pytest.mark.parametrize("path", sorted(p for p in BOOK.glob("0*.ipynb") if not p.name.endswith(".refresh.ipynb")),
                         ids=lambda p: p.stem)
def test_every_pasted_name_was_glued_by_the_stored_execution(path):
    """The committed outputs (what nbval compares and the book renders) hold a glued text for every
    name the chapter's prose pastes, and every glued text is pasted somewhere: no prose number or
    sentence is left without the output it describes."""
    nb = json.loads(path.read_text())
    pasted = {name for cell in nb["cells"] if cell["cell_type"] == "markdown"
              for name in prose.references("".join(cell["source"]))}
    glued = _glued(nb)
    assert pasted <= set(glued), f"pasted but never glued: {sorted(pasted - set(glued))}"
    assert set(glued) <= pasted, f"glued but never pasted: {sorted(set(glued) - pasted)}"
    for name, data in glued.items():
        assert data[prose.RECORD_PREFIX + "text/markdown"].strip(), name


def test_the_intro_pastes_only_what_the_closing_chapter_glued():
    """The intro's first screen pastes the closing chapter's sentences as text (``doc::name:s``): each
    exists in that notebook's stored execution, as plain text a reader can read without Markdown."""
    intro = (BOOK / "intro.md").read_text()
    pastes = re.findall(r"\{glue:text\}`([^`:]+)::([A-Za-z0-9_]+):s`", intro)
    assert pastes, "the intro pastes no finding"
    for doc, name in pastes:
        glued = _glued(json.loads((BOOK / doc).read_text()))
        assert name in glued, f"{doc} glues no {name!r}"
        assert "`" not in glued[name][prose.RECORD_PREFIX + "text/plain"], f"{name} has Markdown code marks"


@pytest.mark.parametrize("path", sorted(p for p in BOOK.glob("0*.ipynb") if not p.name.endswith(".refresh.ipynb")),
                         ids=lambda p: p.stem)
def test_a_cell_that_glues_prose_is_hidden_whole(path):
    """A prose cell's last ``say`` also returns its text, which would render as a stray quoted string
    under the hidden input; ``remove-cell`` hides that output too (myst-nb still reads the glue)."""
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code" and "prose.say(" in "".join(cell["source"]):
            assert "remove-cell" in cell["metadata"].get("tags", []), "".join(cell["source"])[:80]
