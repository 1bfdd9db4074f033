"""The book builds strictly (warnings are errors, broken cross-references fail) and reads offline
(MathJax is served from the book's own ``_static/``, not from a CDN).

Both tests run the real ``jupyter-book build`` (execution is off in the book, so it only renders the
stored notebooks: a few seconds). ``STRICT`` must match the flags of ``make book``.
"""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
STRICT = ["-W", "--keep-going"]  # -W: warnings are errors; nitpicky is set in book/_config.yml

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _jupyter_book() -> str:
    pytest.importorskip("jupyter_book", reason="jupyter-book is not installed (the `book` extra)")
    exe = Path(sys.executable).with_name("jupyter-book")
    if exe.exists():
        return str(exe)
    found = shutil.which("jupyter-book")
    if found is None:
        pytest.skip("the jupyter-book command is not on PATH")
    return found


def _build(book: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([_jupyter_book(), "build", str(book), "--path-output", str(out), *STRICT],
                          capture_output=True, text=True, timeout=240)


def _warnings(proc: subprocess.CompletedProcess) -> list[str]:
    text = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr)  # drop the ANSI colours
    return [line for line in text.splitlines() if "WARNING" in line or "ERROR" in line]


def test_book_builds_strictly_and_serves_mathjax_itself(tmp_path):
    proc = _build(BOOK, tmp_path)
    warnings = _warnings(proc)
    assert proc.returncode == 0 and not warnings, (
        f"strict book build failed (rc={proc.returncode}):\n" + "\n".join(warnings or [proc.stderr[-3000:]]))

    html = tmp_path / "_build" / "html"
    pages = sorted(html.glob("*.html"))
    with_math = [p for p in pages if 'class="math' in p.read_text(encoding="utf-8")]
    assert with_math, "no page of the book has math: the MathJax check would test nothing"
    for page in with_math:
        text = page.read_text(encoding="utf-8")
        srcs = re.findall(r"<script[^>]*\bsrc=\"([^\"]+)\"", text)
        external = [s for s in srcs if re.match(r"(https?:)?//", s)]
        assert not external, f"{page.name} loads scripts from the network: {external}"
        mathjax = [s for s in srcs if "mathjax" in s.lower()]
        assert mathjax, f"{page.name} has math but loads no MathJax"
        for src in mathjax:
            assert src.startswith("_static/"), f"{page.name}: MathJax is not loaded from the book: {src}"
            assert (html / src.split("?")[0]).is_file(), f"{page.name}: {src} is missing from the build"
    fonts = list((html / "_static" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2").glob("*.woff"))
    assert fonts, "MathJax's CHTML fonts are not in the build"


def test_a_broken_cross_reference_fails_the_strict_build(tmp_path):
    """A one-page book with the real _config.yml and four kinds of broken reference: each one is
    reported and the build fails."""
    book = tmp_path / "book"
    book.mkdir()
    shutil.copy(BOOK / "_config.yml", book / "_config.yml")
    (book / "_toc.yml").write_text("format: jb-book\nroot: intro\n")
    (book / "intro.md").write_text(
        "# Intro\n\n"
        "A label: {ref}`no-such-label`.\n\n"
        "A page: [the chapter](no_such_page.md).\n\n"
        "A document: {doc}`no_such_doc`.\n\n"
        "An API object (reported because the book is nitpicky): {py:func}`fedshield.no_such_function`.\n")
    proc = _build(book, tmp_path / "out")
    report = "\n".join(_warnings(proc))
    assert proc.returncode != 0, "the strict build passed with broken cross-references:\n" + proc.stdout[-2000:]
    for target in ("no-such-label", "no_such_page.md", "no_such_doc", "fedshield.no_such_function"):
        assert target in report, f"broken reference {target!r} was not reported:\n{report}"
