"""The sandbox: answer cells run in a separate process, and whatever they do there (loop, exit,
forge result files, patch numpy or the grader's modules, delete files, spawn processes) costs at
most their own marks and never raises them.  Processes a notebook's kernel starts die with it."""

from __future__ import annotations

import time
from pathlib import Path

import nbformat
import numpy as np

from nst_lessons.grading.cases import HiddenCases
from nst_lessons.grading.checks import judge
from nst_lessons.grading.grader import _imports_package
from nst_lessons.grading.kernel import run_notebook
from nst_lessons.grading.notebooks import answer_cells, read_notebook
from nst_lessons.grading.sandbox import run_answers

SOURCE = Path(__file__).parents[1] / "notebooks/exercises/source/nst_gradients/nst_gradients.ipynb"
SOLUTIONS = dict(answer_cells(read_notebook(SOURCE.read_bytes(), SOURCE.name)))
HIDDEN = HiddenCases(seeds=(7,))


def grade(cells: list[tuple[str, str]], exercises: list[str], step_timeout: float = 2.0) -> tuple[dict[str, list], dict[str, str]]:
    """{exercise: [problem or None per part]}, and the answer cells' errors."""
    result = run_answers(cells, exercises, hidden=HIDDEN, step_timeout=step_timeout)
    problems = {
        name: [v.problem for v in judge(name, HIDDEN.cases(name), result.observations[name])]
        for name in exercises
    }
    return problems, result.cell_errors


def test_correct_answers_pass() -> None:
    names = ["gram_matrix", "relu_backward", "conv2d_backward"]
    problems, errors = grade([(name, SOLUTIONS[name]) for name in names], names)
    assert problems == {name: [None] for name in names} and errors == {}


def test_patching_numpy_in_the_sandbox_changes_nothing_here() -> None:
    cheat = "np.allclose = np.array_equal = lambda *args, **kwargs: True\nnp.TAMPERED = True\n"
    cheat += "def relu_backward(dy, x):\n    return np.zeros_like(dy)\n"
    problems, _ = grade([("relu_backward", cheat)], ["relu_backward"])
    assert "is wrong" in problems["relu_backward"][0]
    assert not hasattr(np, "TAMPERED") and np.allclose(1.0, 1.0 + 1e-3) is False


def test_patching_the_graders_modules_in_the_sandbox_gains_nothing() -> None:
    # Zero inputs would make a function returning zeros right; the grader rebuilds the cases itself.
    cheat = (
        "import nst_lessons.grading.cases as cases\n"
        "real = cases.HiddenCases.cases\n"
        "def zeros(self, name):\n"
        "    return [cases.Case({k: np.zeros_like(v) for k, v in c.args.items()}, c.label) for c in real(self, name)]\n"
        "cases.HiddenCases.cases = zeros\n"
        "def avg_pool_backward(dy, x):\n    return np.zeros_like(x)\n"
    )
    problems, _ = grade([("avg_pool_backward", cheat)], ["avg_pool_backward"])
    assert "is wrong" in problems["avg_pool_backward"][0]


def test_forged_result_files_are_judged_like_answers() -> None:
    cheat = (
        "from pathlib import Path\n"
        "from nst_lessons.grading.observe import Observation, save_observations\n"
        "save_observations(Path('relu_backward.npz'), [Observation(value=np.zeros((4, 5, 6)))] * 2)\n"
        "Path('progress').write_text('exercise relu_backward\\n')\n"
        "import os\nos._exit(0)\n"
    )
    problems, errors = grade([("relu_backward", cheat)], ["relu_backward"])
    assert "dx is wrong" in problems["relu_backward"][0]


def test_an_endless_loop_at_the_top_of_a_cell_costs_only_that_cell() -> None:
    cells = [("gram_matrix", SOLUTIONS["gram_matrix"] + "\nwhile True:\n    pass\n"), ("content_loss", SOLUTIONS["content_loss"])]
    start = time.monotonic()
    problems, errors = grade(cells, ["gram_matrix", "content_loss"])
    assert time.monotonic() - start < 15
    assert "did not finish within 2 s" in errors["gram_matrix"] and "left out" in errors["gram_matrix"]
    assert "does not define the function gram_matrix" in problems["gram_matrix"][0]
    assert problems["content_loss"] == [None, None]


