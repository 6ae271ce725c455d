"""The ``grade`` and ``release`` subcommands, for ``nst-lessons`` (or ``python -m nst_lessons.grading``).

    nst-lessons grade SUBMISSION.ipynb [--results results.json]     grade one notebook
    nst-lessons grade FOLDER [--results results/] [--csv grades.csv]  grade every notebook in it
        [--hidden-cases FILE]   the instructor's hidden cases (default: $NST_LESSONS_HIDDEN_CASES,
                                else the shipped ones; see cases.load_hidden_cases)
        [--memory GIB]          address space of each process running the submission's code
    nst-lessons release [COURSE] [--check]                          write the student notebooks

Each ``add_*_parser`` registers its subcommand on an argparse subparsers object and sets
``func(args) -> exit status``: 0 done (a file that is not a notebook is graded 0, with the reason),
1 student notebooks out of date (``release --check``), 2 bad input, with one line on stderr and no
file written.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from nst_lessons.arguments import non_negative
from nst_lessons.files import check_writable, same_file
from nst_lessons.grading.cases import ASSIGNMENTS, HIDDEN_CASES_ENV, HIDDEN_SEED, hidden_cases, hidden_cases_from_json
from nst_lessons.grading.confine import MEMORY_LIMIT, student_user
from nst_lessons.grading.grader import Limits, find_submissions, grade_folder, grade_notebook, write_results
from nst_lessons.grading.kernel import CELL_TIMEOUT, TOTAL_TIMEOUT
from nst_lessons.grading.notebooks import NotebookError, stale_releases, write_releases
from nst_lessons.grading.sandbox import STEP_TIMEOUT

DEFAULT_COURSE = Path("notebooks/exercises")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def _gibibytes(text: str) -> int:
    value = non_negative(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 GiB (the kernel imports torch, which maps about 0.6), got {text}")
    return int(value * 2**30)


def _inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or lies under it, once both are resolved."""
    return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(folder)) or same_file(path, folder)


def _output_clash(submission: Path, outputs: dict[str, Path]) -> str | None:
    """Why one of ``outputs`` ({option: path}) would overwrite the submission or write among the
    submissions of a folder, or None."""
    for option, path in outputs.items():
        if submission.is_dir() and _inside(path, submission):
            return f"{option} {path} is inside the folder of submissions {submission}; name a place outside it"
        if not submission.is_dir() and same_file(path, submission):
            return f"{option} {path} is the submission {submission} itself; name another file"
    return None


def _fail(command: str, message: str) -> int:
    print(f"nst-lessons {command}: error: {message}", file=sys.stderr)
    return 2


