"""Only ``fedshield/reproduce.py`` writes a notebook (the executed copies in ``book/`` and
``tests/notebooks/``), and nothing writes the README: chapters and README are written by hand, their
numbers glued from the tables (chapters) or checked against them (README, tests/test_readme.py).

The scan reads the sources of the package, ``tools/`` and ``benchmarks/``: a file that names a
notebook or the README (``.ipynb``, ``README``, ``nbformat``) and calls something that writes a file
(``write_text``, ``open(..., "w")``, ``json.dump``, ``nbformat.write``, papermill, ``os.replace``,
a shell redirection or ``sed -i``) is reported with the line of each such call."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: the one writer of notebooks
ALLOWED = {"fedshield/reproduce.py"}
#: what names a notebook or the README in a source
TARGET = re.compile(r"\.ipynb|README|nbformat")
#: calls that write a file, by the called name
WRITE_CALLS = {"write_text", "write_bytes", "dump", "write", "execute_notebook", "write_notebook", "touch"}
#: calls that replace a file, by module and name (``str.replace`` is no write)
MOVE_CALLS = {("os", "replace"), ("os", "rename"), ("shutil", "copy"), ("shutil", "copyfile"), ("shutil", "copy2"),
              ("shutil", "move")}
SHELL_WRITE = re.compile(r"(>>?\s*\S*(\.ipynb|README))|(\bsed\s+-i\b.*(\.ipynb|README))|(\btee\b.*(\.ipynb|README))"
                         r"|(\b(cp|mv)\b.*(\.ipynb|README))")


def _mode(call: ast.Call) -> str:
    """The mode of an ``open(...)`` / ``.open(...)`` call (``"r"`` when not given)."""
    args = list(call.args)
    is_builtin = isinstance(call.func, ast.Name)
    mode = args[1] if is_builtin and len(args) > 1 else args[0] if not is_builtin and args else None
    for k in call.keywords:
        if k.arg == "mode":
            mode = k.value
    return mode.value if isinstance(mode, ast.Constant) and isinstance(mode.value, str) else "r"


def python_writes(text: str) -> list[int]:
    """The lines of the calls in Python source ``text`` that write a file."""
    out = []
    for node in ast.walk(ast.parse(text)):
        if not isinstance(node, ast.Call):
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        if name == "open" and set(_mode(node)) & set("wax+"):
            out.append(node.lineno)
        elif name in WRITE_CALLS:
            out.append(node.lineno)
        elif isinstance(node.func, ast.Attribute) and (getattr(node.func.value, "id", ""), name) in MOVE_CALLS:
            out.append(node.lineno)
    return sorted(set(out))


def writers(paths, root: Path = ROOT) -> dict[str, list[int]]:
    """``{file: [lines]}`` of the files among ``paths`` that name a notebook or the README and write a
    file, outside :data:`ALLOWED`."""
    found = {}
    for p in paths:
        rel = p.relative_to(root).as_posix()
        if rel in ALLOWED:
            continue
        text = p.read_text(encoding="utf-8", errors="replace")
        if not TARGET.search(text):
            continue
        if p.suffix == ".py":
            lines = python_writes(text)
        else:
            lines = [i for i, line in enumerate(text.splitlines(), 1) if SHELL_WRITE.search(line)]
        if lines:
            found[rel] = lines
    return found


def sources(root: Path = ROOT) -> list[Path]:
    out = []
    for d in ("fedshield", "tools", "benchmarks"):
        for p in sorted((root / d).rglob("*")):
            if p.is_file() and p.suffix in (".py", ".sh") and "__pycache__" not in p.parts:
                out.append(p)
    return out


def test_the_scan_sees_the_package_tools_and_benchmarks():
    rel = {p.relative_to(ROOT).as_posix() for p in sources()}
    assert "fedshield/reproduce.py" in rel and "fedshield/claims.py" in rel
    assert any(r.startswith("tools/") for r in rel) and any(r.startswith("benchmarks/") for r in rel)


def test_nothing_but_reproduce_writes_a_notebook_or_the_readme():
    found = writers(sources())
    assert not found, ("only fedshield/reproduce.py writes notebooks, and nothing writes the README; found writes in "
                       + "; ".join(f"{f} (line {', '.join(map(str, ls))})" for f, ls in found.items()))


def test_reproduce_is_the_writer_the_scan_allows():
    # without the exemption the scan reports reproduce.py: it does see a real writer
    text = (ROOT / "fedshield" / "reproduce.py").read_text()
    assert TARGET.search(text) and python_writes(text)


@pytest.mark.parametrize("src, caught", [
    ('from pathlib import Path\nPath("README.md").write_text("x")\n', True),
    ('import nbformat\nnb = nbformat.read("a.ipynb", 4)\nnbformat.write(nb, "a.ipynb")\n', True),
    ('p = "notebooks/09_summary.ipynb"\nwith open(p, "w") as f:\n    f.write("{}")\n', True),
    ('import json\njson.dump({}, open("book/x.ipynb", mode="w"))\n', True),
    ('import os\nos.replace("tmp", "README.md")\n', True),
    ('import json\nnb = json.load(open("notebooks/x.ipynb"))\nprint(len(nb))\n', False),   # reading is fine
    ('s = "README.md".replace("md", "txt")\n', False),                                     # str.replace writes nothing
    ('from pathlib import Path\nPath("out.json").write_text("x")\n', False),               # no notebook named
    ("sed -i 's/a/b/' README.md\n", True),
    ("python x.py > notebooks/a.ipynb\n", True),
    ("cat README.md | wc -l\n", False),
])
def test_the_scan_catches_writes(tmp_path, src, caught):
    p = tmp_path / ("t.sh" if src.startswith(("sed", "python", "cat")) else "t.py")
    p.write_text(src)
    assert bool(writers([p], root=tmp_path)) is caught
