"""Architecture rules (docs/architecture.md): one-way layers, no import circles, short files and functions.

Two independent checks read the one layer table in pyproject.toml (``[tool.importlinter]``):

* import-linter's "layers" contract, run with ``lint-imports`` (needs the ``test`` extra);
* an AST check written here (:func:`import_graph`, :func:`layer_violations`, :func:`import_cycles`,
  :func:`size_violations`), which also finds import circles between modules and over-long files and
  functions. Both see every ``import`` statement, including those inside functions.

``test_checkers_catch_a_synthetic_violation`` proves both fail on a new upward import.

:func:`tree_import_graph` extends the circle check to the whole tree: mlip, scripts/ and tests/, whose
files import each other as top-level modules (``import benchmark_inference_mace``, ``from train_support
import ...``: their folder is on ``sys.path``, put there by python for a script, by pytest for a test, or
by a ``sys.path.insert``).
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
MAX_FILE_LINES = 500
MAX_FUNCTION_LINES = 80
LONG_FUNCTIONS = {
    # the model's forward is one readable sequence of the equations in docs/model.md
    "mlip/nn/model.py:MACE.forward": "the model's forward (allowed by issue 15)",
}
"""Functions allowed over MAX_FUNCTION_LINES, with the reason."""


# ------------------------------------------------------------------------------------- the checker
def module_files(src: Path, package: str) -> dict[str, Path]:
    """``{dotted module name: file}`` for every ``.py`` file of ``package`` under ``src``."""
    out = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _constant_import_call(node: ast.AST) -> str | None:
    """The module named by ``importlib.import_module("name")`` or ``__import__("name")``, else None."""
    if not (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)):
        return None
    func = node.func
    name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
    value = node.args[0].value
    return value if name in ("import_module", "__import__") and isinstance(value, str) else None


def _imported(node: ast.AST, module: str, is_package: bool, known: set[str]) -> list[str]:
    """Modules of ``known`` named by one import statement of ``module``."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    elif _constant_import_call(node) is not None:  # importlib.import_module("a.b") or __import__("a.b")
        names = [_constant_import_call(node)]
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            base = module.split(".") if is_package else module.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            prefix = ".".join(base + ([node.module] if node.module else []))
        else:
            prefix = node.module or ""
        names = [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in known else prefix for a in node.names]
    else:
        return []
    out = []
    for name in names:
        while name and name not in known:  # "import a.b.c" of an attribute: the deepest known module
            name = name.rpartition(".")[0]
        if name:
            out.append(name)
    return out


def import_graph(src: Path, package: str) -> dict[str, set[str]]:
    """``{module: modules of the package it imports}`` from every import statement (any depth)."""
    files = module_files(src, package)
    known = set(files)
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        is_package = path.name == "__init__.py"
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets.update(_imported(node, module, is_package, known))
        graph[module] = targets - {module}
    return graph


FLAT_FOLDERS = ("scripts", "tests")
"""Folders (searched recursively) of loose files that import each other as top-level modules."""


def _top_level_names(node: ast.AST) -> list[str]:
    """First components of the absolute module names one statement imports (``a`` of ``import a.b``)."""
    if isinstance(node, ast.Import):
        return [alias.name.split(".")[0] for alias in node.names]
    if isinstance(node, ast.ImportFrom) and not node.level and node.module:
        return [node.module.split(".")[0]]
    name = _constant_import_call(node)
    return [name.split(".")[0]] if name else []


