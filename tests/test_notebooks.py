"""The lesson notebooks: committed clean, and each runs top to bottom in fast mode.

Every notebook is executed, as the learner would open it, in a fresh kernel of this interpreter
with ``NST_LESSONS_FAST=1`` (tiny images, few iterations, random weights, no network). The
executed copy lives in memory only: the committed files are never written.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
CELL_TIMEOUT = 300  # seconds; a fast-mode cell takes a few at most
RANDOM_BANNER = "RANDOM WEIGHTS"


def _execute(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",  # the venv's ipykernel; jupyter_client starts it with sys.executable
        resources={"metadata": {"path": str(NOTEBOOKS_DIR)}},
    )
    return client.execute()


@pytest.fixture
def fast_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The environment the kernel inherits: fast mode, caches in a temporary folder, and one
    thread per library (the test machine is shared; several threads stall when cores are busy).
    JUPYTER_PATH puts this environment's kernelspec ahead of any "python3" in the user's own
    Jupyter folders."""
    monkeypatch.setenv("JUPYTER_PATH", str(Path(sys.prefix) / "share" / "jupyter"))
    monkeypatch.setenv("NST_LESSONS_FAST", "1")
    monkeypatch.setenv("NST_LESSONS_HOME", str(tmp_path))
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(var, "1")


RANDOM_BY_DESIGN = {"13_sound"}
"""Notebooks whose networks are random on purpose (no trained weights exist to fall back from)."""


def test_the_notebooks_exist() -> None:
    assert [p.name[:2] for p in NOTEBOOKS] == [f"{k:02d}" for k in range(1, 14)]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_clean(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "outputs are committed"
    markdown = [c.source for c in nb.cells if c.cell_type == "markdown"]
    assert markdown[0].startswith(f"# {path.name[:2]} ·"), "the first cell is the title"
    assert len(markdown) >= 5 and len(re.findall(r"[A-Za-z]{2,}", " ".join(markdown))) >= 600, "too little explanation"
    assert "lesson.setup(" in code[0].source, "the first code cell states the expected run time"


def test_kernel_is_this_interpreter(fast_env: None) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import sys; print(sys.prefix)")]
    out = _execute(nb).cells[0].outputs[0].text.strip()
    assert out == sys.prefix


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_fast_mode(path: Path, fast_env: None) -> None:
    committed = path.read_bytes()
    nb = _execute(nbformat.read(path, as_version=4))
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    figures = [o for o in outputs if "image/png" in o.get("data", {})]
    banners = [o for o in outputs if RANDOM_BANNER in o.get("data", {}).get("text/html", "")]
    assert len(figures) >= 3, f"only {len(figures)} figures"
    assert banners or path.stem in RANDOM_BY_DESIGN, "images from random weights without the banner"
    assert path.read_bytes() == committed, "the committed notebook was modified"
