"""Writing files so that a reader never sees half of one."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(dest: Path) -> Iterator[Path]:
    """A temporary path beside ``dest`` that becomes ``dest`` only if the block succeeds.

    The temporary file is in the same folder, so the final ``os.replace`` is atomic: readers see the
    old file or the new one, never a partial one, and a failure (or Ctrl-C) leaves nothing behind.
    The file gets the usual permissions (0666 less the umask), not mkstemp's owner-only 0600, so a
    shared cache stays readable by everyone it is shared with.
    """
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_dir(dest: Path) -> Iterator[Path]:
    """A temporary folder beside ``dest`` that becomes ``dest`` (absent or empty) only if the block succeeds.

    As :func:`atomic_path` for a folder of files: readers see no folder or the complete one, a
    failure (or Ctrl-C) removes the temporary folder and all it holds, and the folder gets the usual
    permissions (0777 less the umask), not mkdtemp's owner-only 0700.
    """
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