def add_grade_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``grade``."""
    p = subparsers.add_parser(
        "grade",
        help="grade submitted exercise notebooks",
        description=(
            "Grade a submitted exercise notebook: run it in a fresh kernel, test each exercise on hidden "
            "cases in a separate sandboxed process, and write Gradescope's results.json. Given a folder, "
            "grade every notebook in it and also write a CSV of grades. A file that is not a notebook "
            "gets a score of 0 and the reason."
        ),
    )
    p.add_argument("submission", type=Path, help="a submitted notebook, or a folder of them (searched recursively)")
    p.add_argument(
        "--assignment",
        choices=list(ASSIGNMENTS),
        help="grade as this assignment (default: the one the notebook's answer cells belong to; "
        "a file that is not a notebook counts as nst_gradients)",
    )
    p.add_argument(
        "--results",
        type=Path,
        metavar="PATH",
        help="for a notebook, the results file (default: results.json); for a folder, the directory that "
        "receives one <notebook>.json per submission (default: results)",
    )
    p.add_argument(
        "--csv", type=Path, default=Path("grades.csv"), metavar="PATH", help="for a folder, the table of grades (default: %(default)s)"
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--hidden-cases",
        type=Path,
        metavar="FILE",
        help=f"the instructor's hidden test cases, a JSON file {{\"seeds\": [...], \"extra\": {{exercise: [shape, ...]}}}} "
        f"kept out of the students' copy (default: the file ${HIDDEN_CASES_ENV} names, else the cases shipped "
        f"with the package, seed {HIDDEN_SEED}, which students can run too)",
    )
    which.add_argument("--seed", type=int, metavar="N", help="the shipped hidden shapes drawn with seed N instead")
    p.add_argument(
        "--cell-timeout", type=_seconds, default=CELL_TIMEOUT, metavar="S", help="seconds per notebook cell (default: %(default)g)"
    )
    p.add_argument(
        "--timeout", type=_seconds, default=TOTAL_TIMEOUT, metavar="S", help="seconds for the whole notebook run (default: %(default)g)"
    )
    p.add_argument(
        "--answer-timeout",
        type=_seconds,
        default=STEP_TIMEOUT,
        metavar="S",
        help="seconds for one answer cell, or one exercise's hidden tests, in the sandbox (default: %(default)g)",
    )
    p.add_argument(
        "--memory",
        type=_gibibytes,
        default=MEMORY_LIMIT,
        metavar="GIB",
        help=f"address space of each process that runs the submission's code, in GiB (default: {MEMORY_LIMIT / 2**30:g})",
    )
    p.set_defaults(func=run_grade)


def run_grade(args: argparse.Namespace) -> int:
    path: Path = args.submission
    limits = Limits(cell=args.cell_timeout, notebook=args.timeout, step=args.answer_timeout, memory=args.memory)
    try:
        if args.seed is not None:
            hidden = hidden_cases_from_json({"seeds": [args.seed]}, "--seed")
        else:
            hidden = hidden_cases(args.hidden_cases)
    except ValueError as error:
        return _fail("grade", str(error))
    if not path.exists():
        return _fail("grade", f"no such file or folder: {path}")
    if path.is_dir() and not find_submissions(path):
        return _fail("grade", f"no notebooks (*.ipynb) under {path}")
    results = args.results or Path("results" if path.is_dir() else "results.json")
    outputs = {"--results": results, "--csv": args.csv} if path.is_dir() else {"--results": results}
    clash = _output_clash(path, outputs)
    if clash:
        return _fail("grade", clash)
    try:  # an unwritable place for the results is found before the grading, not after it
        for output in outputs.values():
            folder = output if output.is_dir() else output.parent
            if folder.is_dir():
                check_writable(folder)
    except OSError as error:
        return _fail("grade", str(error))
    try:
        user, why = student_user()
        if user is None and os.geteuid() == 0:
            print(f"nst-lessons grade: warning: {why}", file=sys.stderr)
        if path.is_dir():
            graded = grade_folder(path, results, args.csv, hidden=hidden, limits=limits, assignment=args.assignment)
            reports = [report for _, report in graded]
            wrote = f"wrote {len(reports)} results under {results}/ and the grades to {args.csv}"
        else:
            reports = [grade_notebook(path, hidden=hidden, limits=limits, assignment=args.assignment)]
            write_results(reports[0], results)
            wrote = f"wrote {results}"
    except OSError as error:  # an unreadable submission, an unwritable results path
        return _fail("grade", f"{error.strerror or error}: {error.filename or path}")
    except KeyboardInterrupt:  # results are written only once everything is graded
        print("nst-lessons grade: interrupted before all results were written", file=sys.stderr)
        return 130
    for report in reports:
        print(report.summary())
    print(wrote)
    return 0


def add_release_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``release``."""
    p = subparsers.add_parser(
        "release",
        help="write the student versions of the exercise notebooks",
        description=(
            "Write COURSE/release/<assignment>/*.ipynb from COURSE/source/<assignment>/*.ipynb (nbgrader's "
            "layout): each '# BEGIN SOLUTION' ... '# END SOLUTION' region becomes a stub raising "
            "NotImplementedError, and outputs are cleared. The instructor notebooks are checked first "
            "(nbgrader metadata, one answer cell and one check cell per exercise); nothing is written if "
            "one is wrong."
        ),
    )
    p.add_argument(
        "course", nargs="?", type=Path, default=DEFAULT_COURSE, metavar="COURSE", help="the folder holding source/ and release/ (default: %(default)s)"
    )
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 if a student notebook is missing or out of date")
    p.set_defaults(func=run_release)


def run_release(args: argparse.Namespace) -> int:
    try:
        if args.check:
            stale = stale_releases(args.course)
            for path in stale:
                print(f"out of date: {path}")
            return 1 if stale else 0
        for path in write_releases(args.course):
            print(f"wrote {path}")
    except NotebookError as error:
        return _fail("release", str(error))
    except OSError as error:
        return _fail("release", f"{error.strerror or error}: {error.filename or args.course}")
    return 0


__all__ = ["add_grade_parser", "add_release_parser", "run_grade", "run_release"]
