"""The assignment notebooks: reading a submission, finding its answer cells, and making the
student version from the instructor's.

The layout is nbgrader's, so a course can point nbgrader (or otter-grader) at it::

    <course>/source/<assignment>/<notebook>.ipynb    instructor version, with the solutions
    <course>/release/<assignment>/<notebook>.ipynb   student version, generated from it

An answer cell is a code cell whose nbgrader metadata says ``"solution": true``; its
``grade_id`` is the exercise's function name.  Its solution sits between ``# BEGIN SOLUTION`` and
``# END SOLUTION`` lines, which the student version replaces with nbgrader's own stub,
``# YOUR CODE HERE`` / ``raise NotImplementedError()``.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import nbformat
from nbformat import NotebookNode

from nst_lessons.files import atomic_path
from nst_lessons.grading.cases import ALL_EXERCISES, ASSIGNMENTS, DEFAULT_ASSIGNMENT
from nst_lessons.grading.checks import POINTS

BEGIN_SOLUTION = "# BEGIN SOLUTION"
END_SOLUTION = "# END SOLUTION"
STUB = ("# YOUR CODE HERE", "raise NotImplementedError()")
MAX_NOTEBOOK_BYTES = 20 * 2**20
NBGRADER_SCHEMA = 3


class NotebookError(ValueError):
    """A file that is not a usable notebook; the message says why, in one line."""


def read_notebook(data: bytes, name: str) -> NotebookNode:
    """Parse and validate a notebook (nbformat 4, older versions converted).

    Raises:
        NotebookError: for anything that is not a valid notebook: binary data, text that is not
            JSON, JSON that is not a notebook, a notebook that fails nbformat's schema.
    """
    if len(data) > MAX_NOTEBOOK_BYTES:
        raise NotebookError(f"{name} is not a notebook the grader accepts: larger than {MAX_NOTEBOOK_BYTES // 2**20} MB")
    try:
        content = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise NotebookError(f"{name} is not a notebook: it is not text (a binary file?)") from None
    except json.JSONDecodeError as error:
        raise NotebookError(f"{name} is not a notebook: not valid JSON ({error.msg} at line {error.lineno})") from None
    if not (isinstance(content, dict) and isinstance(content.get("nbformat"), int)):
        raise NotebookError(f"{name} is not a notebook: JSON without an nbformat version")
    try:
        nb = nbformat.reads(json.dumps(content), as_version=4)
        nbformat.validate(nb)
    except Exception as error:  # nbformat raises ValidationError, KeyError, TypeError, ... on malformed input
        message = str(getattr(error, "message", error)).splitlines()[0][:200] if str(error) else type(error).__name__
        raise NotebookError(f"{name} is not a valid notebook: {message}") from None
    return nb


def nbgrader_metadata(cell: NotebookNode) -> dict[str, Any]:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return meta if isinstance(meta, dict) else {}


def is_answer_cell(cell: NotebookNode) -> bool:
    return cell.cell_type == "code" and nbgrader_metadata(cell).get("solution") is True


def answer_cells(nb: NotebookNode) -> list[tuple[str, str]]:
    """(grade_id, source) of every answer cell, in notebook order."""
    return [
        (str(nbgrader_metadata(cell).get("grade_id", f"cell {i + 1}")), cell.source)
        for i, cell in enumerate(nb.cells)
        if is_answer_cell(cell)
    ]


# --------------------------------------------------------------------------- the student version


def strip_solutions(source: str) -> str:
    """``source`` with each ``# BEGIN SOLUTION`` ... ``# END SOLUTION`` region replaced by the stub,
    indented like the BEGIN line (what nbgrader's ``ClearSolutions`` does)."""
    lines: list[str] = []
    inside = False
    for line in source.split("\n"):
        marker = line.strip()
        if marker == BEGIN_SOLUTION:
            if inside:
                raise ValueError(f"nested {BEGIN_SOLUTION}")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            lines += [indent + stub for stub in STUB]
        elif marker == END_SOLUTION:
            if not inside:
                raise ValueError(f"{END_SOLUTION} without {BEGIN_SOLUTION}")
            inside = False
        elif not inside:
            lines.append(line)
    if inside:
        raise ValueError(f"{BEGIN_SOLUTION} without {END_SOLUTION}")
    return "\n".join(lines)


def student_version(nb: NotebookNode) -> NotebookNode:
    """A copy of the instructor notebook with the solutions stubbed out and no outputs."""
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.source = strip_solutions(cell.source)
            cell.outputs = []
            cell.execution_count = None
    return nb


def assignment_of(nb: NotebookNode, filename: str = "") -> str | None:
    """Which assignment a notebook is (a key of :data:`~.cases.ASSIGNMENTS`): the one whose exercises
    name most of its answer and check cells, else the one its file is named after, else None."""
    ids = {str(nbgrader_metadata(cell).get("grade_id", "")) for cell in nb.cells}
    hits = {name: sum(e in ids or f"check_{e}" in ids for e in exercises) for name, exercises in ASSIGNMENTS.items()}
    best = max(hits, key=lambda name: hits[name])
    if hits[best] > 0:
        return best
    stem = Path(filename).stem
    return stem if stem in ASSIGNMENTS else None


def source_problems(nb: NotebookNode, assignment: str = DEFAULT_ASSIGNMENT) -> list[str]:
    """What is wrong with an instructor notebook of ``assignment``, for nbgrader and for this grader
    (empty: fine).

    Checks nbgrader's cell metadata (schema version, unique grade ids, points on graded cells),
    that solution regions sit only in answer cells, that every exercise has an answer cell named
    after its function and a check cell worth its points, and that no outputs are committed.
    """
    problems: list[str] = []
    seen: set[str] = set()
    points: dict[str, float] = {}
    for i, cell in enumerate(nb.cells, start=1):
        meta = nbgrader_metadata(cell)
        has_region = BEGIN_SOLUTION in cell.source
        if cell.cell_type == "code" and cell.get("outputs"):
            problems.append(f"cell {i} has outputs; commit notebooks without them")
        if has_region and not is_answer_cell(cell):
            problems.append(f"cell {i} has a solution region but is not an answer cell (nbgrader solution: true)")
        if not meta:
            continue
        grade_id = meta.get("grade_id")
        if meta.get("schema_version") != NBGRADER_SCHEMA:
            problems.append(f"cell {i}: nbgrader schema_version should be {NBGRADER_SCHEMA}")
        if not isinstance(grade_id, str) or not grade_id or grade_id in seen:
            problems.append(f"cell {i}: grade_id {grade_id!r} is missing or not unique")
        seen.add(str(grade_id))
        if not all(isinstance(meta.get(key), bool) for key in ("solution", "grade", "locked")):
            problems.append(f"cell {i}: nbgrader solution, grade and locked must be true or false")
        if is_answer_cell(cell) and not has_region:
            problems.append(f"cell {i} ({grade_id}) is an answer cell without a {BEGIN_SOLUTION} region")
        if meta.get("grade"):
            if not isinstance(meta.get("points"), (int, float)):
                problems.append(f"cell {i} ({grade_id}) is graded but has no points")
            points[str(grade_id)] = meta.get("points", 0)
    if assignment not in ASSIGNMENTS:
        return [f"unknown assignment {assignment!r}: the folder must be one of {', '.join(ASSIGNMENTS)}"]
    answers = {grade_id for grade_id, _ in answer_cells(nb)}
    for name in ASSIGNMENTS[assignment]:
        if name not in answers:
            problems.append(f"no answer cell with grade_id {name!r}")
        if points.get(f"check_{name}") != POINTS[name]:
            problems.append(f"the check cell 'check_{name}' should be graded, worth {POINTS[name]:g} points")
    foreign = sorted(answers & set(ALL_EXERCISES) - set(ASSIGNMENTS[assignment]))
    problems += [f"the answer cell {name!r} belongs to another assignment than {assignment}" for name in foreign]
    return problems


def notebook_text(nb: NotebookNode) -> str:
    """A notebook as ``nbformat.write`` saves it."""
    return nbformat.writes(nb) + "\n"


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file beside it, so no half-written file ever appears."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def release_texts(course: Path) -> dict[Path, str]:
    """The student version of every ``source/<assignment>/*.ipynb`` under ``course``, keyed by the
    path it belongs at under ``release/``; the folder names the assignment (:data:`~.cases.ASSIGNMENTS`).

    Raises:
        NotebookError: a source notebook that cannot be read, or has :func:`source_problems`.
    """
    source = course / "source"
    notebooks = sorted(source.glob("*/*.ipynb"))
    if not notebooks:
        raise NotebookError(f"no notebooks under {source}/<assignment>/")
    texts = {}
    for path in notebooks:
        nb = read_notebook(path.read_bytes(), str(path))
        problems = source_problems(nb, path.parent.name)
        if problems:
            raise NotebookError(f"{path}: {problems[0]}" + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
        try:
            texts[course / "release" / path.relative_to(source)] = notebook_text(student_version(nb))
        except ValueError as error:
            raise NotebookError(f"{path}: {error}") from None
    return texts


def stale_releases(course: Path) -> list[Path]:
    """Student versions under ``course/release`` that are missing or differ from their source."""
    return [
        path
        for path, text in release_texts(course).items()
        if not path.exists() or path.read_text(encoding="utf-8") != text
    ]


def write_releases(course: Path) -> list[Path]:
    """Write the student version of every source notebook; returns the paths written."""
    texts = release_texts(course)  # all computed first: one bad source writes nothing
    for path, text in texts.items():
        write_atomically(path, text)
    return list(texts)


__all__ = [
    "BEGIN_SOLUTION",
    "END_SOLUTION",
    "STUB",
    "NotebookError",
    "answer_cells",
    "assignment_of",
    "is_answer_cell",
    "nbgrader_metadata",
    "notebook_text",
    "read_notebook",
    "release_texts",
    "source_problems",
    "stale_releases",
    "strip_solutions",
    "student_version",
    "write_atomically",
    "write_releases",
]
