"""Writing files safely: so that a reader never sees half of one (:func:`atomic_path`,
:func:`atomic_dir`), never over an input however its path is spelled (:func:`check_outputs`), and
never into a folder found unwritable only after the work (:func:`check_writable`)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
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


class SameFileError(ValueError):
    """An output would overwrite an input (or another output); the message is one line naming both."""


def _identity(path: str | os.PathLike[str]) -> tuple[str, tuple[int, int] | None]:
    """Where ``path`` resolves to, and the (device, inode) of the file there if there is one."""
    try:
        stat = os.stat(path)
    except OSError:  # not there (yet): where it resolves to decides
        return os.path.realpath(path), None
    return os.path.realpath(path), (stat.st_dev, stat.st_ino)


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether two paths name one file, however spelled: relative or absolute, through symbolic
    links or ``..``, or as two hard links to it (same device and inode). A path that does not exist
    yet is compared by where it resolves to."""
    (real_a, key_a), (real_b, key_b) = _identity(a), _identity(b)
    return real_a == real_b or (key_a is not None and key_a == key_b)


Named = tuple[str, str | os.PathLike[str]]
"""A path with what it is to the user, e.g. ``("the content image", "photo.jpg")``."""


def check_outputs(outputs: Iterable[Named], inputs: Iterable[Named]) -> None:
    """Refuse, before any work, an output that is an input or an earlier output, by
    :func:`same_file`'s rule (each path resolved once, so many inputs cost little).

    Raises:
        SameFileError: naming both, e.g. "the output out.png is the content image photo.jpg".
    """
    seen: dict[object, Named] = {}  # realpath strings and (device, inode) pairs, to what they belong to

    def add(named: Named) -> None:
        real, key = _identity(named[1])
        for identity in (real, key) if key is not None else (real,):
            seen.setdefault(identity, named)

    for named in inputs:
        add(named)
    for what, path in outputs:
        real, key = _identity(path)
        other = seen.get(real) or (seen.get(key) if key is not None else None)
        if other is not None:
            raise SameFileError(
                f"{what} {os.fspath(path)} is {other[0]} {os.fspath(other[1])} (the same file); "
                "an output never replaces an input: choose another name"
            )
        add((what, path))


def check_writable(folder: str | os.PathLike[str]) -> None:
    """Show that a file can be created in ``folder`` by creating and removing one, so that an
    unwritable output folder is found before the work rather than after it.

    Raises:
        PermissionError: one line naming the folder (an ``OSError``, as the failed write would be).
    """
    try:
        fd, name = tempfile.mkstemp(prefix=".nst-lessons-", suffix=".probe", dir=folder)
    except OSError as error:
        raise PermissionError(f"cannot write to the folder {os.fspath(folder)} ({error.strerror or error})") from None
    os.close(fd)
    os.unlink(name)
