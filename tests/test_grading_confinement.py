"""Student code runs confined: one adversarial submission (the instructor's answers, so 22 points,
plus attacks) is graded once through the command, and each test checks what one attack achieved:
nothing.  The attacks leave processes behind (a daemon by double fork and a new session, a child in
a new session) that wait for the grader's results file and rewrite it, read a secret from the
grader's environment, write ``~/results.json``, and try 200 forks, a 6 GiB array and a 300 MiB file.

Every attack is bounded: the processes left behind give up after 120 s, the forks sleep at most
20 s and are killed by the cell itself, the array is never touched, the file is written 1 MiB at a
time."""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest

from nst_lessons.grading.cli import add_grade_parser
from nst_lessons.grading.confine import (
    FILE_LIMIT,
    MEMORY_LIMIT,
    PROCESS_LIMIT,
    Limits,
    command_as,
    environment,
    stop,
    student_user,
)
from nst_lessons.grading.notebooks import nbgrader_metadata, notebook_text

COURSE = Path(__file__).parents[1] / "notebooks/exercises"
SOURCE = nbformat.read(COURSE / "source/nst_gradients/nst_gradients.ipynb", as_version=4)
SECRET = "hunter2-5f1c"
LATE = 2.0  # seconds to wait after grading for a process left behind to strike

# What a process left behind does: wait (120 s at most) for the grader's results, then rewrite them.
LURK = '''
import json, os, time
def _lurk(results):
    try:
        for _ in range(2400):
            if os.path.exists(results):
                time.sleep(0.2)
                with open(results, "w") as f:
                    json.dump({"score": 999, "output": "rewritten by a process left behind"}, f)
                break
            time.sleep(0.05)
    finally:
        os._exit(0)
'''

# Runs in the kernel and in the sandbox (it is in an answer cell): a daemon, double-forked into a
# new session.
DAEMON = '''
def _leave_daemon(drop, label):
    me = os.getpid()
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            with open(os.path.join(drop, f"daemon-{label}-{me}"), "w") as f:
                f.write(str(os.getpid()))
            _lurk(RESULTS)
        os._exit(0)
    os.wait()
    while not os.path.exists(os.path.join(drop, f"daemon-{label}-{me}")):
        time.sleep(0.01)
_leave_daemon(DROP, __name__)
'''

# Also in an answer cell: look for the secret everywhere a process can, and write ~/results.json.
SNOOP = '''
import glob, os
_found = [name for name, value in os.environ.items() if SECRET in value]
for _path in glob.glob("/proc/[0-9]*/environ") + glob.glob("/proc/[0-9]*/cmdline"):
    try:
        with open(_path, "rb") as _f:
            if SECRET.encode() in _f.read():
                _found.append(_path)
    except OSError:
        pass
with open(os.path.expanduser("~/results.json"), "w") as _f:
    _f.write('{"score": 999}')
if _found:
    raise RuntimeError(f"read the secret {SECRET} in {_found[:3]}")
'''

# The kernel only: a child in a new session that rewrites the results later.
SESSION = '''
if os.fork() == 0:
    os.setsid()
    with open(os.path.join(DROP, "session"), "w") as f:
        f.write(str(os.getpid()))
    _lurk(RESULTS)
while not os.path.exists(os.path.join(DROP, "session")):
    time.sleep(0.01)
'''

FORKS = '''
import os, signal, time
_children = []
try:
    for _ in range(200):
        _pid = os.fork()
        if _pid == 0:
            time.sleep(20)
            os._exit(0)
        _children.append(_pid)
except OSError:
    pass
for _pid in _children:
    os.kill(_pid, signal.SIGKILL)
    os.waitpid(_pid, 0)
raise RuntimeError(f"forked {len(_children)} of 200")
'''

MEMORY = "import numpy as np\n_big = np.zeros(6 * 2**30 // 8)  # address space only: never touched\n"

BIG_FILE = '''
with open("big", "wb") as _f:
    for _ in range(300):
        _f.write(bytes(2**20))
'''


def grade(argv: list[str]) -> int:
    subparsers = argparse.ArgumentParser().add_subparsers()
    add_grade_parser(subparsers)
    args = subparsers.choices["grade"].parse_args(argv)
    return args.func(args)


