"""The package's import structure: layers, no cycle (function-level imports count), no private name
across modules, imports at the top, a cheap front door (``import fedshield`` loads no torch).

Every module of ``fedshield`` is parsed with :mod:`ast` (nothing is imported, except by the
front-door tests), so the structural tests are fast and also cover modules whose optional
dependencies are missing.
"""
from __future__ import annotations

import ast
import io
import json
import re
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "fedshield"

# Function-level imports that stay, each with its reason: (importing module, imported top-level name).
LAZY_IMPORTS = {
    ("fedshield.metrics", "skimage"): "scikit-image is needed by ssim only and is slow to import",
    ("fedshield.data", "PIL"): "Pillow decodes only the CIFAR-10 JPEG pack",
    ("fedshield.reproduce", "papermill"): "papermill is the optional [book] extra",
    ("fedshield.report", "pandas"): "pandas is the optional [book] extra (tables of the notebooks)",
    ("fedshield.report", "matplotlib"): "matplotlib is the optional [book] extra (figures of the notebooks)",
}

# The layers, lowest first: a module imports only from its own layer or a lower one (at the top of
# the file or in a function). A module not listed takes its package's layer.
LAYERS = {
    "fedshield.errors": 0,
    "fedshield.params": 1,
    "fedshield.utils": 2,
    **dict.fromkeys(("fedshield.hooks", "fedshield.models", "fedshield.metrics", "fedshield.data",
                     "fedshield.cache", "fedshield.stats", "fedshield.accounting", "fedshield.report",
                     "fedshield.profiles", "fedshield.bounds"), 3),
    "fedshield.defense": 4,
    **dict.fromkeys(("fedshield.baselines", "fedshield.flower", "fedshield.audit"), 5),
    **dict.fromkeys(("fedshield.fl", "fedshield.attacks"), 6),
    **dict.fromkeys(("fedshield.experiments", "fedshield.claims"), 7),
    **dict.fromkeys(("fedshield.book", "fedshield.reproduce"), 8),
    **dict.fromkeys(("fedshield.commands", "fedshield.cli", "fedshield.__main__"), 9),
    "fedshield": 10,  # the front door: its module-level __getattr__ hands out the main API
}

# What ``from fedshield import ...`` must offer.
FRONT_DOOR = ("PaperDefense", "build_defense", "FLConfig", "run_fedavg", "dlg", "dlg_batch", "inverting_gradients",
              "AttackConfig", "run_attack", "FedshieldError", "__version__", "psnr", "ssim")