def tree_import_graph(root: Path, package: str = "mlip", flat: tuple[str, ...] = FLAT_FOLDERS):
    """``(graph, ambiguous)``: the import graph of ``package`` and of every ``.py`` file under the ``flat``
    folders, and the imports that could not be resolved to one file.

    ``package`` modules keep their dotted names; a loose file is its path without ``.py``
    (``scripts/benchmark_inference``). A loose file's top-level import ``x`` is ``x.py`` of its own folder
    when there is one (its folder is on ``sys.path`` first), else the one loose file named ``x.py`` in the
    tree (a folder put on ``sys.path``); two or more such files elsewhere make it ``ambiguous``.
    """
    graph = import_graph(root, package)
    known = set(graph)
    loose = {path.relative_to(root).with_suffix("").as_posix(): path
             for folder in flat for path in sorted((root / folder).rglob("*.py"))}
    by_stem: dict[str, list[str]] = {}
    for name, path in loose.items():
        by_stem.setdefault(path.stem, []).append(name)
    ambiguous: list[str] = []
    for name, path in loose.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets.update(_imported(node, name, False, known))  # the package's modules
            for top in _top_level_names(node):
                same_folder = path.with_name(f"{top}.py")
                if same_folder.is_file():
                    targets.add(same_folder.relative_to(root).with_suffix("").as_posix())
                elif len(by_stem.get(top, [])) == 1:
                    targets.add(by_stem[top][0])
                elif top in by_stem:
                    ambiguous.append(f"{name}: import {top} (one of {by_stem[top]})")
        graph[name] = targets - {name}
    return graph, ambiguous


def cycle_path(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """One circle through ``component`` (a strongly connected set): ``[a, b, ..., a]`` following imports."""
    start, members = component[0], set(component)
    parent: dict[str, str] = {}
    frontier = [start]
    while frontier:  # breadth first from start until an import leads back to it
        nxt = []
        for v in frontier:
            for w in sorted(graph.get(v, set()) & members):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return path[::-1] + [start]
                if w not in parent:
                    parent[w] = v
                    nxt.append(w)
        frontier = nxt
    raise ValueError(f"{component} is not a circle")


def read_layers(pyproject: Path) -> tuple[str, list[list[tuple[str, ...]]], list[tuple[str, str]]]:
    """(container, layers lowest first as groups of independent siblings, ignored import patterns)."""
    contract = tomllib.loads(pyproject.read_text())["tool"]["importlinter"]["contracts"][0]
    container = contract["containers"][0]
    layers = []
    for layer in reversed(contract["layers"]):
        if "|" in layer:  # independent siblings: each its own group
            layers.append([(name.strip(),) for name in layer.split("|")])
        else:  # ":" siblings may import each other: one group
            layers.append([tuple(name.strip() for name in layer.split(":"))])
    ignored = [tuple(s.strip() for s in rule.split("->")) for rule in contract.get("ignore_imports", [])]
    return container, layers, ignored


def _matches(pattern: str, module: str) -> bool:
    regex = re.escape(pattern).replace(r"\.\*\*", r"(\..+)").replace(r"\.\*", r"(\.[^.]+)")
    return re.fullmatch(regex, module) is not None


def layer_violations(graph: dict[str, set[str]], container: str, layers, ignored) -> list[str]:
    """Imports from a lower layer into a higher one, between independent siblings, or of an unplaced module."""
    where: dict[str, tuple[int, int]] = {}
    for level, groups in enumerate(layers):
        for g, group in enumerate(groups):
            for name in group:
                where[f"{container}.{name}"] = (level, g)

    def place(module: str) -> tuple[int, int] | None:
        parts = module.split(".")
        return where.get(".".join(parts[:2])) if len(parts) > 1 else None

    problems = []
    for module, targets in sorted(graph.items()):
        if module != container and place(module) is None:
            problems.append(f"{module}: not in any layer (add it to pyproject's [tool.importlinter] layers)")
        for target in sorted(targets):
            a, b = place(module), place(target)
            if a is None or b is None or a == b or any(_matches(s, module) and _matches(t, target) for s, t in ignored):
                continue
            if b[0] > a[0] or (b[0] == a[0] and b[1] != a[1]):
                problems.append(f"{module} -> {target}: {'upward' if b[0] > a[0] else 'between independent siblings'}")
    return problems


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph) + 100))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def size_violations(src: Path, package: str, allowed: dict[str, str]) -> list[str]:
    """Files over MAX_FILE_LINES lines and functions over MAX_FUNCTION_LINES lines (not in ``allowed``)."""
    problems = []
    for path in module_files(src, package).values():
        rel = path.relative_to(src).as_posix()
        text = path.read_text()
        if len(text.splitlines()) > MAX_FILE_LINES:
            problems.append(f"{rel}: {len(text.splitlines())} lines > {MAX_FILE_LINES}")

        def walk(node: ast.AST, prefix: str) -> None:
            for child in ast.iter_child_nodes(node):
                name = f"{prefix}{getattr(child, 'name', '')}"
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    length = child.end_lineno - child.lineno + 1
                    if length > MAX_FUNCTION_LINES and f"{rel}:{name}" not in allowed:
                        problems.append(f"{rel}:{name}: {length} lines > {MAX_FUNCTION_LINES}")
                    walk(child, f"{name}.")
                elif isinstance(child, ast.ClassDef):
                    walk(child, f"{name}.")
                else:
                    walk(child, prefix)

        walk(ast.parse(text, str(path)), "")
    return problems


