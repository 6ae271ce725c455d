"""Grade submitted notebooks and write Gradescope's ``results.json`` (and a CSV for a folder).

Grading one notebook:

1. read and validate it (a file that is not a notebook scores 0, with the reason);
2. run it top to bottom in a fresh kernel (:mod:`~.kernel`), to report whether it runs;
3. run its answer cells in the sandbox (:mod:`~.sandbox`) and call each exercise's function on
   the hidden cases;
4. judge what came back, here, in the grader's own process, against the references
   (:mod:`~.checks`).

Only step 4 decides the score, on values the grader checks itself, so nothing the submission does
in its own processes (patching ``check``, printing "PASSED", writing a results file, exiting,
looping, deleting files) can raise it.  The notebook is read into memory before anything runs.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbformat import NotebookNode

from nst_lessons.grading.cases import ASSIGNMENTS, DEFAULT_ASSIGNMENT, SHIPPED, HiddenCases
from nst_lessons.grading.checks import PARTS, Verdict, judge
from nst_lessons.grading.kernel import CELL_TIMEOUT, TOTAL_TIMEOUT, NotebookRun, run_notebook
from nst_lessons.grading.notebooks import NotebookError, answer_cells, assignment_of, read_notebook, write_atomically
from nst_lessons.grading.sandbox import STEP_TIMEOUT, run_answers

MAY_USE_PACKAGE = {"make_closure"}
"""Answer cells that may import nst_lessons; the others would find their answers in nst_lessons.scratch."""


@dataclass(frozen=True)
class Limits:
    """Time limits, in seconds: per notebook cell and for the whole notebook run in the kernel, and
    per step (one answer cell, or one exercise's hidden cases) in the sandbox."""

    cell: float = CELL_TIMEOUT
    notebook: float = TOTAL_TIMEOUT
    step: float = STEP_TIMEOUT


@dataclass
class Report:
    """A graded submission.

    Attributes:
        submission: the name it was graded under (a path, for messages).
        verdicts: one per graded part, in notebook order.
        notes: what else the student should know (cells that failed, cells left out, ...).
        seconds: how long grading took.
        assignment: the assignment it was graded as (a key of :data:`~.cases.ASSIGNMENTS`).
    """

    submission: str
    verdicts: list[Verdict]
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    assignment: str = DEFAULT_ASSIGNMENT

    @property
    def score(self) -> float:
        return sum(v.score for v in self.verdicts)

    @property
    def max_score(self) -> float:
        return sum(v.part.points for v in self.verdicts)

    def results(self) -> dict[str, Any]:
        """Gradescope's results.json content."""
        heading = f"{self.submission} ({self.assignment}): {self.score:g} / {self.max_score:g} points"
        return {
            "score": self.score,
            "execution_time": round(self.seconds, 2),
            "output": "\n".join([heading, *self.notes]),
            "tests": [
                {
                    "name": v.name,
                    "score": v.score,
                    "max_score": v.part.points,
                    "status": "passed" if v.problem is None else "failed",
                    "output": "passed" if v.problem is None else v.problem,
                    "visibility": "visible",
                }
                for v in self.verdicts
            ],
        }

    def summary(self) -> str:
        """A readable summary, one line per graded part."""
        width = max(len(v.name) for v in self.verdicts)
        lines = [f"{self.submission} ({self.assignment}): {self.score:g} / {self.max_score:g} points (graded in {self.seconds:.1f} s)"]
        lines += [f"  {note}" for note in self.notes]
        for v in self.verdicts:
            mark, problem = ("✓", "") if v.problem is None else ("✗", f"  {v.problem}")
            lines.append(f"  {mark} {v.name:{width}}  {v.score:g} / {v.part.points:g}{problem}")
        return "\n".join(lines)


def _zero(why: str, assignment: str) -> list[Verdict]:
    return [v for name in ASSIGNMENTS[assignment] for v in judge(name, [], why)]


def _imports_package(source: str) -> bool:
    """Whether code imports nst_lessons (or names it in a call, as importlib.import_module would)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return False  # the sandbox will report it
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(alias.name.split(".")[0] == "nst_lessons" for alias in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "nst_lessons":
            return True
        if isinstance(node, ast.Call) and any(
            isinstance(arg, ast.Constant) and isinstance(arg.value, str) and "nst_lessons" in arg.value
            for arg in node.args
        ):
            return True
    return False


def _run_notes(run: NotebookRun) -> list[str]:
    notes = [f"The notebook ran {run.cells_run} code cells in a fresh kernel in {run.seconds:.1f} s."]
    notes += [f"Cell {number} raised {error}" for number, error in run.errors]
    if run.stopped:
        notes.append(f"The run stopped early: {run.stopped}.")
    return notes


def _select_answers(nb: NotebookNode, exercises: Sequence[str]) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """The answer cells the sandbox runs, and why each exercise left out has no answer."""
    cells, missing = [], {}
    for grade_id, source in answer_cells(nb):
        if grade_id not in MAY_USE_PACKAGE and _imports_package(source):
            missing[grade_id] = (
                f"the answer cell '{grade_id}' imports nst_lessons, whose scratch modules hold the reference "
                "answers; it was not run. Write the answer with numpy."
            )
        else:
            cells.append((grade_id, source))
    defined = {grade_id for grade_id, _ in cells}
    for name in exercises:
        if name not in defined and name not in missing:
            missing[name] = f"no answer cell for {name}: keep the cell with grade_id '{name}' from the assignment"
    return cells, missing


def grade_submission(
    data: bytes,
    submission: str,
    *,
    hidden: HiddenCases = SHIPPED,
    limits: Limits = Limits(),
    assignment: str | None = None,
) -> Report:
    """Grade one notebook given as bytes, on the ``hidden`` cases; ``submission`` names it in the report.

    ``assignment`` (a key of :data:`~.cases.ASSIGNMENTS`) says what it is graded as; ``None`` finds
    it from the notebook's cells (:func:`~.notebooks.assignment_of`), else takes ``nst_gradients``.
    """
    start = time.monotonic()
    try:
        nb = read_notebook(data, submission)
    except NotebookError as error:
        chosen = assignment or DEFAULT_ASSIGNMENT
        return Report(submission, _zero(f"not graded: {error}", chosen), [str(error)], time.monotonic() - start, chosen)
    assignment = assignment or assignment_of(nb, submission) or DEFAULT_ASSIGNMENT
    exercises = ASSIGNMENTS[assignment]
    cells, missing = _select_answers(nb, exercises)
    # The sandbox and the kernel are separate processes with nothing to share: run them side by side.
    with ThreadPoolExecutor(max_workers=1) as pool:
        answers = pool.submit(
            run_answers, cells, [n for n in exercises if n not in missing], hidden=hidden, step_timeout=limits.step
        )
        notes = _run_notes(run_notebook(nb, cell_timeout=limits.cell, total_timeout=limits.notebook))
        sandbox = answers.result()
    notes += [f"Answer cell '{grade_id}': {error}" for grade_id, error in sandbox.cell_errors.items()]
    verdicts = []
    for name in exercises:
        outcome = missing.get(name) or sandbox.observations.get(name, "no results")
        if isinstance(outcome, str) and name in sandbox.cell_errors:
            outcome = f"{outcome} (its answer cell: {sandbox.cell_errors[name]})"
        verdicts += judge(name, hidden.cases(name), outcome)
    return Report(submission, verdicts, notes, time.monotonic() - start, assignment)


def grade_notebook(
    path: Path, *, hidden: HiddenCases = SHIPPED, limits: Limits = Limits(), assignment: str | None = None
) -> Report:
    """Grade the notebook at ``path`` (read into memory first) as ``assignment`` (None: found from it)."""
    return grade_submission(path.read_bytes(), path.name, hidden=hidden, limits=limits, assignment=assignment)


def write_results(report: Report, path: Path) -> None:
    """Write Gradescope's results.json for ``report`` to ``path``, atomically."""
    write_atomically(path, json.dumps(report.results(), indent=2, ensure_ascii=False) + "\n")


def find_submissions(folder: Path) -> list[Path]:
    """Every notebook under ``folder``, recursively, in a stable order, skipping Jupyter's checkpoints."""
    return sorted(p for p in folder.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts and p.is_file())


def grades_csv(reports: Sequence[tuple[str, Report]]) -> str:
    """A table of grades: one row per submission, one column per graded part of the assignments graded."""
    assignments = dict.fromkeys(report.assignment for _, report in reports)
    names = [f"{name}: {part.title}" for a in assignments for name in ASSIGNMENTS[a] for part in PARTS[name]]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["submission", "score", "max_score", *names])
    for submission, report in reports:
        scores = {v.name: v.score for v in report.verdicts}
        writer.writerow([submission, f"{report.score:g}", f"{report.max_score:g}", *(f"{scores[n]:g}" if n in scores else "" for n in names)])
    return out.getvalue()


def grade_folder(
    folder: Path,
    results_dir: Path,
    csv_path: Path,
    *,
    hidden: HiddenCases = SHIPPED,
    limits: Limits = Limits(),
    assignment: str | None = None,
) -> list[tuple[str, Report]]:
    """Grade every notebook under ``folder`` (each as ``assignment``, or as the assignment it is):
    ``results_dir/<relative path>.json`` for each, and the CSV at ``csv_path``.  Every notebook is
    read before the first one runs and every file is written after the last one ran, so no
    submission can touch another's notebook or results."""
    submissions = {str(path.relative_to(folder)): path.read_bytes() for path in find_submissions(folder)}
    reports = [
        (name, grade_submission(data, name, hidden=hidden, limits=limits, assignment=assignment))
        for name, data in submissions.items()
    ]
    for name, report in reports:
        write_results(report, results_dir / Path(name).with_suffix(".json"))
    write_atomically(csv_path, grades_csv(reports))
    return reports


__all__ = [
    "Limits",
    "Report",
    "find_submissions",
    "grade_folder",
    "grade_notebook",
    "grade_submission",
    "grades_csv",
    "write_results",
]