def running(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def attack_notebook(results: Path, drop: Path) -> nbformat.NotebookNode:
    nb = copy.deepcopy(SOURCE)
    constants = f"RESULTS, DROP, SECRET = {str(results)!r}, {str(drop)!r}, {SECRET!r}\n"
    for cell in nb.cells:
        grade_id = nbgrader_metadata(cell).get("grade_id")
        if grade_id == "gram_matrix":
            cell.source = constants + LURK + DAEMON + cell.source
        elif grade_id == "content_loss":
            cell.source = cell.source + "\n" + constants + SNOOP
    nb.cells += [nbformat.v4.new_code_cell(constants + code) for code in (LURK + SESSION, MEMORY, BIG_FILE, FORKS)]
    return nb


@pytest.fixture(scope="module")
def attacked(tmp_path_factory: pytest.TempPathFactory, drop: Path) -> Iterator[tuple[Path, dict, dict, Path]]:
    """Grade the attack; yield the folder, the results just after grading and after the processes
    left behind would have struck, and the grader's home."""
    root = tmp_path_factory.mktemp("attack")
    home = root / "home"
    home.mkdir()
    submission, results = root / "attack.ipynb", root / "results.json"
    submission.write_text(notebook_text(attack_notebook(results, drop)), encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOME", str(home))
        patch.setenv("NST_LESSONS_TEST_SECRET", SECRET)
        assert grade([str(submission), "--results", str(results)]) == 0
    alive = {path.name: running(int(path.read_text())) for path in drop.iterdir() if path.name.startswith(("daemon", "session"))}
    first = json.loads(results.read_text())
    time.sleep(LATE)
    yield root, {"alive": alive, "results": first}, json.loads(results.read_text()), home


def test_no_process_outlives_the_grading_and_the_results_stay(attacked: tuple[Path, dict, dict, Path]) -> None:
    _, right_after, later, _ = attacked
    # A daemon from the kernel and one from the sandbox, and the kernel's child in a new session:
    # all were killed before the results were written.
    assert sorted(name.rsplit("-", 1)[0] for name in right_after["alive"]) == ["daemon-__answers__", "daemon-__main__", "session"]
    assert not any(right_after["alive"].values())
    assert right_after["results"]["score"] == later["score"] == 22
    assert later == right_after["results"]


def test_the_graders_environment_stays_secret(attacked: tuple[Path, dict, dict, Path]) -> None:
    _, right_after, _, _ = attacked
    results = right_after["results"]
    assert SECRET not in json.dumps(results) and "read the secret" not in results["output"]
    assert {t["name"]: t["score"] for t in results["tests"]}["content_loss: the loss"] == 1


def test_home_is_an_empty_temporary_folder(attacked: tuple[Path, dict, dict, Path]) -> None:
    root, _, _, home = attacked
    assert list(home.iterdir()) == []
    assert sorted(p.name for p in root.iterdir()) == ["attack.ipynb", "home", "results.json"]


def test_processes_memory_and_file_size_are_limited(attacked: tuple[Path, dict, dict, Path]) -> None:
    results = attacked[1]["results"]
    notes = results["output"].splitlines()
    cells = len(SOURCE.cells)
    forks = next(line for line in notes if line.startswith(f"Cell {cells + 4} raised RuntimeError: forked "))
    assert int(forks.split()[-3]) < min(200, PROCESS_LIMIT)
    assert f"Cell {cells + 2} raised MemoryError: Unable to allocate 6.00 GiB" in results["output"]
    assert f"Cell {cells + 3} raised OSError: [Errno 27] File too large" in results["output"]
    assert MEMORY_LIMIT < 6 * 2**30 and FILE_LIMIT < 300 * 2**20


def test_student_code_runs_as_nobody_under_root() -> None:
    user, why = student_user()
    if os.geteuid() == 0:
        assert user is not None and user[0] != 0, why
    else:
        assert user is None


# --------------------------------------------------------------------------- the supervisor alone

# A daemon (double fork, new session) that would live 60 s; its parent waits for it, then either
# ends or sleeps 60 s too.
DAEMON_SCRIPT = """
import os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        with open(sys.argv[1], "w") as f:
            f.write(str(os.getpid()))
        time.sleep(60)
    os._exit(0)
os.wait()
while not os.path.exists(sys.argv[1]):
    time.sleep(0.01)
if sys.argv[2] == "stay":
    time.sleep(60)
"""


@pytest.fixture
def confined(drop: Path) -> Iterator[tuple[Path, list[str]]]:
    """A pid file in ``drop`` for the daemon, and an empty home for the confined code."""
    home = tempfile.mkdtemp(prefix="nst-grade-test-")
    pid_file = drop / f"daemon-{time.monotonic_ns()}"
    yield pid_file, [home]
    shutil.rmtree(home, ignore_errors=True)


@pytest.mark.parametrize("as_nobody", [True, False], ids=["as nobody", "as the grader's user"])
def test_a_daemon_dies_with_the_code_that_started_it(confined: tuple[Path, list[str]], as_nobody: bool) -> None:
    pid_file, (home,) = confined
    user = student_user()[0] if as_nobody else None
    if as_nobody and user is None:
        pytest.skip("the grader does not run as root")
    argv = command_as([sys.executable, "-c", DAEMON_SCRIPT, str(pid_file), "end"], home=home, limits=Limits(cpu_seconds=30), user=user)
    start = time.monotonic()
    assert subprocess.run(argv, env=environment(home), timeout=50, check=False).returncode == 0
    assert time.monotonic() - start < 50 and not running(int(pid_file.read_text()))


def test_stopping_the_supervisor_ends_the_code_and_its_daemon(confined: tuple[Path, list[str]]) -> None:
    pid_file, (home,) = confined
    argv = command_as([sys.executable, "-c", DAEMON_SCRIPT, str(pid_file), "stay"], home=home, limits=Limits(cpu_seconds=30), user=student_user()[0])
    process = subprocess.Popen(argv, env=environment(home), start_new_session=True)
    for _ in range(1000):
        if pid_file.exists() and pid_file.read_text():
            break
        time.sleep(0.02)
    code = [int(line.split()[0]) for line in subprocess.run(["ps", "-o", "pid=", "--ppid", str(process.pid)], capture_output=True, text=True).stdout.splitlines()]
    stop(process)
    assert process.returncode == 128 + 15
    assert code and not any(running(pid) for pid in [*code, int(pid_file.read_text())])


def test_ctrl_c_writes_no_results_and_leaves_nothing_running(drop: Path, tmp_path: Path) -> None:
    results, mine = tmp_path / "results.json", drop / "ctrl-c"
    mine.mkdir(mode=0o777)
    mine.chmod(0o777)
    cells = [LURK + DAEMON, "time.sleep(60)"]
    constants = f"RESULTS, DROP = {str(results)!r}, {str(mine)!r}\n"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(constants + code) for code in cells])
    (tmp_path / "a.ipynb").write_text(notebook_text(nb), encoding="utf-8")
    grader = subprocess.Popen(
        [sys.executable, "-m", "nst_lessons.grading", "grade", str(tmp_path / "a.ipynb"), "--results", str(results)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    for _ in range(3000):  # until the kernel has started the daemon, and sleeps
        found = list(mine.iterdir())
        if found and found[0].read_text():
            break
        time.sleep(0.02)
    grader.send_signal(signal.SIGINT)
    _, err = grader.communicate(timeout=30)
    assert grader.returncode == 130 and err.splitlines()[-1] == "nst-lessons grade: interrupted before all results were written"
    assert not running(int(found[0].read_text())) and not results.exists()


# --------------------------------------------------------------------------- --results and --csv


@pytest.mark.parametrize("spelling", ["same", "relative", "dotdot", "symlink", "hardlink"])
def test_results_naming_the_submission_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], spelling: str
) -> None:
    submission = tmp_path / "hw.ipynb"
    text = notebook_text(SOURCE)
    submission.write_text(text, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    results = {
        "same": submission,
        "relative": Path("hw.ipynb"),
        "dotdot": tmp_path / ".." / tmp_path.name / "hw.ipynb",
        "symlink": tmp_path / "results.json",
        "hardlink": tmp_path / "results.json",
    }[spelling]
    if spelling == "symlink":
        results.symlink_to("hw.ipynb")
    elif spelling == "hardlink":
        os.link(submission, results)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert grade([str(submission), "--results", str(results)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"nst-lessons grade: error: --results {results} is the submission {submission} itself; name another file"
    ]
    assert submission.read_text(encoding="utf-8") == text and sorted(p.name for p in tmp_path.iterdir()) == before


def test_results_or_csv_inside_the_folder_of_submissions_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "submissions"
    folder.mkdir()
    (folder / "a.ipynb").write_text(notebook_text(SOURCE), encoding="utf-8")
    (tmp_path / "link").symlink_to("submissions")
    cases = [
        (["--results", str(folder)], f"--results {folder}"),
        (["--results", str(tmp_path / "link" / "results")], f"--results {tmp_path / 'link' / 'results'}"),
        (["--results", str(tmp_path / "results"), "--csv", str(folder / "grades.csv")], f"--csv {folder / 'grades.csv'}"),
    ]
    for options, named in cases:
        assert grade([str(folder), *options]) == 2
        assert capsys.readouterr().err.splitlines() == [
            f"nst-lessons grade: error: {named} is inside the folder of submissions {folder}; name a place outside it"
        ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "submissions"]
    assert [p.name for p in folder.iterdir()] == ["a.ipynb"]


def test_an_unwritable_results_folder_is_refused_before_grading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import nst_lessons.grading.cli as grading_cli

    submission = tmp_path / "hw.ipynb"
    submission.write_text(notebook_text(SOURCE), encoding="utf-8")
    monkeypatch.setattr(grading_cli, "grade_notebook", lambda *a, **k: pytest.fail("graded before the results folder was checked"))
    folder = tmp_path / "locked"
    folder.mkdir()
    monkeypatch.setattr(grading_cli, "check_writable", lambda f: (_ for _ in ()).throw(
        PermissionError(f"cannot write to the folder {f} (Permission denied)")))
    assert grade([str(submission), "--results", str(folder / "r.json")]) == 2
    assert capsys.readouterr().err.splitlines() == [f"nst-lessons grade: error: cannot write to the folder {folder} (Permission denied)"]
