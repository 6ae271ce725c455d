"""Run a piece of student code confined, and leave nothing of it running afterwards.

Every process that runs a submission's code (the whole-notebook kernel, :mod:`~.kernel`, and the
sandbox worker, :mod:`~.sandbox`) is started through :func:`command`, which wraps it in a
*supervisor*: this file, run by path as ``python -I -S confine.py SPEC -- ARGV...`` (standard library
only, so it imports nothing a submission could have touched).  The supervisor

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

import contextlib
import ctypes
import functools
import json
import os
import pwd
import resource
import signal
import stat
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from dataclasses import asdict, dataclass

PROCESS_LIMIT = 128
"""Processes and threads (RLIMIT_NPROC) the student's user may have at once, beyond those it had."""

FILE_LIMIT = 256 * 2**20
"""Largest file, in bytes, student code may write (RLIMIT_FSIZE)."""

MEMORY_LIMIT = 4 * 2**30
"""Address space, in bytes, of each student process (RLIMIT_AS); torch alone maps ~1.5 GiB."""

PASSED_ON = ("NST_LESSONS_FAST",)
"""The only variables of the grader's environment student code sees (the lessons' fast mode)."""

_PROBE_LOCK = threading.Lock()  # the kernel and the sandbox start side by side: probe once
STOP_TIMEOUT = 10.0  # seconds for a supervisor to kill and reap everything once asked to stop

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_PR_SET_NO_NEW_PRIVS = 38
_CLONE_NEWNS = 0x00020000
_MS_NOSUID, _MS_NODEV, _MS_BIND, _MS_REC, _MS_PRIVATE = 2, 4, 4096, 16384, 1 << 18


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
    return [sys.executable, "-I", "-S", os.path.realpath(__file__), json.dumps(spec), "--", *argv]


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
        probe = [sys.executable, "-c", "import nst_lessons.grading.worker"]
        try:
            run = subprocess.run(
                command_as(probe, home=home, limits=Limits(cpu_seconds=60), user=user),
                env=environment(home),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                timeout=120,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return None, "student code runs as root: the user nobody could not start Python here within 120 s"
    if run.returncode == 0:
        return user, "student code runs as the user nobody"
    why = (run.stderr.decode(errors="replace").strip().splitlines() or [f"exit status {run.returncode}"])[-1]
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


# --------------------------------------------------------------------------- the supervisor's side


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{what}: {os.strerror(error)}")


def _traversable(path: str, uid: int, gid: int) -> bool:
    info = os.stat(path)
    if info.st_uid == uid:
        return bool(info.st_mode & stat.S_IXUSR)
    if info.st_gid == gid:
        return bool(info.st_mode & stat.S_IXGRP)
    return bool(info.st_mode & stat.S_IXOTH)


def _blocked(paths: list[str], uid: int, gid: int) -> dict[str, set[str]]:
    """{directory the user cannot enter: its entries that lead to a needed path}."""
    blocked: dict[str, set[str]] = {}
    for path in paths:
        parts = path.strip("/").split("/")
        for i in range(len(parts) - 1):
            folder = "/" + "/".join(parts[:i])
            if not _traversable(folder, uid, gid):
                blocked.setdefault(folder, set()).add(parts[i])
                break
    return blocked


def _reveal(paths: list[str], uid: int, gid: int) -> None:
    """Let ``uid`` reach ``paths``: in a private mount namespace, each directory it cannot enter is
    covered with an empty one (tmpfs) holding bind mounts of just the entries on the way."""
    libc, private = _libc(), False
    for _ in range(16):  # one round per level of closed directories
        blocked = _blocked(paths, uid, gid)
        if not blocked:
            return
        if not private:
            _check(libc.unshare(_CLONE_NEWNS), "unshare(CLONE_NEWNS)")
            _check(libc.mount(None, b"/", None, _MS_REC | _MS_PRIVATE, None), "mount --make-rprivate /")
            private = True
        for folder, names in blocked.items():
            kept = {name: os.open(os.path.join(folder, name), os.O_PATH) for name in names}
            _check(libc.mount(b"tmpfs", folder.encode(), b"tmpfs", _MS_NOSUID | _MS_NODEV, b"mode=0755,size=64k"), f"mount tmpfs on {folder}")
            for name, fd in kept.items():
                target = os.path.join(folder, name)
                if stat.S_ISDIR(os.fstat(fd).st_mode):
                    os.mkdir(target)
                else:
                    os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o644))
                _check(libc.mount(f"/proc/self/fd/{fd}".encode(), target.encode(), None, _MS_BIND | _MS_REC, None), f"bind {target}")
                os.close(fd)
    raise OSError(f"could not open a way to {paths}")


