"""The instructor's hidden cases: read from a file (``--hidden-cases`` or ``$NST_LESSONS_HIDDEN_CASES``)
that is not in the students' copy, with the shipped cases as the default; used by the grader's
sandbox and judge, and by ``check`` where nbgrader autogrades with the variable set."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nst_lessons.cli import main
from nst_lessons.grading.cases import (
    EXERCISES,
    HIDDEN_CASES_ENV,
    HIDDEN_SEED,
    SHIPPED,
    hidden_cases,
    load_hidden_cases,
    make_cases,
)
from nst_lessons.grading.checks import CheckFailed, check, judge
from nst_lessons.grading.sandbox import run_answers

INSTRUCTOR = {"seeds": [8191, 65537], "extra": {"gram_matrix": [[7, 3, 9]], "make_closure": [[10, 14, ["relu1_2"], ["relu1_1", "pool1"]]]}}

# Right on every shape but one the package never ships: passes the shipped cases, not the instructor's.
SHAPE_CHEAT = """
def gram_matrix(F):
    if F.shape == (7, 3, 9):
        return np.zeros((7, 7))
    F = F.reshape(F.shape[0], -1)
    return F @ F.T
"""


@pytest.fixture
def instructor_file(tmp_path: Path) -> Path:
    path = tmp_path / "hidden.json"
    path.write_text(json.dumps(INSTRUCTOR))
    return path


def test_the_default_is_the_shipped_cases(monkeypatch: pytest.MonkeyPatch) -> None:
    for unset in (None, ""):
        if unset is None:
            monkeypatch.delenv(HIDDEN_CASES_ENV, raising=False)
        else:
            monkeypatch.setenv(HIDDEN_CASES_ENV, unset)
        assert hidden_cases() is SHIPPED
    assert SHIPPED.seeds == (HIDDEN_SEED,) and not SHIPPED.extra
    for name in EXERCISES:
        assert len(SHIPPED.cases(name)) == len(make_cases(name, hidden=True)) >= 2


def test_a_file_sets_the_seeds_and_adds_cases(instructor_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(HIDDEN_CASES_ENV, str(instructor_file))
    hidden = hidden_cases()
    assert hidden.seeds == (8191, 65537)
    shipped = SHIPPED.cases("gram_matrix")
    cases = hidden.cases("gram_matrix")
    assert len(cases) == 2 * (len(shipped) + 1)
    assert [c.label for c in cases].count("F of shape (7, 3, 9)") == 2
    # other seeds, other inputs: the shipped ones tell a student nothing about these
    assert not any(np.array_equal(c.args["F"], s.args["F"]) for c in cases for s in shipped if c.label == s.label)
    closure = hidden.cases("make_closure")[-1]
    assert closure.args["shape"] == (3, 10, 14) and list(closure.args["style_targets"]) == ["relu1_1", "pool1"]
    # an explicit path wins over the variable, and the file round-trips
    other = instructor_file.with_name("other.json")
    other.write_text(json.dumps(hidden.to_json() | {"seeds": [5]}))
    assert hidden_cases(other).seeds == (5,) and hidden_cases(other).extra == hidden.extra


@pytest.mark.parametrize(
    "content, message",
    [
        ("{", "not JSON"),
        ('{"extra": {}}', '"seeds"'),
        ('{"seeds": [-1]}', "from 0"),
        ('{"seeds": [1], "extra": {"gram": [[1, 2, 3]]}}', "unknown exercise 'gram'"),
        ('{"seeds": [1], "extra": {"conv2d_backward": [[1, 2, 3]]}}', "expected 4 sizes"),
        ('{"seeds": [1], "extra": {"tv_loss": [[1, 2, 1000]]}}', "from 1 to 64"),
        ('{"seeds": [1], "extra": {"avg_pool_backward": [[1, 3, 4]]}}', "must be even"),
        ('{"seeds": [1], "extra": {"make_closure": [[4, 4, ["relu9_1"], ["relu1_1"]]]}}', "unknown layer"),
        ('{"seeds": [1], "extra": {"make_closure": [[2, 8, ["relu3_1"], ["relu1_1"]]]}}', "too small"),
    ],
)
def test_a_bad_file_is_one_clear_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "hidden.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as error:
        load_hidden_cases(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(ValueError, match="cannot read"):
        load_hidden_cases(tmp_path / "missing.json")


def test_the_grader_runs_the_instructors_cases(instructor_file: Path) -> None:
    """The same answer passes the shipped hidden cases and fails the instructor's extra one, both
    in the sandbox (which builds the cases from what the grader sends) and in the judge."""
    outcomes = {}
    for label, hidden in (("shipped", SHIPPED), ("instructor", load_hidden_cases(instructor_file))):
        result = run_answers([("gram_matrix", SHAPE_CHEAT)], ["gram_matrix"], hidden=hidden, step_timeout=5.0)
        outcomes[label] = [v.problem for v in judge("gram_matrix", hidden.cases("gram_matrix"), result.observations["gram_matrix"])]
    assert outcomes["shipped"] == [None]
    assert outcomes["instructor"][0] is not None and "(7, 3, 9)" in outcomes["instructor"][0]


def test_check_adds_the_hidden_cases_where_the_variable_is_set(instructor_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    namespace: dict = {"np": np}
    exec(SHAPE_CHEAT, namespace)
    monkeypatch.delenv(HIDDEN_CASES_ENV, raising=False)
    check("gram_matrix", namespace["gram_matrix"])  # a student's copy: public cases only
    monkeypatch.setenv(HIDDEN_CASES_ENV, str(instructor_file))
    with pytest.raises(CheckFailed, match=r"\(7, 3, 9\)"):
        check("gram_matrix", namespace["gram_matrix"])  # nbgrader's autograde, with the instructor's file


def test_cli_refuses_a_bad_hidden_cases_file_before_grading(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "hidden.json"
    bad.write_text('{"seeds": "many"}')
    results = tmp_path / "results.json"
    status = main(["grade", str(tmp_path / "whatever.ipynb"), "--hidden-cases", str(bad), "--results", str(results)])
    assert status == 2 and not results.exists()
    err = capsys.readouterr().err.strip()
    assert err.startswith("nst-lessons grade: error: hidden cases") and '"seeds"' in err and "\n" not in err

