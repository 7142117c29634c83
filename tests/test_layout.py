"""The package's layout rules, read from the source (every import, also those inside functions):
core/ is plain Python, its modules import each other without a cycle, and a defs module takes
what it shares from defs/resources.py or core, never from a sibling's assets, and neither
imports the demo."""

from __future__ import annotations

import ast
from pathlib import Path

from segmentation_dagster.core.settings import REPO_ROOT

PACKAGE = REPO_ROOT / "segmentation_dagster"


def _module(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Modules ``path`` imports (``from a import b`` counts as ``a.b`` too: b may be a module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def _graph(folder: Path) -> dict[str, set[str]]:
    modules = {_module(p): p for p in folder.rglob("*.py")}
    return {name: _imports(path) & set(modules) - {name} for name, path in modules.items()}


def test_core_and_demo_never_import_dagster():
    for path in [*(PACKAGE / "core").rglob("*.py"), *(PACKAGE / "demo").rglob("*.py")]:
        bad = {m for m in _imports(path) if m.split(".")[0] in ("dagster", "dagster_dbt")}
        assert not bad, f"{path.name} imports {bad}"


def test_core_modules_import_each_other_without_a_cycle():
    graph = _graph(PACKAGE / "core")
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, f"import cycle: {' -> '.join((*path, module))}"
        if module in done:
            return
        for dep in graph[module]:
            visit(dep, (*path, module))
        done.add(module)

    for module in graph:
        visit(module, ())


def test_no_defs_module_imports_from_a_siblings_assets_or_checks():
    for path in (PACKAGE / "defs").rglob("*.py"):
        own = _module(path)
        borrowed = {
            m
            for m in _imports(path)
            if m.startswith("segmentation_dagster.defs.")
            and m.rsplit(".", 1)[-1] in ("assets", "checks")
            and m != own
        }
        assert not borrowed, f"{own} imports {borrowed}"


def test_production_code_does_not_import_the_demo():
    for folder in ("core", "defs"):
        for path in (PACKAGE / folder).rglob("*.py"):
            demo = {m for m in _imports(path) if m.startswith("segmentation_dagster.demo")}
            assert not demo, f"{path.relative_to(PACKAGE)} imports {demo}"


#: Other libraries' private or unstable modules: imported by segmentation_dagster/adapters only.
PRIVATE = (
    "dagster._",
    "dagster_dbt.asset_utils",
    "dagster_dbt.core",
    "dbt_common",
    "evidently.legacy",
    "great_expectations.validator",
    "great_expectations.expectations.expectation_configuration",
)


def test_private_apis_of_other_libraries_are_used_by_the_adapters_only():
    for folder in (PACKAGE, REPO_ROOT / "benchmarks"):
        for path in folder.rglob("*.py"):
            if path.is_relative_to(PACKAGE / "adapters"):
                continue
            private = {m for m in _imports(path) if m.startswith(PRIVATE)}
            assert not private, f"{path.relative_to(REPO_ROOT)} imports {private}"
