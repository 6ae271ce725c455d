"""Run a piece of student code confined, and leave nothing of it running afterwards.

Every process that runs a submission's code (the whole-notebook kernel, :mod:`~.kernel`, and the
sandbox worker, :mod:`~.sandbox`) is started through :func:`command`, which wraps it in a
*supervisor* (:mod:`~.supervisor`, run by path with the standard library only, so it imports
nothing a submission could have touched).  The supervisor

1. makes itself a child subreaper (``prctl(PR_SET_CHILD_SUBREAPER)``), so every process the student
   code starts, however it detaches (a double fork, a new session), stays its descendant: an
   orphan is re-parented to the supervisor, never to init;
2. forks the student process, which before ``execve``: gets an empty temporary home and working
   folder, an environment built from an allow-list (:func:`environment`) instead of the grader's,
   limits on address space, CPU time, file size and number of processes (``setrlimit``), no core
   files and ``PR_SET_NO_NEW_PRIVS``; and, when the grader runs as root, runs as the unprivileged
   user ``nobody`` (:func:`student_user`), so it cannot signal the supervisor or the grader, read
   their environment through ``/proc``, write the grader's files, or exceed the process limit
   (root ignores ``RLIMIT_NPROC``);
3. when the student process ends, or the grader sends SIGTERM (see :func:`stop`), SIGKILLs every
   descendant it finds in ``/proc`` (by parent links), reaps them and looks again until none is
   left, and only then exits.  The grader reads what the code left and writes results after that.

Where a directory on the way to this interpreter or package is closed to ``nobody`` (a Python under
``/root``, say), the student process gets a private mount namespace in which that directory is
replaced by an empty one holding only the needed entries (bind mounts); where even that is not
allowed, student code runs as the grader's own user, and :func:`student_user` says why.
"""

from __future__ import annotations

import functools
import json
import os
import pwd
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
from dataclasses import asdict, dataclass

PROCESS_LIMIT = 128
"""Processes and threads (RLIMIT_NPROC) the student's user may have at once, beyond those it had."""

FILE_LIMIT = 256 * 2**20
"""Largest file, in bytes, student code may write (RLIMIT_FSIZE)."""

MEMORY_LIMIT = 4 * 2**30
"""Address space, in bytes, of each student process (RLIMIT_AS); importing torch (CPU) maps ~0.6 GiB."""

PASSED_ON = ("NST_LESSONS_FAST",)
"""The only variables of the grader's environment student code sees (the lessons' fast mode)."""

_PROBE_LOCK = threading.Lock()  # the kernel and the sandbox start side by side: probe once
STOP_TIMEOUT = 10.0  # seconds for a supervisor to kill and reap everything once asked to stop

SUPERVISOR = os.path.join(os.path.dirname(os.path.realpath(__file__)), "supervisor.py")


@dataclass(frozen=True)
class Limits:
    """Resource limits of one confined process (each of its processes, for memory and CPU).

    Attributes:
        memory: address space in bytes (RLIMIT_AS).
        cpu_seconds: CPU time in seconds (RLIMIT_CPU); SIGXCPU, then SIGKILL, past it.
        file_size: largest file in bytes (RLIMIT_FSIZE); a write past it fails with EFBIG.
        processes: processes and threads beyond those its user already has (RLIMIT_NPROC).
    """

    memory: int = MEMORY_LIMIT
    cpu_seconds: int = 300
    file_size: int = FILE_LIMIT
    processes: int = PROCESS_LIMIT


# --------------------------------------------------------------------------- the grader's side


def environment(home: str) -> dict[str, str]:
    """The student process's whole environment: an allow-list, nothing else of the grader's.

    This package and this interpreter's libraries stay importable however they were found here
    (installed, a virtual environment, a source tree on PYTHONPATH)."""
    env = {
        "PATH": os.pathsep.join(dict.fromkeys([os.path.dirname(sys.executable), "/usr/local/bin", "/usr/bin", "/bin"])),
        "PYTHONPATH": _package_root(),
        "PYTHONDONTWRITEBYTECODE": "1",
        "HOME": home,
        "TMPDIR": home,
        "PWD": home,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        # One thread each: the grader may run beside other work, and the arrays are tiny.
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "MPLBACKEND": "Agg",
    }
    env.update({name: os.environ[name] for name in PASSED_ON if name in os.environ})
    return env


def _package_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))


def _needed_paths(home: str) -> list[str]:
    """What the student process must reach: the interpreter, its libraries, this package, its home
    (and nothing else on ``sys.path``, such as the grader's working folder)."""
    paths = [sys.executable, os.path.realpath(sys.executable), sys.prefix, sys.base_prefix, _package_root(), home]
    paths += [path for key, path in sysconfig.get_paths().items() if key in {"stdlib", "platstdlib", "purelib", "platlib"}]
    return [os.path.abspath(p) for p in dict.fromkeys(paths) if os.path.exists(p)]


def command(argv: list[str], *, home: str, limits: Limits) -> list[str]:
    """The command line that runs ``argv`` confined, in ``home`` (an empty folder the caller made
    and removes), with ``limits``, as :func:`student_user`.  Start it from a thread that outlives
    it: the supervisor ends (killing everything) when the thread that started it ends."""
    return command_as(argv, home=home, limits=limits, user=student_user()[0])


def command_as(argv: list[str], *, home: str, limits: Limits, user: tuple[int, int] | None) -> list[str]:
    """:func:`command` as ``user`` (uid, gid), or as the grader's own user for None."""
    spec = {
        "home": home,
        "env": environment(home),
        "user": list(user) if user else None,
        "limits": asdict(limits),
        "needed": _needed_paths(home) if user else [],
        "parent": os.getpid(),
    }
    return [sys.executable, "-I", "-S", SUPERVISOR, json.dumps(spec), "--", *argv]


def student_user() -> tuple[tuple[int, int] | None, str]:
    """The (uid, gid) student code runs as, or None for the grader's own user; and why.

    When the grader runs as root it is ``nobody`` if a confined ``nobody`` can start this
    interpreter and import this package (checked once per grader process), else the grader's user."""
    with _PROBE_LOCK:
        return _student_user()


@functools.cache
def _student_user() -> tuple[tuple[int, int] | None, str]:
    if os.geteuid() != 0:
        return None, "the grader does not run as root, so student code runs as the grader's user"
    try:
        entry = pwd.getpwnam("nobody")
        user = (entry.pw_uid, entry.pw_gid)
    except KeyError:
        user = (65534, 65534)
    with tempfile.TemporaryDirectory(prefix="nst-grade-probe-") as home:
        probe = subprocess.Popen(
            command_as([sys.executable, "-c", "import nst_lessons.grading.worker"], home=home, limits=Limits(cpu_seconds=60), user=user),
            env=environment(home),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            _, stderr = probe.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            return None, "student code runs as root: the user nobody could not start Python here within 120 s"
        finally:
            stop(probe)
    if probe.returncode == 0:
        return user, "student code runs as the user nobody"
    why = (stderr.decode(errors="replace").strip().splitlines() or [f"exit status {probe.returncode}"])[-1]
    return None, f"student code runs as root: the user nobody could not start Python here ({why[:200]})"


def stop(process: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> None:
    """Ask a supervisor started with :func:`command` to end everything it supervises, and wait until
    it has.  One that does not exit within ``timeout`` seconds (only possible when student code runs
    as the grader's user and stopped it) is killed with its process group."""
    if process.poll() is None:
        try:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                process.kill()
    process.wait()
