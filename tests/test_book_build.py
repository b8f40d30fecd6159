import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_book_renders_its_formulas_offline(tmp_path):
    """The HTML loads MathJax from its own _static folder, never from a CDN, so the intro's KAF
    formula renders in a browser with no network."""
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "book", tmp_path / "book", ignore=shutil.ignore_patterns("*.refresh.ipynb", "conftest.py"))
    jb = Path(sys.executable).with_name("jupyter-book")
    result = subprocess.run([str(jb), "build", str(tmp_path), "-W", "--keep-going"], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    html = (tmp_path / "_build" / "html" / "book" / "intro.html").read_text()
    assert 'src="../_static/mathjax/tex-chtml.js"' in html
    assert "cdn.jsdelivr" not in html and "mathjax@" not in html
    assert (tmp_path / "_build" / "html" / "_static" / "mathjax" / "tex-chtml.js").stat().st_size > 100_000
    # prose pasted from the execution (kafnotes.prose): rendered in place, no role left unrendered
    chapter = (tmp_path / "_build" / "html" / "book" / "01_activation_functions.html").read_text()
    assert "{glue" not in chapter and "fit on [−3, 3] is within" in chapter
    glued = json.loads((ROOT / "book" / "01_activation_functions.ipynb").read_text())
    texts = [o["data"]["application/papermill.record/text/markdown"] for c in glued["cells"]
             for o in c.get("outputs", []) if "scrapbook" in o.get("metadata", {})]
    assert texts and all(html_text(t) in html_text(chapter) for t in texts if "`" not in t)
    # the intro's first screen pastes the closing chapter's findings from its stored execution
    closing = json.loads((ROOT / "book" / "08_conclusions.ipynb").read_text())
    findings = {o["metadata"]["scrapbook"]["name"]: o["data"]["application/papermill.record/text/plain"]
                for c in closing["cells"] for o in c.get("outputs", []) if "scrapbook" in o.get("metadata", {})}
    assert "{glue" not in html and html_text(findings["claim"]) in html_text(html)
    assert html_text(findings["published"]) in html_text(html)


def html_text(text: str) -> str:
    """Text with tags and entities dropped and spaces squeezed, to find prose inside rendered HTML."""
    import html
    import re
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", "", text)))
