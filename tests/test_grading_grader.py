"""The grader end to end: one folder run grades the instructor notebook (full marks), the student
notebook (0), a notebook of typical mistakes (partial marks), a tampering notebook (nothing gained)
and two files that are not notebooks (0, with the reason), and writes results.json files and a CSV."""

from __future__ import annotations

import argparse
import copy
import csv
import json
import os
from pathlib import Path

import nbformat
import pytest

from nst_lessons.grading.cases import EXERCISES
from nst_lessons.grading.checks import NOT_ANSWERED
from nst_lessons.grading.cli import add_grade_parser
from nst_lessons.grading.confine import student_user
from nst_lessons.grading.grader import Report, grade_folder
from nst_lessons.grading.kernel import run_notebook
from nst_lessons.grading.notebooks import nbgrader_metadata, notebook_text

COURSE = Path(__file__).parents[1] / "notebooks/exercises"
SOURCE = nbformat.read(COURSE / "source/nst_gradients/nst_gradients.ipynb", as_version=4)
RELEASE = nbformat.read(COURSE / "release/nst_gradients/nst_gradients.ipynb", as_version=4)

# Mistakes in four exercises; make_closure calls the mistaken content_loss, but is judged with the
# reference one, so only its own mistake counts.
MISTAKES = {
    "content_loss": ("0.5 * float(np.sum(diff**2))", "float(np.sum(diff**2))"),
    "relu_backward": ("return np.where(x > 0, dy, 0.0)", "dy[x <= 0] = 0\n    return dy"),
    "conv2d_backward": ("w[:, :, i, j], dy)", "w[:, :, 2 - i, 2 - j], dy)"),
    "make_closure": ("grads[name] += beta * w * dF", "grads[name] = beta * w * dF"),
}

TAMPER_SETUP = '''
import nst_lessons.grading.checks as graders_checks

def check(name, fn):
    print(f"✓ {name}: all checks passed")

graders_checks.judge = lambda *args, **kwargs: []
print("PASSED: 22 / 22 points")
'''

TAMPER_END = '''
import glob, json, os
fake = {"score": 22, "execution_time": 0, "output": "PASSED", "tests": []}
grader_cwd = os.path.realpath(f"/proc/{os.getppid()}/cwd")
for path in ("results.json", "grades.csv", "results/a_tamper.json", "results/solution.json"):
    os.makedirs(os.path.dirname(os.path.join(grader_cwd, path)), exist_ok=True)
    with open(os.path.join(grader_cwd, path), "w") as f:
        json.dump(fake, f)
for path in glob.glob(os.path.join(grader_cwd, "submissions", "*")):
    os.remove(path)
os._exit(0)
'''


def with_answer(nb: nbformat.NotebookNode, grade_id: str, source: str) -> None:
    next(cell for cell in nb.cells if nbgrader_metadata(cell).get("grade_id") == grade_id).source = source


def mistakes_notebook() -> nbformat.NotebookNode:
    nb = copy.deepcopy(SOURCE)
    for cell in nb.cells:
        old, new = MISTAKES.get(nbgrader_metadata(cell).get("grade_id"), ("", ""))
        assert old in cell.source
        cell.source = cell.source.replace(old, new)
    return nb


def tamper_notebook() -> nbformat.NotebookNode:
    nb = copy.deepcopy(RELEASE)
    with_answer(nb, "gram_matrix", "from nst_lessons.scratch.losses import gram_matrix")
    nb.cells.insert(2, nbformat.v4.new_code_cell(TAMPER_SETUP))
    nb.cells.append(nbformat.v4.new_code_cell(TAMPER_END))
    return nb


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Report]]:
    root = tmp_path_factory.mktemp("grading")
    folder = root / "submissions"
    folder.mkdir()
    notebooks = {"solution": SOURCE, "release": RELEASE, "mistakes": mistakes_notebook(), "a_tamper": tamper_notebook()}
    for name, nb in notebooks.items():
        (folder / f"{name}.ipynb").write_text(notebook_text(nb), encoding="utf-8")
    (folder / "corrupt.ipynb").write_text(notebook_text(SOURCE)[:5000], encoding="utf-8")
    (folder / "picture.ipynb").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    cwd = os.getcwd()
    os.chdir(root)  # the tampering notebook finds the grader's directory through /proc
    try:
        reports = grade_folder(folder, root / "results", root / "grades.csv")
    finally:
        os.chdir(cwd)
    return root, {Path(name).stem: report for name, report in reports}


def results(root: Path, name: str) -> dict:
    return json.loads((root / "results" / f"{name}.json").read_text())


def scores(report: Report) -> dict[str, float]:
    return {v.name: v.score for v in report.verdicts}


def test_the_instructor_notebook_gets_full_marks_quickly(graded: tuple[Path, dict[str, Report]]) -> None:
    root, reports = graded
    data = results(root, "solution")
    assert data["score"] == 22 and all(t["status"] == "passed" for t in data["tests"])
    assert reports["solution"].seconds < 60
    assert "ran 20 code cells" in data["output"] and "raised" not in data["output"]


