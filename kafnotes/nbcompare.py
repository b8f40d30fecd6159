"""Which of a notebook's stored outputs ``pytest --nbval`` compares, and where two executions differ.

``kafnotes order-check`` executes chapters with another intra-op thread count, which sums in another
order as another CPU's cache sizes do, and lists the compared cells whose outputs move: those would
fail nbval on some CI machine. The rules follow nbval's: cells tagged ``nbval-ignore-output`` or
``nbval-skip`` are not compared, PNG and JPEG images are not compared, and the sanitizers of
``tests/nbval_sanitize.cfg`` (timings, temporary paths) apply.
"""

from __future__ import annotations

import configparser
import difflib
import re
from pathlib import Path

NOT_COMPARED_TAGS = ("nbval-ignore-output", "nbval-skip")
NOT_COMPARED_MIME = ("image/png", "image/jpeg", "application/vnd.jupyter.widget-view+json")


def sanitizers(cfg: Path) -> list[tuple[re.Pattern, str]]:
    """The (regex, replacement) pairs of an nbval sanitize file."""
    parser = configparser.ConfigParser()
    if not parser.read(cfg):
        raise FileNotFoundError(f"no nbval sanitize file at {cfg}")
    return [(re.compile(parser[s]["regex"]), parser[s]["replace"]) for s in parser.sections()]


def compared_text(cell: dict, subs=()) -> str | None:
    """The text nbval compares for ``cell``, sanitized; None when nbval does not compare it."""
    if cell.get("cell_type") != "code" or any(t in cell.get("metadata", {}).get("tags", []) for t in NOT_COMPARED_TAGS):
        return None
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            parts.append(f"[{out['name']}] " + "".join(out["text"]))
        elif out.get("output_type") == "error":
            parts.append(f"[error] {out.get('ename')}: {out.get('evalue')}")
        for mime, value in sorted(out.get("data", {}).items()):
            if mime not in NOT_COMPARED_MIME:
                parts.append(f"[{mime}] " + ("".join(value) if isinstance(value, list) else str(value)))
    text = "\n".join(parts)
    for pattern, replacement in subs:
        text = pattern.sub(replacement, text)
    return text


def differing_cells(reference: dict, executed: dict, subs=(), context: int = 0) -> list[tuple[int, list[str]]]:
    """(index among code cells, diff lines) for each compared cell whose outputs differ.

    Both notebooks must hold the same code cells in the same order (one executed from the other)."""
    ref = [c for c in reference["cells"] if c.get("cell_type") == "code"]
    new = [c for c in executed["cells"] if c.get("cell_type") == "code"]
    if len(ref) != len(new) or any("".join(a["source"]) != "".join(b["source"]) for a, b in zip(ref, new)):
        raise ValueError("the two notebooks hold different code cells; compare an execution with its own source")
    found = []
    for i, (a, b) in enumerate(zip(ref, new)):
        ta, tb = compared_text(a, subs), compared_text(b, subs)
        if ta is not None and ta != tb:
            diff = difflib.unified_diff(ta.splitlines(), (tb or "").splitlines(), lineterm="", n=context)
            found.append((i, [line for line in diff if not line.startswith(("---", "+++", "@@"))]))
    return found
