"""The supervisor that :mod:`~.confine` starts around every piece of student code.

Run by path, ``python -I -S supervisor.py SPEC -- ARGV...``, so it imports nothing but the standard
library (nothing a submission could have touched) and starts quickly.  SPEC is the JSON that
:func:`~.confine.command_as` writes: ``{"home", "env", "user", "limits", "needed", "parent"}``.

The supervisor makes itself a child subreaper, forks the student process, confines it (see
:func:`_start`) and execs ``ARGV``; when that process ends, or SIGTERM comes, it kills and reaps
every descendant (:func:`_sweep`) and exits with the student process's status (128 + signal if it
was killed; 125 if some process would not die).
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import stat
import sys
import time

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_PR_SET_NO_NEW_PRIVS = 38
_CLONE_NEWNS = 0x00020000
_MS_NOSUID, _MS_NODEV, _MS_BIND, _MS_REC, _MS_PRIVATE = 2, 4, 4096, 16384, 1 << 18


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
        signal.pthread_sigmask(signal.SIG_SETMASK, set())  # the mask survives execve: clear it
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
        os.write(2, f"supervisor: {error}\n".encode(errors="replace"))
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
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
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


_SIGNALS = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP}


def _wait(child: int) -> int:
    """Reap children (orphans re-parented to us among them) until ``child`` ends, or a signal says
    stop.  Returns the status to pass on: ``child``'s exit code, 128 + the signal that ended it, or
    128 + the signal that stopped us."""
    while True:
        info = signal.sigwaitinfo(_SIGNALS)
        if info.si_signo != signal.SIGCHLD:
            return 128 + info.si_signo
        while True:  # SIGCHLDs merge: reap every child that has ended
            try:
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return 128 + signal.SIGKILL
            if pid == 0:
                break
            if pid == child:
                code = os.waitstatus_to_exitcode(wait_status)
                return code if code >= 0 else 128 - code


def supervise(spec: dict, argv: list[str]) -> int:
    """Run ``argv`` confined as ``spec`` says; when it ends or SIGTERM comes, kill and reap
    everything it started.  Returns the exit status to pass on."""
    # Blocked, these signals are only ever taken by sigwaitinfo: none can interrupt the sweep.
    signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    libc = _libc()
    _check(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "prctl(PR_SET_CHILD_SUBREAPER)")
    _check(libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")
    status = 128 + signal.SIGTERM
    if os.getppid() == spec["parent"]:  # else the grader died before PDEATHSIG was set
        child = os.fork()
        if child == 0:
            _start(spec, argv)
        status = _wait(child)
    left = _sweep()
    if left:
        print(f"supervisor: {left} processes would not die", file=sys.stderr)
        return 125
    return status


if __name__ == "__main__":
    separator = sys.argv.index("--")
    sys.exit(supervise(json.loads(sys.argv[1]), sys.argv[separator + 1 :]))
