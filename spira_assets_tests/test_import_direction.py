"""The layers point one way: the core (audio, features, ingest, importers, storage, ml, demo,
monitoring, privacy and the core modules at the package root) imports neither Dagster nor an
adapter or application module (assets, sensors, definitions, resources, the CLI...). Every
import statement is read, those inside functions too. A planted import in a copy of the
package is caught."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import spira_assets

PACKAGE = Path(spira_assets.__file__).parent
CORE_PACKAGES = (
    "audio",
    "features",
    "ingest",
    "importers",
    "storage",
    "ml",
    "evaluation",
    "demo",
    "monitoring",
    "privacy",
)
CORE_MODULES = ("workers", "plots")
# Dagster adapters and the application (docs/ARCHITECTURE.md, "Module map")
UPPER = (
    "app",
    "assets",
    "automation",
    "cli",
    "definitions",
    "deployment",
    "environment",
    "mlflow_session",
    "partitions",
    "resources",
    "resource_fields",
    "mlflow_session",
)
FORBIDDEN_LIBRARIES = ("dagster", "dagster_")


def core_files(package: Path) -> list[Path]:
    files = [f for name in CORE_PACKAGES for f in sorted((package / name).rglob("*.py"))]
    return files + [package / f"{name}.py" for name in CORE_MODULES]


def imported_names(tree: ast.AST, module: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the tree."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the importing module's package
                parent = module.split(".")[: -node.level]
                base = ".".join([*parent, base] if base else parent)
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def wrong_way(name: str) -> bool:
    top = name.split(".")[0]
    if top == "dagster" or top.startswith(FORBIDDEN_LIBRARIES[1]):
        return True
    parts = name.split(".")
    return top == "spira_assets" and len(parts) > 1 and parts[1] in UPPER


def upward_imports(package: Path) -> list[str]:
    """``file:line imports name`` for each import of Dagster or an upper layer by the core."""
    problems = []
    for path in core_files(package):
        relative = path.relative_to(package.parent)
        module = ".".join(relative.with_suffix("").parts)
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        problems += [
            f"{relative}:{line} imports {name}"
            for line, name in imported_names(tree, module)
            if wrong_way(name)
        ]
    return sorted(set(problems))


def test_the_core_imports_no_dagster_and_no_adapter() -> None:
    assert upward_imports(PACKAGE) == []


def test_every_top_level_module_has_its_layer() -> None:
    """A module or folder added at the package root is either core or an upper layer, so the
    direction test reads it."""
    top = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"} | {
        p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()
    }
    assert top == set(CORE_PACKAGES) | set(CORE_MODULES) | set(UPPER)


def test_every_core_folder_and_module_exists() -> None:
    """A renamed layer would otherwise leave the test checking nothing."""
    assert all((PACKAGE / name).is_dir() for name in CORE_PACKAGES)
    assert all((PACKAGE / f"{name}.py").is_file() for name in CORE_MODULES)
    assert len(core_files(PACKAGE)) > 60


def test_a_planted_upward_import_is_caught(tmp_path: Path) -> None:
    copy = tmp_path / "spira_assets"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "ml" / "planted.py").write_text(
        "def helper():\n    from ..resources import StorageResource\n    return StorageResource\n"
    )
    (copy / "audio" / "planted.py").write_text("import dagster as dg\n")
    (copy / "storage/layout.py").write_text(
        (copy / "storage/layout.py").read_text()
        + "\nfrom spira_assets.assets.tables import table_out\n"
    )
    found = upward_imports(copy)
    assert "spira_assets/ml/planted.py:2 imports spira_assets.resources" in found
    assert "spira_assets/audio/planted.py:1 imports dagster" in found
    assert any(
        p.startswith("spira_assets/storage/layout.py:") and "assets.tables" in p for p in found
    )


# core modules that touch the process environment, and why (none of them reads a setting)
ENVIRONMENT_USERS = {
    # the served model's entry point in MLflow's scoring process: it reads its environment
    # once (load_context) and passes the mapping down; it switches the log off while MLflow
    # scores the input example
    "spira_assets/ml/serving.py",
    # copies the whole environment into its worker processes (and hashes it to reuse a pool)
    "spira_assets/workers.py",
}


def environment_reads(package: Path) -> list[str]:
    """``file:line`` of every use of ``os.environ``/``os.getenv`` (or their names imported from
    ``os``) by the core: settings come from ``environment.py`` or as arguments."""
    found = []
    for path in core_files(package):
        relative = path.relative_to(package.parent).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            hit = (
                isinstance(node, ast.Attribute)
                and node.attr in ("environ", "getenv", "environb")
                and isinstance(node.value, ast.Name)
                and node.value.id == "os"
            ) or (
                isinstance(node, ast.ImportFrom)
                and node.module == "os"
                and any(a.name in ("environ", "getenv", "environb") for a in node.names)
            )
            if hit:
                found.append(f"{relative}:{node.lineno}")
    return sorted(set(found))


def test_the_core_reads_no_environment_variable() -> None:
    users = {entry.split(":")[0] for entry in environment_reads(PACKAGE)}
    assert users <= ENVIRONMENT_USERS, sorted(users - ENVIRONMENT_USERS)
    assert users == ENVIRONMENT_USERS  # an entry that no longer applies goes


def test_a_planted_environment_read_in_the_core_is_caught(tmp_path: Path) -> None:
    copy = tmp_path / "spira_assets"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "privacy" / "planted.py").write_text(
        "import os\n\ndef key():\n    return os.environ.get('SPIRA_PSEUDONYM_KEY', '')\n"
    )
    (copy / "evaluation" / "planted.py").write_text("from os import getenv\n")
    found = environment_reads(copy)
    assert "spira_assets/privacy/planted.py:4" in found
    assert "spira_assets/evaluation/planted.py:1" in found