def _tasks_of(uid: int) -> int:
    """Processes and threads whose real user is ``uid`` (what RLIMIT_NPROC counts)."""
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/status") as f:
                    fields = dict(line.split(":", 1) for line in f if ":" in line)
                if int(fields["Uid"].split()[0]) == uid:
                    count += int(fields["Threads"])
            except (OSError, KeyError, ValueError):
                continue
    return count


def _start(spec: dict, argv: list[str]) -> None:
    """In the forked child: confine this process, then become ``argv``.  Never returns."""
    try:
        home, user, limits = spec["home"], spec["user"], spec["limits"]
        uid, gid = user if user else (os.getuid(), os.getgid())
        if user:
            _reveal(spec["needed"], uid, gid)
            for folder, dirs, files in os.walk(home):
                for name in [folder] + [os.path.join(folder, n) for n in dirs + files]:
                    os.chown(name, uid, gid, follow_symlinks=False)
        for limit, value in (
            (resource.RLIMIT_CORE, 0),
            (resource.RLIMIT_AS, limits["memory"]),
            (resource.RLIMIT_CPU, limits["cpu_seconds"]),
            (resource.RLIMIT_FSIZE, limits["file_size"]),
            (resource.RLIMIT_NPROC, _tasks_of(uid) + limits["processes"]),
        ):
            resource.setrlimit(limit, (value, value))
        if user:
            os.setgroups([])
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
        _check(_libc().prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
        os.chdir(home)
        os.umask(0o077)
        os.execve(argv[0], argv, spec["env"])
    except BaseException as error:  # nothing may run unconfined: say why and end here
        os.write(2, f"confine: {error}\n".encode(errors="replace"))
    os._exit(127)


def _parents() -> dict[int, int]:
    """{pid: parent pid} of every process, from /proc."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    parents[int(entry)] = int(f.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue  # ended while we looked
    return parents


def _descendants(root: int) -> set[int]:
    """Every process below ``root``, found by parent links."""
    children: dict[int, list[int]] = {}
    for pid, ppid in _parents().items():
        children.setdefault(ppid, []).append(pid)
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _kill(pid: int, ours: set[int]) -> None:
    """SIGKILL ``pid`` if it is still the process we found: held through a pidfd, it is checked to
    be a child of one of ``ours`` first, so a number reused by another process is never hit."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    except OSError:  # no pidfds (Linux before 5.3): the plain signal, with its tiny race
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        return
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            if int(f.read().rsplit(b")", 1)[1].split()[1]) in ours:
                signal.pidfd_send_signal(fd, signal.SIGKILL)
    except (OSError, IndexError, ValueError):
        pass  # it ended meanwhile
    finally:
        os.close(fd)


def _sweep(deadline: float = 5.0) -> int:
    """SIGKILL and reap every descendant, looking again until there is none (a process may fork
    between one look and the next; the process limit bounds how many can appear).  Returns how many
    were still there after ``deadline`` seconds (only processes stuck in the kernel resist)."""
    me, end = os.getpid(), time.monotonic() + deadline
    while True:
        found = _descendants(me)
        if not found or time.monotonic() > end:
            return len(found)
        for pid in found:
            _kill(pid, found | {me})
        reaped = False
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            reaped = True
        if not reaped:
            time.sleep(0.005)  # killed processes not yet dead, or re-parented to us a moment later


class _Stop(Exception):
    pass


def _raise_stop(signum: int, frame: object) -> None:
    raise _Stop


def supervise(spec: dict, argv: list[str]) -> int:
    """Run ``argv`` confined as ``spec`` says; when it ends or SIGTERM comes, kill and reap
    everything it started.  Returns the exit status to pass on (128 + signal if it was killed)."""
    libc = _libc()
    _check(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "prctl(PR_SET_CHILD_SUBREAPER)")
    _check(libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, _raise_stop)
    status = 128 + signal.SIGTERM
    try:
        if os.getppid() != spec["parent"]:  # the grader died before PDEATHSIG was set
            raise _Stop
        child = os.fork()
        if child == 0:
            _start(spec, argv)
        while True:
            pid, wait_status = os.waitpid(-1, 0)  # also reaps orphans re-parented to us
            if pid == child:
                code = os.waitstatus_to_exitcode(wait_status)
                status = code if code >= 0 else 128 - code
                break
    except _Stop:
        pass
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)  # the sweep must finish
        left = _sweep()
    if left:
        print(f"confine: {left} processes would not die", file=sys.stderr)
        return 125
    return status


if __name__ == "__main__":
    separator = sys.argv.index("--")
    sys.exit(supervise(json.loads(sys.argv[1]), sys.argv[separator + 1 :]))
