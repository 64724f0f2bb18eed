"""The floor plan holds: small modules, no private name used across modules.

The layers (imports run down the flow) are checked by ``lint-imports`` (``pyproject.toml``,
``[tool.importlinter]``) in ``make test``; these tests check what import-linter cannot.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "geochem_sr"
MODULES = sorted(PACKAGE.rglob("*.py"))
MAX_LINES = 500


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _cross_module_private_uses(source: str, here: str) -> list[str]:
    """``from geochem_sr.x import _name`` and ``alias._name`` on an imported geochem_sr
    module, in the source of module ``here``."""
    tree = ast.parse(source)
    aliases: dict[str, str] = {}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.startswith("geochem_sr"):
            for a in node.names:
                target = f"{node.module}.{a.name}"
                if _private(a.name) and node.module != here:
                    found.append(f"line {node.lineno}: from {node.module} import {a.name}")
                aliases[a.asname or a.name] = target
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("geochem_sr"):
                    aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else "geochem_sr"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr) \
                and isinstance(node.value, ast.Name) and node.value.id in aliases:
            target = aliases[node.value.id]
            if target != here:
                found.append(f"line {node.lineno}: {node.value.id}.{node.attr} ({target})")
    return found


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_is_small(path):
    n = len(path.read_text().splitlines())
    assert n <= MAX_LINES, f"{path.relative_to(PACKAGE)}: {n} lines (at most {MAX_LINES})"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_private_name_used_across_modules(path):
    assert _cross_module_private_uses(path.read_text(), _module_name(path)) == []


def test_the_checker_sees_a_private_import():
    src = ("from geochem_sr.io.stores import _leftovers\n"
           "import geochem_sr.io as gio\n"
           "gio._x\n"
           "from geochem_sr.features.x import _own\n")
    found = _cross_module_private_uses(src, "geochem_sr.features.x")
    assert [f.split(":")[0] for f in found] == ["line 1", "line 3"], found