# ------------------------------------------------------------------------------------- mlip itself
def test_layers_of_mlip():
    container, layers, ignored = read_layers(ROOT / "pyproject.toml")
    problems = layer_violations(import_graph(ROOT, "mlip"), container, layers, ignored)
    assert not problems, "layer violations (docs/architecture.md):\n" + "\n".join(problems)


def test_no_import_cycles_in_mlip():
    cycles = import_cycles(import_graph(ROOT, "mlip"))
    assert not cycles, "import circles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_no_import_cycles_in_the_tree():
    """No circle anywhere: mlip, scripts/ and tests/ together, function-level imports included."""
    graph, ambiguous = tree_import_graph(ROOT)
    assert not ambiguous, "imports of a loose module name that several files have:\n" + "\n".join(ambiguous)
    assert "scripts/benchmark_inference" in graph and "tests/train/train_support" in graph
    assert "tests/train/train_support" in graph["tests/train/test_compiled_step"]  # helpers resolve
    cycles = import_cycles(graph)
    assert not cycles, "import circles:\n" + "\n".join(" -> ".join(cycle_path(graph, c)) for c in cycles)


def test_file_and_function_sizes():
    problems = size_violations(ROOT, "mlip", LONG_FUNCTIONS)
    assert not problems, "too long:\n" + "\n".join(problems)


def _lint_imports() -> str:
    pytest.importorskip("importlinter", reason="import-linter is in the 'test' extra: pip install -e '.[test]'")
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    if exe is None:
        pytest.skip("the lint-imports command of import-linter is not on PATH")
    return exe


def test_import_linter_contract():
    proc = subprocess.run([_lint_imports(), "--no-cache", "--config", str(ROOT / "pyproject.toml")],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


ONE_HOME = {
    # pattern (in source text): (its one home, other files allowed with the reason)
    "torch.cuda.is_available": ("mlip/device.py", {
        "mlip/nn/backends/cueq_base.py": "are the fused cuEquivariance kernels usable (not a device choice)",
        "mlip/train/checkpoint.py": "saves/restores the CUDA RNG state when there is one",
    }),
    '"float32": torch.float32': ("mlip/device.py", {
        "mlip/io/mace_pickle.py": "names of pickled torch dtypes in mace-torch files (incl. int64, bool), not a setting",
    }),
    "os.replace(": ("mlip/files.py", {}),
    "tempfile.mkstemp(": ("mlip/files.py", {}),
}
"""Code that exists once (docs/architecture.md, "One of each"): where it lives and the reasoned exceptions."""


def test_one_of_each():
    problems = []
    for pattern, (home, allowed) in ONE_HOME.items():
        found = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "mlip").rglob("*.py") if pattern in p.read_text())
        extra = [f for f in found if f != home and f not in allowed]
        if home not in found or extra:
            problems.append(f"{pattern!r}: expected in {home} only, found in {found}")
    assert not problems, "\n".join(problems)


# ------------------------------------------------------------------------------------- the checkers
def _synthetic_package(tmp_path: Path, upward: bool) -> Path:
    """``pkg`` with layers low (``pkg.low``) < high (``pkg.high``); with ``upward`` low imports high."""
    pkg = tmp_path / "pkg"
    (pkg / "low").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "low" / "__init__.py").write_text("")
    (pkg / "low" / "core.py").write_text(
        "def f():\n    from pkg.high import g\n    return g\n" if upward else "def f():\n    return 1\n")
    (pkg / "high.py").write_text("from pkg.low.core import f\n\ndef g():\n    return f()\n")
    (tmp_path / "pyproject.toml").write_text(textwrap.dedent("""
        [tool.importlinter]
        root_package = "pkg"

        [[tool.importlinter.contracts]]
        name = "pkg layers"
        type = "layers"
        containers = ["pkg"]
        exhaustive = true
        layers = ["high", "low"]
    """))
    return tmp_path


