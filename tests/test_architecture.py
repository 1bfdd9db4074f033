"""The package's import structure: no cycle, no private name across modules, imports at the top.

Every module of ``fedshield`` is parsed with :mod:`ast` (nothing is imported), so the test is
fast and also covers modules whose optional dependencies are missing.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "fedshield"

# Function-level imports that stay, each with its reason: (importing module, imported top-level name).
LAZY_IMPORTS = {
    ("fedshield.metrics", "skimage"): "scikit-image is needed by ssim only and is slow to import",
    ("fedshield.data", "PIL"): "Pillow decodes only the CIFAR-10 JPEG pack",
    ("fedshield.reproduce", "papermill"): "papermill is the optional [book] extra",
    ("fedshield.report", "pandas"): "pandas is the optional [book] extra (tables of the notebooks)",
    ("fedshield.report", "matplotlib"): "matplotlib is the optional [book] extra (figures of the notebooks)",
    ("fedshield.attacks", "fedshield.experiments"): "compatibility alias: fedshield.attacks.AttackConfig / "
                                                   "run_attack resolve lazily to fedshield.experiments.attack",
}
# Edges left out of the dependency graph, each with its reason.
COMPAT_ALIASES = {
    ("fedshield.attacks", "fedshield.experiments.attack"): "the lazy alias above: the experiments depend on "
                                                          "the attacks, the alias only forwards old names",
}


def _modules() -> dict[str, Path]:
    out = {}
    for p in sorted(PKG.rglob("*.py")):
        parts = list(p.relative_to(PKG.parent).with_suffix("").parts)
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


def _is_main_block(node: ast.stmt) -> bool:
    """``if __name__ == "__main__":`` -- runs only as a script, never on import."""
    return (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
            and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__")


def _imports(mod: str):
    """``(target module, imported names or None, line, at module level)`` of every import in
    ``mod`` outside a ``__main__`` block. Module level includes module-level ``try`` / ``if``."""
    path = MODULES[mod]
    tree = ast.parse(path.read_text(), str(path))
    is_pkg = path.name == "__init__.py"
    top, skip = set(), set()
    for n in tree.body:
        ids = {id(m) for m in ast.walk(n)}
        if _is_main_block(n):
            skip |= ids
        elif isinstance(n, (ast.Import, ast.ImportFrom, ast.If, ast.Try)):
            top |= {id(m) for m in ast.walk(n) if isinstance(m, (ast.Import, ast.ImportFrom))} if not isinstance(
                n, (ast.Import, ast.ImportFrom)) else {id(n)}
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, None, node.lineno, id(node) in top
        elif isinstance(node, ast.ImportFrom):
            yield _resolve(mod, node, is_pkg), [a.name for a in node.names], node.lineno, id(node) in top


def _internal_targets(target: str, names) -> set[str]:
    """The fedshield modules an import statement loads (``from . import defense`` loads a module)."""
    if not target.startswith("fedshield"):
        return set()
    out = {f"{target}.{n}" for n in names or [] if f"{target}.{n}" in MODULES}
    if target in MODULES:
        out.add(target)
    return out


def _graph() -> dict[str, set[str]]:
    """Import-time dependencies between fedshield modules. Importing ``a.b.c`` from outside the
    package ``a.b`` also runs ``a.b``'s ``__init__`` (an edge to it); from inside it does not matter
    (the package is already being imported)."""
    graph = {m: set() for m in MODULES}
    for mod in MODULES:
        for target, names, _, _ in _imports(mod):
            for t in _internal_targets(target, names):
                parts = t.split(".")
                for k in range(2, len(parts) + 1):  # t and its packages (not the root package)
                    anc = ".".join(parts[:k])
                    if anc in MODULES and anc != mod and not mod.startswith(anc + ".") \
                            and not anc.startswith(mod + ".") and (mod, anc) not in COMPAT_ALIASES:
                        graph[mod].add(anc)
    return graph


def test_every_module_is_seen():
    for m in ("fedshield.defense", "fedshield.params", "fedshield.attacks.dlg", "fedshield.experiments.registry"):
        assert m in MODULES


def test_no_private_name_is_imported_across_modules():
    bad = []
    for mod in MODULES:
        for target, names, line, _ in _imports(mod):
            if target.startswith("fedshield") and target != mod:
                bad += [f"{mod}:{line} imports {target}.{n}" for n in names or []
                        if n.startswith("_") and n != "__version__"]
    assert not bad, "\n".join(bad)


def test_imports_are_at_the_top_of_the_file():
    found: dict[tuple[str, str], list[int]] = {}
    for mod in MODULES:
        for target, _, line, top in _imports(mod):
            if not top:
                name = target if target.startswith("fedshield") else target.split(".")[0]
                found.setdefault((mod, name), []).append(line)
    unexplained = {k: v for k, v in found.items() if k not in LAZY_IMPORTS}
    assert not unexplained, "function-level imports without a reason in LAZY_IMPORTS:\n" + "\n".join(
        f"{m} imports {t} at line(s) {lines}" for (m, t), lines in sorted(unexplained.items()))
    stale = sorted(set(LAZY_IMPORTS) - set(found))
    assert not stale, f"LAZY_IMPORTS lists imports that are gone: {stale}"


def test_intra_package_import_graph_is_acyclic():
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                pytest.fail("import cycle: " + " -> ".join(stack[stack.index(t):] + [t]))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_the_graph_sees_a_cycle_hidden_in_a_function():
    """The checker itself: a function-level import back into an importer is a cycle."""
    graph = _graph()
    assert "fedshield.defense" in graph["fedshield.baselines"]
    assert "fedshield.experiments.registry" in graph["fedshield.experiments.attack"]
    assert "fedshield.attacks" in graph["fedshield.experiments.attack"]  # package __init__ runs too