def test_exiting_at_the_top_of_a_cell_costs_only_that_cell() -> None:
    cells = [("tv_loss", "import os\nos._exit(3)\n" + SOLUTIONS["tv_loss"]), ("relu_backward", SOLUTIONS["relu_backward"])]
    problems, errors = grade(cells, ["tv_loss", "relu_backward"])
    assert "ended the process (exit status 3" in errors["tv_loss"]
    assert problems["relu_backward"] == [None]


def test_a_function_that_loops_or_exits_fails_alone() -> None:
    cells = [
        ("gram_matrix", "def gram_matrix(F):\n    while True:\n        pass\n"),
        ("content_loss", "import sys\ndef content_loss(F, P):\n    sys.exit(0)\n"),
        ("relu_backward", "import os\ndef relu_backward(dy, x):\n    os._exit(0)\n"),
        ("avg_pool_backward", SOLUTIONS["avg_pool_backward"]),
    ]
    problems, _ = grade(cells, ["gram_matrix", "content_loss", "relu_backward", "avg_pool_backward"])
    assert "testing gram_matrix did not finish within 2 s" in problems["gram_matrix"][0]
    assert problems["content_loss"][0].startswith("raised SystemExit")
    assert "testing relu_backward ended the process" in problems["relu_backward"][0]
    assert problems["avg_pool_backward"] == [None]


def test_deleting_files_and_hogging_memory_hurt_no_one_else(tmp_path: Path) -> None:
    cells = [
        ("gram_matrix", "import os\nfor f in os.listdir('.'):\n    os.remove(f)\n" + SOLUTIONS["gram_matrix"]),
        ("relu_backward", "def relu_backward(dy, x):\n    return np.ones(10**11)\n"),
        ("avg_pool_backward", SOLUTIONS["avg_pool_backward"]),
    ]
    problems, _ = grade(cells, ["gram_matrix", "relu_backward", "avg_pool_backward"])
    assert problems["gram_matrix"] == [None] and problems["avg_pool_backward"] == [None]
    assert problems["relu_backward"][0].startswith("raised MemoryError")


def running(pid: int) -> bool:
    """Whether a process exists and is not a zombie (a killed child whose new parent has not reaped it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def gone(pid: int) -> bool:
    """Whether a process ends, or is a zombie (killed, its new parent yet to reap it), within 5 s."""
    for _ in range(100):
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return True
        except (FileNotFoundError, ProcessLookupError):
            return True
        time.sleep(0.05)
    return False


def test_processes_the_answers_start_are_killed(drop: Path) -> None:
    pid_file = drop / "answers.pid"
    spawn = f"import subprocess\np = subprocess.Popen(['sleep', '600'])\nopen({str(pid_file)!r}, 'w').write(str(p.pid))\n"
    grade([("gram_matrix", spawn + SOLUTIONS["gram_matrix"])], ["gram_matrix"])
    assert gone(int(pid_file.read_text()))


def test_a_kernel_that_exits_takes_its_processes_with_it(drop: Path) -> None:
    pid_file = drop / "kernel.pid"
    spawn = f"import subprocess\np = subprocess.Popen(['sleep', '600'])\nopen({str(pid_file)!r}, 'w').write(str(p.pid))"
    run = run_notebook(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in (spawn, "import os\nos._exit(0)")]))
    assert run.stopped == "the kernel died in cell 2 (exit(), os._exit() or a crash); the run stopped there"
    assert gone(int(pid_file.read_text()))


def test_importing_the_package_is_spotted() -> None:
    assert _imports_package("from nst_lessons.scratch.losses import gram_matrix")
    assert _imports_package("import nst_lessons.scratch as s")
    assert _imports_package("import importlib\ng = importlib.import_module('nst_lessons.scratch.losses').gram_matrix")
    assert not _imports_package(SOLUTIONS["gram_matrix"])
    assert not _imports_package("def f(:\n")


def test_links_and_pipes_left_in_the_sandbox_do_not_hang_the_grader() -> None:
    trap = (
        "import os\n"
        "for name in ('progress', 'stderr', 'cells.json'):\n"
        "    os.remove(name) if os.path.exists(name) else None\n"
        "    os.symlink('/dev/zero', name)\n"
        "os.mkfifo('relu_backward.npz')\n"
        "os._exit(0)\n"
    )
    start = time.monotonic()
    problems, _ = grade([("gram_matrix", trap), ("relu_backward", SOLUTIONS["relu_backward"])], ["relu_backward"])
    assert time.monotonic() - start < 10
    assert "could not read the results (relu_backward.npz is not a regular file)" in problems["relu_backward"][0]
