"""Verified downloads: the bytes reach their final name only once their SHA-256 matches."""

from __future__ import annotations

import hashlib
import sys
import urllib.request
from pathlib import Path

from nst_lessons.files import atomic_path


class ChecksumError(OSError):
    """A downloaded file's SHA-256 is not the pinned one; the file was discarded."""


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, dest: Path, *, sha256: str, progress: bool = True) -> Path:
    """Download ``url`` (http(s) or file://) to ``dest`` if its SHA-256 starts with ``sha256``.

    ``sha256`` is a full hex digest or a prefix of one (torchvision names its checkpoints with
    the first 8 hex digits). The bytes go to a temporary file beside ``dest``, which is moved
    into place only after the check, so an interrupted or corrupt download never appears under
    the final name and a failed one leaves nothing behind.

    Raises:
        ChecksumError: the hash does not match.
        urllib.error.URLError, http.client.HTTPException, OSError: the download failed.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with atomic_path(dest) as tmp, open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
        total = int(response.headers.get("Content-Length") or 0)
        done = 0
        for block in iter(lambda: response.read(1 << 20), b""):
            out.write(block)
            digest.update(block)
            done += len(block)
            if progress and total:
                print(f"\rdownloading {dest.name}: {done / total:6.1%}", end="", file=sys.stderr)
        if progress and total:
            print(file=sys.stderr)
        if total and done != total:
            raise OSError(f"download of {url} stopped after {done} of {total} bytes")
        if not digest.hexdigest().startswith(sha256.lower()):
            raise ChecksumError(
                f"checksum mismatch for {url}: SHA-256 {digest.hexdigest()[:16]}... is not the "
                f"pinned {sha256[:16]}...; the file was discarded"
            )
        out.flush()
    return dest