def test_results_follow_gradescopes_format(graded: tuple[Path, dict[str, Report]]) -> None:
    data = results(graded[0], "mistakes")
    assert set(data) == {"score", "execution_time", "output", "tests"}
    for test in data["tests"]:
        assert set(test) == {"name", "score", "max_score", "status", "output", "visibility"}
        assert test["name"].split(":")[0] in EXERCISES and test["visibility"] == "visible"
    assert list(dict.fromkeys(t["name"].split(":")[0] for t in data["tests"])) == list(EXERCISES)
    assert sum(t["max_score"] for t in data["tests"]) == 22


def test_the_student_notebook_gets_zero_without_crashing(graded: tuple[Path, dict[str, Report]]) -> None:
    data = results(graded[0], "release")
    assert data["score"] == 0
    assert all(t["output"] == NOT_ANSWERED for t in data["tests"])


def test_mistakes_get_partial_marks_with_their_diagnosis(graded: tuple[Path, dict[str, Report]]) -> None:
    report = graded[1]["mistakes"]
    got = scores(report)
    problems = {v.name: v.problem for v in report.verdicts}
    assert got["content_loss: the loss"] == 0 and "1/2 in front" in problems["content_loss: the loss"]
    assert got["content_loss: the gradient dL/dF"] == 1
    assert "changed its input dy in place" in problems["relu_backward: dL/dx"]
    assert "uses the filters as they are" in problems["conv2d_backward: dL/dx"]
    assert got["make_closure: the loss"] == 1
    assert "loses the content gradient" in problems["make_closure: the gradient"]
    untouched = [name for name in got if name.split(":")[0] not in MISTAKES]
    assert all(got[name] > 0 for name in untouched)
    assert 14 <= report.score <= 15


def test_tampering_gains_nothing_and_harms_no_one(graded: tuple[Path, dict[str, Report]]) -> None:
    root, reports = graded
    data = results(root, "a_tamper")
    assert data["score"] == 0 and data["tests"]  # its own fake file was replaced
    problems = {t["name"]: t["output"] for t in data["tests"]}
    assert "imports nst_lessons" in problems["gram_matrix: G = F F^T"]
    if student_user()[0]:  # as nobody it may not look into the grader's (root's) processes
        assert "PermissionError: [Errno 13] Permission denied: '/proc/" in data["output"]
    else:
        assert "the kernel died" in data["output"]
    # It deleted the other submissions and forged their results: they were read before and written after.
    assert results(root, "solution")["score"] == 22
    rows = {row["submission"]: row for row in csv.DictReader((root / "grades.csv").open())}
    assert rows["a_tamper.ipynb"]["score"] == "0" and rows["solution.ipynb"]["score"] == "22"


def test_files_that_are_not_notebooks_get_zero_and_the_reason(graded: tuple[Path, dict[str, Report]]) -> None:
    root, _ = graded
    corrupt, picture = results(root, "corrupt"), results(root, "picture")
    assert corrupt["score"] == picture["score"] == 0
    assert "corrupt.ipynb is not a notebook: not valid JSON" in corrupt["output"]
    assert "picture.ipynb is not a notebook: it is not text" in picture["output"]
    assert all(t["output"].startswith("not graded: picture.ipynb is not a notebook") for t in picture["tests"])


def test_the_csv_has_a_row_per_submission_and_a_column_per_test(graded: tuple[Path, dict[str, Report]]) -> None:
    root, reports = graded
    rows = list(csv.DictReader((root / "grades.csv").open()))
    assert [row["submission"] for row in rows] == sorted(f"{name}.ipynb" for name in reports)
    mistakes = next(row for row in rows if row["submission"] == "mistakes.ipynb")
    assert float(mistakes["score"]) == reports["mistakes"].score and mistakes["max_score"] == "22"
    assert mistakes["conv2d_backward: dL/dx"] == "0" and mistakes["gram_matrix: G = F F^T"] == "2"


# --------------------------------------------------------------------------- the command


def grade(argv: list[str]) -> int:
    subparsers = argparse.ArgumentParser().add_subparsers()
    add_grade_parser(subparsers)
    args = subparsers.choices["grade"].parse_args(argv)
    return args.func(args)


def test_grading_a_file_that_is_not_a_notebook(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    submission = tmp_path / "homework.txt"
    submission.write_text("def gram_matrix(F): ...")
    assert grade([str(submission), "--results", str(tmp_path / "out" / "results.json")]) == 0
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    assert data["score"] == 0 and "homework.txt is not a notebook" in data["output"]
    assert "0 / 22 points" in capsys.readouterr().out


def test_bad_arguments_give_one_line_and_write_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "results.json"
    assert grade([str(tmp_path / "missing.ipynb"), "--results", str(results)]) == 2
    assert grade([str(tmp_path), "--results", str(results)]) == 2  # a folder without notebooks
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"nst-lessons grade: error: no such file or folder: {tmp_path / 'missing.ipynb'}",
        f"nst-lessons grade: error: no notebooks (*.ipynb) under {tmp_path}",
    ]
    assert list(tmp_path.iterdir()) == []


def test_the_kernel_run_stops_at_a_cell_over_its_time_limit() -> None:
    cells = ["x = 1", "import time\nwhile True:\n    try:\n        time.sleep(1)\n    except KeyboardInterrupt:\n        pass", "y = 2"]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    run = run_notebook(nb, cell_timeout=2, total_timeout=30)
    assert run.cells_run == 1 and run.stopped == "cell 2 ran longer than 2 s; the run stopped there"
    assert run.seconds < 20

