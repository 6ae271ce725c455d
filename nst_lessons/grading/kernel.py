"""Run a whole submitted notebook, top to bottom, in a fresh kernel, within time limits.

This is the submission run as the student would: it says whether the notebook runs and which cells
fail.  It plays no part in the score (that comes from the sandbox, :mod:`~.sandbox`), so nothing a
cell prints, displays or fakes can change a mark; outputs other than errors are dropped on
arrival, which also keeps a cell that prints gigabytes from filling the grader's memory.  The
kernel runs confined like the sandbox (:mod:`~.confine`: clean environment, empty temporary home,
resource limits, ``nobody`` when the grader is root), and when the run ends everything it started
is killed before :func:`run_notebook` returns.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat import NotebookNode

from nst_lessons.grading import confine

CELL_TIMEOUT = 30.0
TOTAL_TIMEOUT = 120.0
STARTUP_ALLOWANCE = 30.0  # CPU seconds for the kernel's own start, on top of the run's time limit


@dataclass
class NotebookRun:
    """How a notebook's run went.

    Attributes:
        seconds: wall time from the kernel's start to its shutdown.
        cells_run: code cells executed (skipped empty ones not counted).
        errors: ``(cell number, "NameError: name 'x' is not defined")`` for each cell that raised,
            numbered from 1 among all cells, as Jupyter shows them.
        stopped: why the run stopped early (a time limit, the kernel died), or None.
    """

    seconds: float = 0.0
    cells_run: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)
    stopped: str | None = None


class _Client(NotebookClient):
    def output(self, outs: list[NotebookNode], msg: dict[str, Any], display_id: str | None, cell_index: int) -> None:
        """Drop every output: what a cell shows is never used, and errors come with the reply."""
        return None


class _ConfinedSpecs(KernelSpecManager):
    """One kernel only: this interpreter's native "python3" kernel, started through the supervisor."""

    def __init__(self, argv: list[str]) -> None:
        super().__init__(kernel_dirs=[])  # no kernel directories: nothing installed elsewhere is used
        self.confined_argv = argv

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        spec = super().get_kernel_spec("python3")
        spec.argv, spec.env = self.confined_argv, {}
        return spec


def _kernel_manager(home: str, limits: confine.Limits) -> AsyncKernelManager:
    # Always the native kernel of this very interpreter, whatever kernel the notebook's metadata
    # asks for; its connection file goes in its home, which the confined kernel can read.
    native = KernelSpecManager(kernel_dirs=[]).get_kernel_spec("python3").argv
    return AsyncKernelManager(
        kernel_name="python3",
        kernel_spec_manager=_ConfinedSpecs(confine.command(native, home=home, limits=limits)),
        connection_file=os.path.join(home, "kernel.json"),
    )


async def _run(
    nb: NotebookNode,
    cwd: str,
    cell_timeout: float,
    total_timeout: float,
    memory: int,
    supervisors: list[subprocess.Popen[bytes]],
    stopping: threading.Event,
) -> NotebookRun:
    run = NotebookRun()
    km = _kernel_manager(cwd, confine.Limits(memory=memory, cpu_seconds=int(total_timeout + STARTUP_ALLOWANCE)))
    client = _Client(
        nb,
        km=km,
        allow_errors=True,
        interrupt_on_timeout=False,  # a cell that ignores KeyboardInterrupt must not hang the grader
        shutdown_kernel="immediate",
        startup_timeout=int(total_timeout),
        resources={"metadata": {"path": cwd}},
    )

    def record(cell: NotebookNode, cell_index: int, execute_reply: dict[str, Any]) -> None:
        content = (execute_reply or {}).get("content", {})
        if content.get("status") == "error":
            first_line = str(content.get("evalue", "")).strip().split("\n")[0]
            run.errors.append((cell_index + 1, f"{content.get('ename', 'Error')}: {first_line}"[:200].rstrip(": ")))

    client.on_cell_executed = record
    start = time.monotonic()
    deadline = start + total_timeout
    index = 0
    try:
        # The kernel's own stdout and stderr (fd-level writes, its log) are not wanted either; the
        # supervisor gets the clean environment too, since /proc shows it to processes of its user.
        async with client.async_setup_kernel(
            cleanup_kc=True, env=confine.environment(cwd), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        ):
            supervisor = km.provisioner.process  # type: ignore[union-attr]
            supervisors.append(supervisor)
            try:
                for index, cell in enumerate(nb.cells):
                    if stopping.is_set():
                        break
                    if cell.cell_type != "code" or not cell.source.strip():
                        continue
                    remaining = deadline - time.monotonic()
                    if remaining < 1:
                        run.stopped = f"the notebook took longer than {total_timeout:g} s in all; cells from {index + 1} on were not run"
                        break
                    client.timeout = max(1, int(min(cell_timeout, remaining)))
                    await client.async_execute_cell(cell, index)
                    run.cells_run += 1
            finally:
                # Before jupyter_client SIGKILLs the supervisor (which would orphan what the kernel
                # started), the supervisor kills the kernel and all its descendants itself.
                await asyncio.to_thread(confine.stop, supervisor)
    except CellTimeoutError:
        run.stopped = f"cell {index + 1} ran longer than {client.timeout} s; the run stopped there"
    except DeadKernelError:
        run.stopped = f"the kernel died in cell {index + 1} (exit(), os._exit() or a crash); the run stopped there"
    except Exception as error:  # the kernel failed to start, or its channels broke: a report, never a crash
        run.stopped = f"the kernel failed ({type(error).__name__}: {str(error)[:200]})"
    run.seconds = time.monotonic() - start
    return run


def run_notebook(
    nb: NotebookNode,
    *,
    cell_timeout: float = CELL_TIMEOUT,
    total_timeout: float = TOTAL_TIMEOUT,
    memory: int = confine.MEMORY_LIMIT,
) -> NotebookRun:
    """Execute every code cell of ``nb`` in a fresh, confined kernel (``memory`` bytes of address
    space per process), working in an empty temporary directory that is also its home.

    ``nb`` is modified (execution counts); pass a copy to keep the original.  A cell that raises
    does not stop the run; a cell over ``cell_timeout`` seconds, a run over ``total_timeout``
    seconds, or a dead kernel does.  When this returns, or raises (Ctrl-C), the kernel and every
    process it started, however detached, have been killed.
    """
    cwd = tempfile.mkdtemp(prefix="nst-grade-kernel-")
    supervisors: list[subprocess.Popen[bytes]] = []
    stopping = threading.Event()
    outcome: list[NotebookRun | BaseException] = []

    def work() -> None:
        try:
            outcome.append(asyncio.run(_run(nb, cwd, cell_timeout, total_timeout, memory, supervisors, stopping)))
        except BaseException as error:
            outcome.append(error)

    # In a thread of its own, nbclient installs no signal handlers: its Ctrl-C handler would have
    # jupyter_client SIGKILL the supervisor, orphaning what the kernel started.
    thread = threading.Thread(target=work, name="nst-grade-kernel")
    thread.start()
    try:
        thread.join()
    except BaseException:  # Ctrl-C here: the supervisor ends the kernel and all it started, then the run winds down
        stopping.set()
        for supervisor in supervisors:
            confine.stop(supervisor)
        thread.join()
        raise
    finally:
        shutil.rmtree(cwd, ignore_errors=True)
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]


__all__ = ["CELL_TIMEOUT", "TOTAL_TIMEOUT", "NotebookRun", "run_notebook"]