@pytest.mark.parametrize("upward", [False, True])
def test_checkers_catch_a_synthetic_violation(tmp_path, upward):
    src = _synthetic_package(tmp_path, upward)
    graph = import_graph(src, "pkg")
    assert graph["pkg.high"] == {"pkg.low.core"}
    container, layers, ignored = read_layers(src / "pyproject.toml")
    problems = layer_violations(graph, container, layers, ignored)
    cycles = import_cycles(graph)
    if upward:
        assert problems == ["pkg.low.core -> pkg.high: upward"]
        assert cycles == [["pkg.high", "pkg.low.core"]]
    else:
        assert problems == [] and cycles == []
    proc = subprocess.run([_lint_imports(), "--no-cache", "--config", str(src / "pyproject.toml")],
                          cwd=src, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(src)})
    assert (proc.returncode != 0) == upward, proc.stdout[-2000:] + proc.stderr[-2000:]


def test_checker_sizes_and_siblings(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    body = "".join(f"        x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES))
    (pkg / "a.py").write_text("import pkg.b\n\nclass C:\n    def long(self):\n" + body + "\n" * MAX_FILE_LINES)
    (pkg / "b.py").write_text("")
    problems = size_violations(tmp_path, "pkg", {})
    assert problems == [f"pkg/a.py: {4 + MAX_FUNCTION_LINES + MAX_FILE_LINES} lines > {MAX_FILE_LINES}",
                        f"pkg/a.py:C.long: {1 + MAX_FUNCTION_LINES} lines > {MAX_FUNCTION_LINES}"]
    assert size_violations(tmp_path, "pkg", {"pkg/a.py:C.long": "test"}) == problems[:1]
    graph = import_graph(tmp_path, "pkg")
    independent = [[("a",), ("b",)]]
    assert layer_violations(graph, "pkg", independent, []) == ["pkg.a -> pkg.b: between independent siblings"]
    assert layer_violations(graph, "pkg", [[("a", "b")]], []) == []
    assert layer_violations(graph, "pkg", independent, [("pkg.a", "pkg.b")]) == []
    assert layer_violations(graph, "pkg", [[("b",)]], []) == ["pkg.a: not in any layer (add it to pyproject's "
                                                                "[tool.importlinter] layers)"]


def test_tree_checker_resolves_loose_modules(tmp_path):
    """Loose files: same-folder module first, else the one file of that name in the tree, lazy imports and
    ``importlib.import_module`` count; a circle between two scripts is found and spelled out."""
    files = {
        "pkg/__init__.py": "",
        "pkg/core.py": "",
        "scripts/a.py": "import pkg.core\n\ndef main():\n    import b  # lazy\n    return b\n",
        "scripts/b.py": "from a import X\n",
        "scripts/c.py": "import importlib\n\nhelper = importlib.import_module('helper')\n",
        "tests/x/helper.py": "",
        "tests/x/test_one.py": "from helper import f\nimport a\nimport numpy\n",
        "tests/y/helper.py": "",
        "tests/z/test_two.py": "import helper\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    graph, ambiguous = tree_import_graph(tmp_path, "pkg")
    assert graph["scripts/a"] == {"pkg.core", "scripts/b"}
    assert graph["scripts/b"] == {"scripts/a"}
    assert graph["tests/x/test_one"] == {"tests/x/helper", "scripts/a"}
    assert graph["scripts/c"] == set() and graph["tests/z/test_two"] == set()
    assert ambiguous == ["scripts/c: import helper (one of ['tests/x/helper', 'tests/y/helper'])",
                         "tests/z/test_two: import helper (one of ['tests/x/helper', 'tests/y/helper'])"]
    cycles = import_cycles(graph)
    assert cycles == [["scripts/a", "scripts/b"]]
    assert cycle_path(graph, cycles[0]) == ["scripts/a", "scripts/b", "scripts/a"]
    graph["scripts/b"] = set()
    assert import_cycles(graph) == []
