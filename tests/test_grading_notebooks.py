"""The exercise notebooks: valid, output-free, carrying nbgrader's metadata, and the committed
student versions in sync with the instructor versions."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import nbformat
import pytest

from nst_lessons.grading.cases import EXERCISES
from nst_lessons.grading.checks import POINTS
from nst_lessons.grading.cli import add_release_parser
from nst_lessons.grading.notebooks import (
    BEGIN_SOLUTION,
    STUB,
    NotebookError,
    answer_cells,
    nbgrader_metadata,
    notebook_text,
    read_notebook,
    source_problems,
    stale_releases,
    strip_solutions,
)

COURSE = Path(__file__).parents[1] / "notebooks/exercises"
SOURCE = COURSE / "source/nst_gradients/nst_gradients.ipynb"
RELEASE = COURSE / "release/nst_gradients/nst_gradients.ipynb"


def load(path: Path) -> nbformat.NotebookNode:
    return read_notebook(path.read_bytes(), path.name)


def release(argv: list[str]) -> int:
    subparsers = argparse.ArgumentParser().add_subparsers()
    add_release_parser(subparsers)
    args = subparsers.choices["release"].parse_args(argv)
    return args.func(args)


def test_the_committed_student_notebooks_are_in_sync() -> None:
    assert stale_releases(COURSE) == [], "run: nst-lessons release notebooks/exercises"


@pytest.mark.parametrize("path", [SOURCE, RELEASE], ids=["source", "release"])
def test_notebooks_are_valid_and_carry_no_outputs(path: Path) -> None:
    nb = load(path)
    nbformat.validate(nb)
    assert nb.nbformat == 4 and nb.metadata.kernelspec.name == "python3"
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code)
    assert path.read_text(encoding="utf-8") == notebook_text(nb)  # saved as nbformat saves it


def test_the_instructor_notebook_is_what_nbgrader_expects() -> None:
    nb = load(SOURCE)
    assert source_problems(nb) == []
    assert [grade_id for grade_id, _ in answer_cells(nb)] == list(EXERCISES)
    graded = {m["grade_id"]: m["points"] for m in map(nbgrader_metadata, nb.cells) if m.get("grade")}
    assert graded == {f"check_{name}": POINTS[name] for name in EXERCISES}
    checks = [cell.source for cell in nb.cells if nbgrader_metadata(cell).get("grade")]
    assert checks == [f'check("{name}", {name})' for name in EXERCISES]


def test_the_student_version_stubs_every_solution_and_changes_nothing_else() -> None:
    source, student = load(SOURCE), load(RELEASE)
    assert len(source.cells) == len(student.cells)
    for before, after in zip(source.cells, student.cells):
        assert before.metadata == after.metadata and before.get("id") == after.get("id")
        if nbgrader_metadata(before).get("solution"):
            assert BEGIN_SOLUTION in before.source and "SOLUTION" not in after.source
            assert "    " + "\n    ".join(STUB) in after.source
            assert after.source.split("# YOUR CODE HERE")[0] == before.source.split(BEGIN_SOLUTION)[0]
        else:
            assert before.source == after.source


def test_strip_solutions_keeps_indentation_and_rejects_broken_regions() -> None:
    assert strip_solutions("def f():\n    x = 1\n    # BEGIN SOLUTION\n    return x\n    # END SOLUTION\n") == (
        "def f():\n    x = 1\n    # YOUR CODE HERE\n    raise NotImplementedError()\n"
    )
    for broken in ("# BEGIN SOLUTION\nx", "# END SOLUTION", "# BEGIN SOLUTION\n# BEGIN SOLUTION\n# END SOLUTION"):
        with pytest.raises(ValueError):
            strip_solutions(broken)


def test_authoring_mistakes_are_reported() -> None:
    nb = load(SOURCE)
    answer = next(cell for cell in nb.cells if nbgrader_metadata(cell).get("grade_id") == "tv_loss")
    answer.metadata.nbgrader["grade_id"] = "gram_matrix"
    check_cell = next(cell for cell in nb.cells if nbgrader_metadata(cell).get("grade_id") == "check_relu_backward")
    check_cell.metadata.nbgrader["points"] = 5
    nb.cells[0].source += "\n# BEGIN SOLUTION"
    problems = source_problems(nb)
    assert any("'gram_matrix' is missing or not unique" in p for p in problems)
    assert "no answer cell with grade_id 'tv_loss'" in problems
    assert "the check cell 'check_relu_backward' should be graded, worth 1 points" in problems
    assert "cell 1 has a solution region but is not an answer cell (nbgrader solution: true)" in problems


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", "not a notebook: it is not text"),
        (b'{"cells": [', "not a notebook: not valid JSON"),
        (b"[1, 2]", "JSON without an nbformat version"),
        (b'{"nbformat": 4, "nbformat_minor": 5, "cells": [{"cell_type": "code"}], "metadata": {}}', "not a valid notebook"),
        (b'{"nbformat": 4, "nbformat_minor": 5, "cells": 3, "metadata": {}}', "not a valid notebook"),
    ],
    ids=["binary", "truncated", "not a notebook", "invalid cell", "cells not a list"],
)
def test_unreadable_notebooks_raise_one_clear_line(data: bytes, message: str) -> None:
    with pytest.raises(NotebookError, match=message) as error:
        read_notebook(data, "hw.ipynb")
    assert "\n" not in str(error.value) and str(error.value).startswith("hw.ipynb")


def test_release_writes_checks_and_refuses_a_broken_source(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    course = tmp_path / "course"
    shutil.copytree(COURSE / "source", course / "source")
    assert release([str(course), "--check"]) == 1
    assert "out of date" in capsys.readouterr().out
    assert release([str(course)]) == 0
    assert (course / "release/nst_gradients/nst_gradients.ipynb").read_bytes() == RELEASE.read_bytes()
    assert release([str(course), "--check"]) == 0

    broken = course / "source/nst_gradients/nst_gradients.ipynb"
    broken.write_text(broken.read_text().replace("# END SOLUTION", "", 1))
    shutil.rmtree(course / "release")
    capsys.readouterr()
    assert release([str(course)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nst-lessons release: error:") and err.count("\n") == 1
    assert not (course / "release").exists()