def _modules() -> dict[str, Path]:
    out = {}
    for p in sorted(PKG.rglob("*.py")):
        parts = list(p.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


MODULES = _modules()


def _layer(mod: str) -> int | None:
    parts = mod.split(".")
    for k in range(len(parts), 0, -1):
        if ".".join(parts[:k]) in LAYERS:
            return LAYERS[".".join(parts[:k])]
    return None


def _resolve(mod: str, node: ast.ImportFrom, is_pkg: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = mod.split(".")
    if not is_pkg:
        base = base[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _is_import_module(node: ast.AST) -> bool:
    """``importlib.import_module(...)`` or ``import_module(...)``."""
    if not isinstance(node, ast.Call):
        return False
    f = node.func
    return (isinstance(f, ast.Attribute) and f.attr == "import_module") or (
        isinstance(f, ast.Name) and f.id == "import_module")


def _dynamic_targets(tree: ast.Module, call: ast.Call) -> list[str]:
    """The fedshield modules ``import_module(arg)`` may load: a literal name; every module under an
    f-string's literal prefix; for any other argument every fedshield module named by a string
    literal of the file (e.g. the front door's name -> module table)."""
    arg = call.args[0] if call.args else None
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return [arg.value]
    if isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
        prefix = arg.values[0].value
        return [m for m in MODULES if m.startswith(prefix)]
    return sorted({n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and n.value in MODULES})


def _imports(mod: str):
    """``(target module, imported names or None, line, at module level)`` of every import in
    ``mod``: statements anywhere (module level includes module-level ``try`` / ``if``; a
    ``__main__`` block is not module level) and ``importlib.import_module`` calls (names None)."""
    path = MODULES[mod]
    tree = ast.parse(path.read_text(), str(path))
    is_pkg = path.name == "__init__.py"
    top = set()
    for n in tree.body:
        if isinstance(n, (ast.Import, ast.ImportFrom)):
            top.add(id(n))
        elif isinstance(n, (ast.If, ast.Try)) and not _is_main_block(n):
            top |= {id(m) for m in ast.walk(n) if isinstance(m, (ast.Import, ast.ImportFrom))}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, None, node.lineno, id(node) in top
        elif isinstance(node, ast.ImportFrom):
            yield _resolve(mod, node, is_pkg), [a.name for a in node.names], node.lineno, id(node) in top
        elif _is_import_module(node):
            for t in _dynamic_targets(tree, node):
                yield t, None, node.lineno, False


def _is_main_block(node: ast.stmt) -> bool:
    """``if __name__ == "__main__":`` -- runs only as a script, never on import."""
    return (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
            and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__")


def _internal_targets(target: str, names) -> set[str]:
    """The fedshield modules an import loads: ``from . import defense`` loads a module; ``from
    fedshield import X`` with ``X`` no module runs the front door's ``__getattr__``."""
    if not target.startswith("fedshield"):
        return set()
    out = {f"{target}.{n}" for n in names or [] if f"{target}.{n}" in MODULES}
    if target in MODULES and (target != "fedshield" or any(f"fedshield.{n}" not in MODULES for n in names or [])):
        out.add(target)
    return out


def _edges() -> dict[str, dict[str, int]]:
    """``{module: {module it loads: line}}``, function-level and ``import_module`` imports included.
    Importing ``a.b.c`` from outside the package ``a.b`` also runs ``a.b``'s ``__init__`` (an edge
    to it); a package's ``__init__`` that imports its own submodule runs it (an edge to it). Every
    module runs the root package ``fedshield`` first, which matters only when a name defined there
    is asked for (``from fedshield import FedshieldError``)."""
    graph: dict[str, dict[str, int]] = {m: {} for m in MODULES}
    for mod in MODULES:
        for target, names, line, _ in _imports(mod):
            for t in _internal_targets(target, names):
                parts = t.split(".")
                for k in range(1, len(parts) + 1):
                    anc = ".".join(parts[:k])
                    if anc == "fedshield" and t != "fedshield":
                        continue  # already running: every fedshield module is below it
                    if anc in MODULES and anc != mod and not mod.startswith(anc + "."):
                        graph[mod].setdefault(anc, line)
    return graph


def _graph() -> dict[str, set[str]]:
    return {m: set(e) for m, e in _edges().items()}


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                return stack[stack.index(t):] + [t]
            if t not in state:
                found = visit(t)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


# ----------------------------------------------------------------------------------------- structure
def test_every_module_is_seen():
    for m in ("fedshield.defense", "fedshield.params", "fedshield.attacks.dlg", "fedshield.experiments.registry"):
        assert m in MODULES


def test_every_module_has_a_layer():
    missing = sorted(m for m in MODULES if _layer(m) is None)
    assert not missing, f"give these modules a layer in LAYERS (tests/test_architecture.py): {missing}"


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
        path = MODULES[mod]
        tree = ast.parse(path.read_text(), str(path))
        dynamic = {n.lineno for n in ast.walk(tree) if _is_import_module(n)}
        for target, _, line, top in _imports(mod):
            if not top and line not in dynamic:
                name = target if target.startswith("fedshield") else target.split(".")[0]
                found.setdefault((mod, name), []).append(line)
    unexplained = {k: v for k, v in found.items() if k not in LAZY_IMPORTS}
    assert not unexplained, "function-level imports without a reason in LAZY_IMPORTS:\n" + "\n".join(
        f"{m} imports {t} at line(s) {lines}" for (m, t), lines in sorted(unexplained.items()))
    stale = sorted(set(LAZY_IMPORTS) - set(found))
    assert not stale, f"LAZY_IMPORTS lists imports that are gone: {stale}"


def test_intra_package_import_graph_is_acyclic():
    """Function-level imports, ``import_module`` calls and ``__main__`` blocks count: a cycle only
    hidden in a function still means two modules that cannot be understood (or moved) apart."""
    cycle = _find_cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_imports_go_down_the_layers():
    bad = []
    for mod, targets in _edges().items():
        for t, line in targets.items():
            if _layer(t) > _layer(mod):
                bad.append(f"{mod}:{line} (layer {_layer(mod)}) imports {t} (layer {_layer(t)})")
    assert not bad, "imports from a higher layer:\n" + "\n".join(sorted(bad))


def _getattr_imports(mod: str) -> list[tuple[str, int]]:
    """The fedshield modules a module-level ``__getattr__`` of ``mod`` imports."""
    path = MODULES[mod]
    tree = ast.parse(path.read_text(), str(path))
    is_pkg = path.name == "__init__.py"
    out = []
    for fn in tree.body:
        if isinstance(fn, ast.FunctionDef) and fn.name == "__getattr__":
            for node in ast.walk(fn):
                if isinstance(node, ast.ImportFrom):
                    target, names = _resolve(mod, node, is_pkg), [a.name for a in node.names]
                elif isinstance(node, ast.Import):
                    target, names = node.names[0].name, None
                elif _is_import_module(node):
                    out += [(t, node.lineno) for t in _dynamic_targets(tree, node)]
                    continue
                else:
                    continue
                out += [(t, node.lineno) for t in _internal_targets(target, names)]
    return out


def test_module_getattr_imports_nothing_from_a_higher_layer():
    """A lazy alias (module-level ``__getattr__``) is an import like any other: the front door
    ``fedshield`` sits above everything, an alias inside the package may only look down."""
    bad = [f"{mod}:{line} __getattr__ imports {t} (layer {_layer(t)} above {_layer(mod)})"
           for mod in MODULES for t, line in _getattr_imports(mod)
           if _layer(t) > _layer(mod)]
    assert not bad, "\n".join(bad)
    assert {t for t, _ in _getattr_imports("fedshield")} >= {"fedshield.experiments.attack", "fedshield.defense"}


def test_the_graph_sees_hidden_imports():
    """The checker itself: function-level imports, ``import_module`` calls, package ``__init__``s."""
    graph = _graph()
    assert "fedshield.defense" in graph["fedshield.baselines"]
    assert "fedshield.experiments.registry" in graph["fedshield.experiments.attack"]
    assert "fedshield.attacks" in graph["fedshield.experiments.attack"]  # package __init__ runs too
    assert "fedshield.skimage" not in graph["fedshield.metrics"]
    assert "fedshield.commands.train" in graph["fedshield.cli"]  # import_module(f"fedshield.commands.{name}")
    assert "fedshield.experiments.attack" in graph["fedshield"]  # the front door's name -> module table
    assert "fedshield.experiments.attack" in graph["fedshield.experiments"]  # a package runs its submodules
    assert "fedshield" not in graph["fedshield.fl"]  # `from . import data` loads a module, not the front door


def test_attacks_has_no_alias_to_the_experiments():
    """``AttackConfig`` / ``run_attack`` live in fedshield.experiments.attack (and the front door),
    not in fedshield.attacks, which sits below them."""
    import fedshield.attacks as A

    assert not hasattr(A, "__getattr__")
    with pytest.raises(AttributeError):
        A.AttackConfig


# ------------------------------------------------------------------------------------------ front door
def test_front_door_offers_the_main_api():
    import fedshield

    missing = [n for n in FRONT_DOOR if n not in fedshield.__all__ or n not in dir(fedshield)]
    assert not missing, f"fedshield.__all__ / dir(fedshield) lack {missing}"
    for name in fedshield.__all__:
        assert getattr(fedshield, name) is not None
    from fedshield.defense import PaperDefense
    from fedshield.experiments.attack import run_attack

    assert fedshield.PaperDefense is PaperDefense and fedshield.run_attack is run_attack
    with pytest.raises(AttributeError):
        fedshield.no_such_name  # noqa: B018


def test_front_door_docstring_lists_every_module():
    import fedshield

    top = sorted({".".join(m.split(".")[:2]) for m in MODULES if m.count(".") >= 1} - {"fedshield.__main__"})
    missing = [m for m in top if f":mod:`{m}`" not in fedshield.__doc__]
    assert not missing, f"fedshield's docstring does not list {missing}"


@pytest.mark.parametrize("module", ["fedshield", "fedshield.errors"])
def test_import_loads_no_torch(module):
    code = f"import sys, {module}; assert 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)[:5]"
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


# -------------------------------------------------------------------------------------------- wording
PROCESS_WORDS = re.compile(r"\b(issue|session)s?\s+#?\d+|\bsince session\b", re.I)

def _comments_and_docstrings(path: Path):
    src = path.read_text()
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type == tokenize.COMMENT:
            yield tok.start[0], tok.string
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            yield node.lineno, node.value.value


def test_no_project_history_in_comments_or_docstrings():
    """Comments and docstrings say what the code does, not which issue or session wrote it."""
    bad = [f"{p.relative_to(REPO)}:{line}: {PROCESS_WORDS.search(text).group(0)!r}"
           for p in sorted(f for d in (PKG, REPO / "tools", REPO / "tests", REPO / "benchmarks") for f in d.rglob("*.py"))
           for line, text in _comments_and_docstrings(p) if PROCESS_WORDS.search(text)]
    assert not bad, "\n".join(bad)
