"""Numbers and sentences that a chapter's prose pastes from its own execution (myst-nb's glue).

A code cell calls ``say("name", text)``; the markdown cells write ``{glue:md}`name``` where the text
belongs. The book build renders the text from the executed notebook, so prose cannot drift from the
outputs beside it. The output is hidden in the notebook (papermill's record prefix, as myst-nb's own
``glue(..., display=False)`` writes it), so a reader sees it once, in the prose.
"""

from __future__ import annotations

import re

# myst-nb reads hidden glue outputs under this mime prefix and the "scrapbook" output metadata
RECORD_PREFIX = "application/papermill.record/"
NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def bundle(name: str, text: str) -> tuple[dict, dict]:
    """The display data and metadata of one glued Markdown text (what ``say`` displays)."""
    if not isinstance(name, str) or not NAME.match(name):
        raise ValueError(f"a glue name must be a letter followed by letters, digits or _ (got {name!r})")
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"glue {name!r}: the text must be a non-empty string (got {text!r})")
    data = {RECORD_PREFIX + "text/markdown": text, RECORD_PREFIX + "text/plain": text}
    return data, {"scrapbook": {"name": name, "mime_prefix": RECORD_PREFIX}}


def say(name: str, text: str) -> str:
    """Glue ``text`` (Markdown) under ``name`` for ``{glue:md}`name``` in the chapter's prose."""
    from IPython.display import display
    data, metadata = bundle(name, text)
    display(data, raw=True, metadata=metadata)
    return text


def pct(value: float, digits: int = 1) -> str:
    """An accuracy (a fraction) as prose prints it: ``0.4146`` -> ``41.5%``."""
    return f"{100 * value:.{digits}f}%"


def listing(items, empty: str = "none") -> str:
    """``a``, ``a and b``, ``a, b and c``; ``empty`` when there is nothing to list."""
    items = [str(i) for i in items]
    if not items:
        return empty
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def power_of_ten(value: float) -> str:
    """A large positive number as prose reads it: ``3.2e18`` -> ``3·10¹⁸``; inf and NaN by name."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "infinite" if value > 0 else "minus infinity"
    if abs(value) < 1000:
        return f"{value:.3g}"
    mantissa, exponent = f"{value:.1e}".split("e")
    superscript = str(int(exponent)).translate(str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹"))
    return f"{mantissa}·10{superscript}"


def references(markdown: str) -> list[str]:
    """The glue names a Markdown cell pastes (``{glue:md}`name```, ``{glue:text}`name:.1f```, ...)."""
    return [m.group(1) for m in re.finditer(r"\{glue(?::\w+)?\}`(?:[^`:]*::)?([A-Za-z0-9_]+)[^`]*`", markdown)]
