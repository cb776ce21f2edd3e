"""Layering: modules, logicengine, config and util never import the task manager or the engine."""

import ast
import pathlib

import pytest

FRAMEWORK = pathlib.Path(__file__).resolve().parents[2] / "decisionengine" / "framework"
LOWER_LAYERS = ("modules", "logicengine", "config", "util")
FORBIDDEN = ("decisionengine.framework.taskmanager", "decisionengine.framework.engine")


def imported_names(path: pathlib.Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("layer", LOWER_LAYERS)
def test_lower_layers_do_not_import_upper_layers(layer):
    files = sorted((FRAMEWORK / layer).rglob("*.py"))
    assert files, f"no python files in {layer}"
    offenders = {
        f"{path.relative_to(FRAMEWORK)}: {name}"
        for path in files
        for name in imported_names(path)
        if name.startswith(FORBIDDEN)
    }
    assert not offenders, offenders


def test_checker_detects_a_forbidden_import(tmp_path):
    sample = tmp_path / "bad.py"
    sample.write_text("from decisionengine.framework.taskmanager import TaskManager\n")
    assert any(name.startswith(FORBIDDEN) for name in imported_names(sample))


def test_dataspace_imports_nothing_above_it():
    offenders = {
        f"{path.relative_to(FRAMEWORK)}: {name}"
        for path in sorted((FRAMEWORK / "dataspace").rglob("*.py"))
        for name in imported_names(path)
        if name.startswith("decisionengine") and not name.startswith("decisionengine.framework.dataspace")
    }
    assert not offenders, offenders


def test_taskmanager_does_not_import_the_engine():
    offenders = {
        f"{path.relative_to(FRAMEWORK)}: {name}"
        for path in sorted((FRAMEWORK / "taskmanager").rglob("*.py"))
        for name in imported_names(path)
        if name.startswith("decisionengine.framework.engine")
    }
    assert not offenders, offenders
