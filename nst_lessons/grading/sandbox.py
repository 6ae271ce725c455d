"""Run a submission's answer cells in a separate, limited process and collect what its functions return.

The student's code never runs in the grader's process.  The worker (:mod:`~.worker`) runs confined
(:mod:`~.confine`): in an empty temporary directory, with a clean environment, limits on CPU time,
memory, file size and processes, as ``nobody`` when the grader is root, and nothing it starts
outlives it.  A watchdog gives each step, one answer cell or one exercise, ``step_timeout``
seconds.  When a step hangs or ends the process, the grader records why, drops that cell or
exercise, and starts a fresh worker for what is left, so an endless loop or an ``os._exit`` costs
only the answers it sits in.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nst_lessons.grading import confine
from nst_lessons.grading.cases import HiddenCases
from nst_lessons.grading.observe import Observation, load_observations, read_file

STEP_TIMEOUT = 10.0
"""Seconds one answer cell or one exercise (all its cases) may take in the sandbox."""

STARTUP_ALLOWANCE = 30.0  # the worker's imports (numpy, and torch through the numpy VGG) on a busy machine


@dataclass
class SandboxResult:
    """What the sandbox found.

    Attributes:
        observations: per exercise, one :class:`Observation` per hidden case, or why there are none.
        cell_errors: per answer cell (grade_id), what went wrong at its top level, if anything.
    """

    observations: dict[str, list[Observation] | str] = field(default_factory=dict)
    cell_errors: dict[str, str] = field(default_factory=dict)


def _run_worker(
    cells: Sequence[tuple[str, str]],
    exercises: Sequence[str],
    hidden: HiddenCases,
    step_timeout: float,
    memory: int,
    workdir: Path,
    cancel: threading.Event,
) -> tuple[bool, int | None, str]:
    """Run one worker, confined (:mod:`~.confine`), in ``workdir`` until it finishes, a step
    exceeds ``step_timeout`` or ``cancel`` is set; when this returns, every process it started has
    been killed.

    Returns (timed out, exit status or None when killed, last line of its stderr).
    """
    request = json.dumps(
        {"cells": [{"id": i, "source": s} for i, s in cells], "exercises": list(exercises), "hidden": hidden.to_json()}
    )
    steps = len(cells) + len(exercises)
    limits = confine.Limits(memory=memory, cpu_seconds=int(STARTUP_ALLOWANCE + step_timeout * steps) + 1)
    with open(workdir / "stderr", "wb") as stderr:
        process = subprocess.Popen(
            confine.command([sys.executable, "-s", "-m", "nst_lessons.grading.worker"], home=str(workdir), limits=limits),
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=confine.environment(str(workdir)),  # the supervisor's own, which /proc shows to its user
            start_new_session=True,
        )
    try:
        try:
            process.stdin.write(request.encode())  # type: ignore[union-attr]
            process.stdin.close()  # type: ignore[union-attr]
        except BrokenPipeError:
            pass
        progress = workdir / "progress"
        start = time.monotonic()
        last_size, step_deadline = 0, start + STARTUP_ALLOWANCE + step_timeout
        # Code that keeps writing to the progress file must not keep the clock running forever.
        final_deadline = start + STARTUP_ALLOWANCE + step_timeout * steps
        while process.poll() is None:
            try:
                size = progress.lstat().st_size
            except OSError:
                size = 0
            if size != last_size:  # a new step began: it gets a full step_timeout
                last_size, step_deadline = size, time.monotonic() + step_timeout
            if time.monotonic() > min(step_deadline, final_deadline) or cancel.is_set():
                return True, None, ""
            time.sleep(0.02)
        return False, process.returncode, _last_line(workdir / "stderr")
    finally:
        confine.stop(process)  # the worker and whatever it started, however detached


def _last_line(path: Path) -> str:
    """The last line of a file the worker wrote, or "" (the answers may have removed or replaced it)."""
    try:
        lines = read_file(path, 4096, tail=True).decode(errors="replace").strip().splitlines()
    except ValueError:
        return ""
    return lines[-1][:200] if lines else ""


def run_answers(
    cells: Sequence[tuple[str, str]],
    exercises: Sequence[str],
    *,
    hidden: HiddenCases,
    step_timeout: float = STEP_TIMEOUT,
    memory: int = confine.MEMORY_LIMIT,
    cancel: threading.Event | None = None,
) -> SandboxResult:
    """Execute ``cells`` ((grade_id, source) pairs, in notebook order) in the sandbox and call each
    exercise's function on its ``hidden`` cases; each worker may map ``memory`` bytes.  Setting
    ``cancel`` (from another thread) ends the work early, with an incomplete result."""
    cancel = cancel or threading.Event()
    result = SandboxResult()
    cells, pending = list(cells), list(exercises)
    for _ in range(len(cells) + len(exercises) + 1):  # every round settles a cell or an exercise
        if not pending or cancel.is_set():
            break
        with tempfile.TemporaryDirectory(prefix="nst-grade-", ignore_cleanup_errors=True) as tmp:
            workdir = Path(tmp)
            timed_out, status, stderr = _run_worker(cells, pending, hidden, step_timeout, memory, workdir, cancel)
            try:
                errors = json.loads(read_file(workdir / "cells.json", 2**20))
                result.cell_errors.update({str(k): str(v)[:600] for k, v in errors.items()})
            except (ValueError, AttributeError):
                pass  # the worker never got that far, or the file was tampered with: only a report
            for name in list(pending):
                path = workdir / f"{name}.npz"
                if path.is_symlink() or path.exists():
                    try:
                        result.observations[name] = load_observations(path)
                    except ValueError as error:
                        result.observations[name] = f"the grader could not read the results ({error})"
                    pending.remove(name)
            if not pending:
                break
            why = (
                f"did not finish within {step_timeout:g} s (an endless loop?)"
                if timed_out
                else f"ended the process (exit status {status}{': ' + stderr if stderr else ''}): "
                "exit(), os._exit() or a crash"
            )
            step = _last_line(workdir / "progress")
            kind, _, which = step.partition(" ")
            if kind == "cell" and which.isdigit() and int(which) < len(cells):
                grade_id = cells.pop(int(which))[0]
                result.cell_errors[grade_id] = f"the answer cell {why}; it was left out"
            else:  # an exercise, or a forged or missing progress line: blame the next exercise
                name = which if kind == "exercise" and which in pending else pending[0]
                result.observations[name] = f"testing {name} {why}"
                pending.remove(name)
    return result


__all__ = ["STEP_TIMEOUT", "SandboxResult", "run_answers"]
