"""Each rule lives in one place (issue 26): the older copies are gone, found by reading the code's AST.

* the head rule: only :mod:`mlip.nn.heads` reads a model's ``default_head`` or falls back to ``heads[0]``;
* the predict-over-frames engine: only :mod:`mlip.inference.frames` turns structures into model batches;
* the model dtype probe: only :mod:`mlip.device` defines one;
* greedy batch packing: only :mod:`mlip.data.batch` packs;
* the vesin wrapper: only :mod:`mlip.data.neighbors` calls vesin;
* ``prepare_model``/``check_cell`` live in :mod:`mlip.inference`, not in the ASE calculator.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

MLIP = Path(__file__).resolve().parents[1] / "mlip"


def _modules() -> dict[str, ast.Module]:
    return {str(p.relative_to(MLIP.parent)): ast.parse(p.read_text(), str(p)) for p in sorted(MLIP.rglob("*.py"))}


MODULES = _modules()


def _where(predicate, allowed: set[str]) -> list[str]:
    """``file:line`` of every node satisfying ``predicate`` outside the ``allowed`` files."""
    found = []
    for name, tree in MODULES.items():
        if name in allowed:
            continue
        found += [f"{name}:{node.lineno}" for node in ast.walk(tree) if predicate(node)]
    return found


def _reads_default_head(node: ast.AST) -> bool:
    if isinstance(node, ast.Attribute) and node.attr == "default_head" and isinstance(node.ctx, ast.Load):
        return True
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr"
            and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) and node.args[1].value == "default_head")


def _first_of_heads(node: ast.AST) -> bool:
    """``heads[0]`` or ``x.heads[0]``: the old "first head" fallback."""
    if not (isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) and node.slice.value == 0):
        return False
    value = node.value
    return (isinstance(value, ast.Name) and value.id == "heads") or (isinstance(value, ast.Attribute) and value.attr == "heads")


def _calls(name: str):
    def predicate(node: ast.AST) -> bool:
        if not isinstance(node, ast.Call):
            return False
        func = node.func
        return (isinstance(func, ast.Name) and func.id == name) or (isinstance(func, ast.Attribute) and func.attr == name)
    return predicate


def _defines(names: set[str]):
    return lambda node: isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name in names


def _imports(module: str):
    def predicate(node: ast.AST) -> bool:
        if isinstance(node, ast.Import):
            return any(alias.name.split(".")[0] == module for alias in node.names)
        return isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == module
    return predicate


def test_one_head_rule():
    # the config's finetune.default_head is a different thing: the setting that fine-tuning writes into the file
    assert _where(_reads_default_head, {"mlip/nn/heads.py", "mlip/train/finetune.py", "mlip/train/run.py"}) == []
    assert _where(_first_of_heads, {"mlip/nn/heads.py"}) == []


def test_one_predict_engine():
    engine = {"mlip/inference/frames.py"}
    training = {"mlip/train/data_setup.py"}  # builds the training set's graphs once, not a prediction loop
    assert _where(_calls("structure_batches"), engine) == []
    assert _where(_calls("structures_to_graphs"), engine | training | {"mlip/data/structures.py"}) == []
    assert _where(_defines({"to_configuration", "_configs", "_model_dtype", "predict_configurations_loop"}), set()) == []


def test_one_dtype_probe_packing_and_vesin_wrapper():
    assert _where(_defines({"model_dtype", "_model_dtype", "model_device", "_model_device"}), {"mlip/device.py"}) == []
    assert _where(_defines({"budget_chunks", "pack_greedy"}), {"mlip/data/batch.py"}) == []
    assert _where(_imports("vesin"), {"mlip/data/neighbors.py"}) == []


@pytest.mark.parametrize("name", ["prepare_model", "check_cell", "check_elements", "perpendicular_widths"])
def test_engine_helpers_live_in_inference(name):
    assert _where(_defines({name}), {"mlip/inference/prepare.py", "mlip/inference/checks.py"}) == []
    importers = [f"{file}:{node.lineno}" for file, tree in MODULES.items() for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module == "mlip.calculator"
                 and any(alias.name == name for alias in node.names)]
    assert importers == []
