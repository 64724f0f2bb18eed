"""The notebooks are committed clean and their code is valid Python.

Executing them is ``pytest --nbmake notebooks/quickstart.ipynb`` (``make test``); these
checks are the fast part: outputs stripped (no results, images or execution counts in git)
and every code cell parses.
"""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def _code_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [c for c in nb.cells if c.cell_type == "code"]


def test_the_two_notebooks_exist():
    assert {p.name for p in NOTEBOOKS} >= {"quickstart.ipynb", "real_data.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_valid_and_stripped(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = _code_cells(nb)
    assert code, "no code cells"
    dirty = [i for i, c in enumerate(code) if c.outputs or c.execution_count is not None]
    assert not dirty, f"code cells {dirty} keep outputs or execution counts: strip them"
    assert nb.cells[0].cell_type == "markdown", "a notebook opens with a markdown title"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_code_parses(path):
    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(_code_cells(nb)):
        try:
            ast.parse(cell.source)
        except SyntaxError as err:  # pragma: no cover - the failure message is the point
            pytest.fail(f"{path.name}, code cell {i}: {err}")
