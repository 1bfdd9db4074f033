"""The package's import structure: no cycle, no private name across modules, imports at the top.

Every module of ``fedshield`` is parsed with :mod:`ast` (nothing is imported), so the test is
fast and also covers modules whose optional dependencies are missing.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "fedshield"

# Function-level imports that stay, each with its reason. Key: (module, imported module).
LAZY_IMPORTS = {
    ("fedshield.metrics", "skimage.metrics"): "scikit-image is needed by ssim only (slow import)",
    ("fedshield.attacks.common", "scipy.optimize"): "scipy is needed only to reorder batch>1 reconstructions",
    ("fedshield.cli", "importlib"): "",  # placeholder, removed below if unused
    ("fedshield.reproduce", "papermill"): "papermill / jupyter-book are the optional [book] extra",
    ("fedshield.reproduce", "subprocess"): "",
    ("fedshield.commands.reproduce", "fedshield.reproduce"): "papermill is optional: load it when the command runs",
    ("fedshield.data", "PIL"): "Pillow decodes only the CIFAR-10 JPEG pack",
}
LAZY_IMPORTS = {k: v for k, v in LAZY_IMPORTS.items() if v}


def _modules() -> dict[str, Path]:
    out = {}
    for p in sorted(PKG.rglob("*.py")):
        rel = p.relative_to(PKG.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


MODULES = _modules()


def _resolve(mod: str, node: ast.ImportFrom, is_pkg: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = mod.split(".")
    if not is_pkg:
        base = base[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(mod: str):
    """(target module, imported names or None, lineno, is top level) of every import in ``mod``."""
    path = MODULES[mod]
    tree = ast.parse(path.read_text(), str(path))
    is_pkg = path.name == "__init__.py"
    top = set(map(id, tree.body))
    # imports inside `if TYPE_CHECKING:` / `try:` at module level count as top level
    for n in tree.body:
        if isinstance(n, (ast.If, ast.Try)):
            for m in ast.walk(n):
                top.add(id(m))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, None, node.lineno, id(node) in top
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(mod, node, is_pkg)
            yield target, [a.name for a in node.names], node.lineno, id(node) in top


def _internal_target(target: str, names) -> list[str]:
    """The fedshield modules an import statement depends on (``from . import defense`` names a module)."""
    if not target.startswith("fedshield"):
        return []
    out = []
    for n in names or []:
        if f"{target}.{n}" in MODULES:
            out.append(f"{target}.{n}")
    if not out or target in MODULES and any(f"{target}.{n}" not in MODULES for n in names or []):
        out.append(target)
    return [t for t in out if t in MODULES]


def test_every_module_parses():
    assert "fedshield.defense" in MODULES and "fedshield.attacks" in MODULES


def test_no_private_name_is_imported_across_modules():
    bad = []
    for mod in MODULES:
        for target, names, line, _ in _imports(mod):
            if target.startswith("fedshield") and target != mod:
                bad += [f"{mod}:{line} imports {target}.{n}" for n in names or []
                        if n.startswith("_") and n != "__version__"]
    assert not bad, "\n".join(bad)


def test_imports_are_at_the_top_of_the_file():
    found = {}
    for mod in MODULES:
        for target, names, line, top in _imports(mod):
            if not top:
                found.setdefault((mod, target.split(".")[0] if not target.startswith("fedshield") else target),
                                 []).append(line)
    unexplained = {k: v for k, v in found.items()
                   if not any(k[0] == m and (k[1] == t or k[1] == t.split(".")[0]) for m, t in LAZY_IMPORTS)}
    assert not unexplained, "function-level imports without a reason in LAZY_IMPORTS:\n" + "\n".join(
        f"{m} imports {t} at line(s) {lines}" for (m, t), lines in sorted(unexplained.items()))


def test_intra_package_import_graph_is_acyclic():
    graph = {m: set() for m in MODULES}
    for mod in MODULES:
        for target, names, _, _ in _imports(mod):
            for t in _internal_target(target, names):
                if t != mod and not (t == "fedshield" and mod.startswith("fedshield")):
                    graph[mod].add(t)
    # a package's __init__ that re-exports its submodules is fine: drop edges package -> own child
    for mod in graph:
        graph[mod] = {t for t in graph[mod] if not t.startswith(mod + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                cyc = stack[stack.index(t):] + [t]
                pytest.fail("import cycle: " + " -> ".join(cyc))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
