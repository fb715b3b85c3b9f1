"""The package's structure: dependencies point one way, converters are pure, recipes never assemble models.

Imports are read from the source (``ast``), lazy ones inside functions included: a lazy import that breaks a
cycle is the cycle still there.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ssd_zoo"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """The ssd_zoo modules that the file at ``path`` imports, anywhere in it."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # "from pkg import mod" imports the module; "from pkg import name" imports pkg (its __init__).
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        found |= {t for t in targets if t in modules and t != name}
    return found


def import_graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imported_modules(p, modules) for p in paths}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import cycle, each as ``[a, b, ..., a]`` (depth-first search from every module)."""
    found = []

    def visit(path: list[str]) -> None:
        for nxt in sorted(graph[path[-1]]):
            if nxt == path[0]:
                found.append(path + [nxt])
            elif nxt not in path and nxt > path[0]:  # each cycle once, from its smallest module
                visit(path + [nxt])

    for start in sorted(graph):
        visit([start])
    return found


def test_no_module_imports_one_that_imports_it_back() -> None:
    found = [" -> ".join(c) for c in cycles(import_graph())]
    assert not found, f"import cycles: {found}"


def test_converters_import_nothing_else_of_ssd_zoo() -> None:
    graph = import_graph()
    # The converters read ssd_zoo's model record (to leave it out of other layouts) from its own leaf module.
    assert graph["ssd_zoo.weights.convert"] <= {"ssd_zoo.models.record"}
    assert graph["ssd_zoo.models.record"] == set()
    assert graph["ssd_zoo.files"] <= {"ssd_zoo.errors"}  # its error types, from the leaf every module may use
    assert graph["ssd_zoo.errors"] == set()


def test_recipes_and_cli_never_assemble_models() -> None:
    parts = ("SSDHead", "SSDLiteHead", "DefaultBoxGenerator", "TimmBackbone", "VGG16Backbone",
             "SSDTransform", "create_features", "ssd_zoo.SSD(")
    files = sorted((ROOT / "recipes").glob("*.py")) + sorted((PACKAGE / "cli").glob("*.py")) + [PACKAGE / "deploy" / "export.py"]
    found = {f"{path.relative_to(ROOT)}: {part}" for path in files for part in parts if part in path.read_text()}
    assert not found, f"models are built only in ssd_zoo/models (ssd_zoo.build): {sorted(found)}"


def test_the_capabilities_are_folders() -> None:
    """``ls ssd_zoo`` shows the architecture: capabilities are folders, a few modules sit loose beside them."""
    loose = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(loose) <= 6, f"modules loose in ssd_zoo/: {loose}"
    folders = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert {"models", "ops", "data", "metrics", "weights", "finetune", "detect", "deploy", "cli"} <= folders
