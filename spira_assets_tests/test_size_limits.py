"""Size limits, read from the syntax tree: no module of ``spira_assets`` over 400 lines, no
function of the Dagster adapters (``assets/``) or the CLI (``cli/``) over 80. The modules and
functions that were over when the limits were set are listed with their size then: they may
only shrink (the entry goes once they fit). Planted oversize code is caught."""

from __future__ import annotations

import ast
from pathlib import Path

import spira_assets

PACKAGE = Path(spira_assets.__file__).parent
MAX_MODULE_LINES = 400
MAX_ADAPTER_FUNCTION_LINES = 80
ADAPTER_FOLDERS = ("assets", "cli")
# those over the limit, at their size (path -> lines, "path:function" -> lines): they may only
# shrink. Those listed when the limits were set (2026-12-05, issue 27) have all been split.
KNOWN_OVER: dict[str, int] = {}


def oversized(package: Path) -> dict[str, int]:
    """Every module over the module limit and adapter function over the function limit."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package).as_posix()
        text = path.read_text(encoding="utf-8")
        lines = len(text.splitlines())
        if lines > MAX_MODULE_LINES:
            found[relative] = lines
        if relative.split("/")[0] not in ADAPTER_FOLDERS:
            continue
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_ADAPTER_FUNCTION_LINES:
                    found[f"{relative}:{node.name}"] = length
    return found


def violations(found: dict[str, int]) -> list[str]:
    return [
        f"{name}: {size} lines (limit {KNOWN_OVER.get(name, 'the rule')})"
        for name, size in sorted(found.items())
        if size > KNOWN_OVER.get(name, 0)
    ]


def test_no_module_or_adapter_function_grows_past_its_limit() -> None:
    assert violations(oversized(PACKAGE)) == []


def test_a_listed_exception_that_now_fits_is_removed_from_the_list() -> None:
    found = oversized(PACKAGE)
    assert sorted(set(KNOWN_OVER) - set(found)) == [], "these fit now: delete their entries"


def test_planted_oversize_code_is_caught(tmp_path: Path) -> None:
    (tmp_path / "assets").mkdir()
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_ADAPTER_FUNCTION_LINES))
    (tmp_path / "assets" / "planted.py").write_text(f"def step():\n{body}")
    (tmp_path / "big.py").write_text("x = 1\n" * (MAX_MODULE_LINES + 1))
    (tmp_path / "ml.py").write_text(f"def core_function():\n{body}")  # not an adapter: allowed
    found = oversized(tmp_path)
    assert found == {"assets/planted.py:step": 81, "big.py": 401}
    assert violations(found) == [
        "assets/planted.py:step: 81 lines (limit the rule)",
        "big.py: 401 lines (limit the rule)",
    ]
