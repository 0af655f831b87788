"""mlip.data.keys is the one list of batch, graph and model-output keys: mlip code looks them up by name.

An AST scan of ``mlip/**/*.py`` fails on a string constant equal to a value of :mod:`mlip.data.keys` used as
the key of a subscript (``batch["ptr"]``, also as an assignment target), of ``.get``/``.pop``/``.setdefault``
(``out.get("stress")``) or of an ``in``/``not in`` test (``"head" in batch``), when the container is a batch,
graph or model-output dict. Such a container is recognised by its name (see :data:`CONTAINER_NAMES`, the names
mlip code gives these dicts) or, for a call, by the function that returns one (:data:`RETURNING_CALLS`).
Dicts that merely share a word (ASE's ``atoms.info`` and ``calc.results``, HDF5 datasets and column indices,
extxyz key maps, JSON records, per-frame prediction dicts) have other names and are not scanned.
Also: every key constant has a shape in ``keys.SHAPES``, and its docstring starts with that shape.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from mlip.data import keys

REPO = Path(__file__).resolve().parents[2]

KEY_NAMES: dict[str, str] = {v: k for k, v in vars(keys).items() if k.isupper() and isinstance(v, str)}
"""Every key constant of mlip.data.keys, by value."""

# Names mlip code gives batch / graph / model-output dicts (a bare name, or the last attribute: chunk.batch):
#   batch, b (a copy of one), inputs, strained        batch dicts (model inputs)
#   graph, g                                          graph dicts (mlip.data.graph, collate/uncollate)
#   out, output, outputs, full, res, result, r, pred  model or uncertainty-evaluator outputs
CONTAINER_NAMES = frozenset({
    "batch", "b", "inputs", "strained",
    "graph", "g",
    "out", "output", "outputs", "full", "res", "result", "r", "pred",
})

# Calls whose result is such a dict, subscripted directly (``self.graph(i)["edge_index"]``):
RETURNING_CALLS = frozenset({
    "graph", "configuration_to_graph", "collate",  # graph dicts, batches
    "model", "evaluate", "evaluate_with_features", "_energy", "potential",  # model / evaluator outputs
})

# (file, container name) pairs that look like one of the above but hold another vocabulary:
EXEMPT: dict[tuple[str, str], str] = {
    ("mlip/integrations/torchsim.py", "result"): "torch-sim's result dict: torch-sim's output names, not mlip's",
}


def _container_name(node: ast.expr) -> tuple[str, str] | None:
    """("name", x) for ``x`` / ``a.x``, ("call", f) for ``f(...)`` / ``a.f(...)``; None otherwise."""
    if isinstance(node, ast.Name):
        return "name", node.id
    if isinstance(node, ast.Attribute):
        return "name", node.attr
    if isinstance(node, ast.Call):
        inner = _container_name(node.func)
        return ("call", inner[1]) if inner is not None and inner[0] == "name" else None
    return None


def _is_key_dict(node: ast.expr) -> bool:
    kind_name = _container_name(node)
    if kind_name is None:
        return False
    kind, name = kind_name
    return name in (CONTAINER_NAMES if kind == "name" else RETURNING_CALLS)


def _lookups(tree: ast.AST):
    """(container expression, key constant) of every constant-key lookup in ``tree``."""
    for n in ast.walk(tree):
        if isinstance(n, ast.Subscript) and isinstance(n.slice, ast.Constant):
            yield n.value, n.slice
        elif (isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
              and n.func.attr in ("get", "pop", "setdefault") and n.args and isinstance(n.args[0], ast.Constant)):
            yield n.func.value, n.args[0]
        elif isinstance(n, ast.Compare) and isinstance(n.left, ast.Constant):
            for op, right in zip(n.ops, n.comparators):
                if isinstance(op, (ast.In, ast.NotIn)):
                    yield right, n.left


def offenders_in(source: str, rel: str) -> list[str]:
    """``rel:line: container[key] -> keys.NAME`` for every literal batch/graph/output key in ``source``."""
    found = []
    for container, const in _lookups(ast.parse(source)):
        if not isinstance(const.value, str) or const.value not in KEY_NAMES or not _is_key_dict(container):
            continue
        kind_name = _container_name(container)
        if kind_name is not None and (rel, kind_name[1]) in EXEMPT:
            continue
        found.append(f"{rel}:{const.lineno}: {ast.unparse(container)}[{const.value!r}]"
                     f" -> keys.{KEY_NAMES[const.value]}")
    return found


def offenders(root: Path) -> list[str]:
    out = []
    for path in sorted((root / "mlip").rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel == "mlip/data/keys.py":
            continue
        out += offenders_in(path.read_text(encoding="utf-8"), rel)
    return out


def test_mlip_looks_keys_up_by_name():
    found = offenders(REPO)
    assert not found, ("batch/graph/output keys spelled as string literals; use mlip.data.keys:\n"
                       + "\n".join(found))


def test_exemptions_are_still_needed():
    for (rel, name), why in EXEMPT.items():
        source = (REPO / rel).read_text(encoding="utf-8")
        names = {(_container_name(c) or ("", ""))[1] for c, k in _lookups(ast.parse(source))
                 if isinstance(k.value, str) and k.value in KEY_NAMES}
        assert name in names, f"EXEMPT[{rel!r}, {name!r}] ({why}) matches nothing any more; remove it"


def test_the_criterion():
    flagged = offenders_in(
        "batch['ptr']\nout.get('stress')\n'head' in batch\n'x' not in graph\nchunk.batch['positions']\n"
        "self.graph(i)['edge_index']\nres.pop('energy_uncertainty')\nx = {}\nout['forces'] = x\n"
        "_energy(model, batch, gate)['energy']\nb['edge_gate'] = 1\n",
        "mlip/some.py")
    assert [line.split(":")[1] for line in flagged] == ["1", "2", "3", "5", "6", "7", "9", "10", "11"], flagged
    assert offenders_in(
        "atoms.info['energy']\nself.results['energy']\n_I['head']\nf['positions']\nbatch[keys.PTR]\n"
        "out['energy_mae']\nrecord['head']\np['forces']\nkeys['stress']\n'stress' in properties\n"
        "model_outputs(model, frames)['energy']\nbatch[0]\n",
        "mlip/some.py") == []
    assert offenders_in("result['stress']\n", "mlip/integrations/torchsim.py") == []
    assert offenders_in("result['stress']\n", "mlip/other.py") != []


# ---------------------------------------------------------------------------------- keys.py itself
SHAPE = re.compile(r"\[[A-Z0-9+]+(,[A-Z0-9+]+)*\]")


def test_every_key_has_a_shape():
    values = list(KEY_NAMES)
    assert len(values) == len({k for k, v in vars(keys).items() if k.isupper() and isinstance(v, str)}), \
        "two key constants share a value"
    assert set(values) - set(keys.SHAPES) == set(), "keys without a shape in keys.SHAPES"
    assert set(keys.SHAPES) - set(values) == set(), "keys.SHAPES names keys that are no constant"
    for key, shape in keys.SHAPES.items():
        assert SHAPE.fullmatch(shape), (key, shape)


def test_docstrings_start_with_the_shape():
    """Each ``NAME = "value"`` (or ``A, B = "a", "b"``) is followed by a docstring opening with ````[shape]````."""
    body = ast.parse((REPO / "mlip" / "data" / "keys.py").read_text(encoding="utf-8")).body
    seen = set()
    for stmt, nxt in zip(body, body[1:] + [None]):
        if not isinstance(stmt, ast.Assign) or not isinstance(stmt.value, (ast.Constant, ast.Tuple)):
            continue
        values = stmt.value.elts if isinstance(stmt.value, ast.Tuple) else [stmt.value]
        strings = [v.value for v in values if isinstance(v, ast.Constant) and isinstance(v.value, str)]
        if not strings or len(strings) != len(values):
            continue
        assert isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant), f"{strings}: no docstring"
        doc = nxt.value.value
        for s in strings:
            assert doc.startswith(f"``{keys.SHAPES[s]}``"), f"{s}: docstring {doc[:30]!r} vs shape {keys.SHAPES[s]}"
            seen.add(s)
    assert seen == set(KEY_NAMES)


def test_property_maps():
    assert set(keys.HAS_LABEL) == set(keys.PROPERTIES) == set(keys.PROPERTY_WEIGHT)
    for prop in keys.PROPERTIES:
        assert keys.HAS_LABEL[prop] == f"has_{prop}" and keys.PROPERTY_WEIGHT[prop] == f"{prop}_weight"
