"""Call a student's function and record what happened, in a form that survives the trip from the
sandbox process to the grader: numpy arrays and plain Python values, never pickle.

What a call returned is *normalised* first (arrays copied, a torch tensor marked as such, anything
unexpected reduced to its type name), so the in-notebook ``check()`` and the grader judge exactly
the same thing whether the value crossed a process boundary or not.
"""

from __future__ import annotations

import io
import json
import os
import stat
import traceback
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ANSWER_CELL_PREFIX = "<answer cell "
"""Filename under which the sandbox compiles each answer cell, so errors can name their line."""

MAX_ITEMS = 16  # longest tuple, list or dict kept; a longer one is only described
MAX_TEXT = 300  # longest string kept
MAX_RESULT_BYTES = 256 * 2**20  # largest result file the grader will read (the sandbox's file size limit)


@dataclass(frozen=True)
class Torch:
    """A ``torch.Tensor`` came back; its values, for the message."""

    array: np.ndarray


@dataclass(frozen=True)
class Other:
    """Something that is neither a number, an array nor a container: only its type is kept."""

    type_name: str


@dataclass
class Observation:
    """What one call of a student's function did.

    Attributes:
        value: the normalised return value (see :func:`normalise`), None after an error.
        error: ``"ValueError: message (line 4 of the answer cell)"`` if the call raised.
        mutated: names of the input arrays the call modified in place.
        exception: the exception itself, in-process only (``check()`` chains it), never serialised.
    """

    value: Any = None
    error: str | None = None
    mutated: tuple[str, ...] = ()
    exception: BaseException | None = field(default=None, compare=False, repr=False)


def normalise(value: Any, depth: int = 0) -> Any:
    """``value`` reduced to: None, float, str, np.ndarray (numeric), :class:`Torch`, :class:`Other`,
    or tuples, lists and str-keyed dicts of these."""
    if depth > 4:
        return Other("deeply nested value")
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        return Other("bool")
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    if isinstance(value, str):
        return value[:MAX_TEXT]
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biufc":
            return Other(f"numpy array of dtype {value.dtype}")
        return np.array(value, copy=True)
    if type(value).__module__.split(".")[0] == "torch" and hasattr(value, "detach"):
        try:
            return Torch(np.array(value.detach().cpu().numpy(), copy=True))
        except Exception:  # a tensor numpy cannot hold (e.g. bfloat16): the type is what matters
            return Torch(np.zeros(0))
    if isinstance(value, (tuple, list)):
        if len(value) > MAX_ITEMS:
            return Other(f"{type(value).__name__} of length {len(value)}")
        return type(value)(normalise(item, depth + 1) for item in value)
    if isinstance(value, dict):
        if len(value) > MAX_ITEMS or not all(isinstance(k, str) for k in value):
            return Other("dict")
        return {k: normalise(v, depth + 1) for k, v in value.items()}
    return Other(f"{type(value).__module__}.{type(value).__qualname__}".removeprefix("builtins."))


def describe_error(error: BaseException) -> str:
    """``"TypeError: message"``, with the line of the answer cell where it was raised, if any."""
    text = f"{type(error).__name__}: {str(error)[:MAX_TEXT]}".rstrip(": ")
    frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename.startswith(ANSWER_CELL_PREFIX)]
    if frames:
        text += f" (line {frames[-1].lineno} of the answer cell)"
    return text


def _snapshot(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, dict) and value and all(isinstance(v, np.ndarray) for v in value.values()):
        return {k: v.copy() for k, v in value.items()}
    return None


def _unchanged(before: Any, after: Any) -> bool:
    if isinstance(before, np.ndarray):
        return isinstance(after, np.ndarray) and np.array_equal(before, after, equal_nan=True)
    return (
        isinstance(after, dict)
        and before.keys() == after.keys()
        and all(_unchanged(before[k], after[k]) for k in before)
    )


def observe(call: Callable[[], Any], inputs: Mapping[str, Any]) -> Observation:
    """Run ``call()`` (a student's function applied to ``inputs``) and record what it did.

    ``inputs`` are the very objects the call receives, so modifying them in place shows up in
    :attr:`Observation.mutated`.  ``SystemExit`` counts as an error like any other, so
    ``sys.exit()`` inside an answer ends only that call.
    """
    before = {name: _snapshot(value) for name, value in inputs.items()}
    try:
        value = normalise(call())
    except (Exception, SystemExit) as error:
        return Observation(error=describe_error(error), exception=error)
    mutated = tuple(
        name for name, snap in before.items() if snap is not None and not _unchanged(snap, inputs[name])
    )
    return Observation(value=value, mutated=mutated)


# --------------------------------------------------------------------------- files


def _encode(value: Any, arrays: list[np.ndarray]) -> Any:
    """A JSON tree for a normalised value; arrays are appended to ``arrays`` and referenced by index."""
    if value is None or isinstance(value, (float, str)):
        return value
    if isinstance(value, np.ndarray):
        arrays.append(value)
        return {"array": len(arrays) - 1}
    if isinstance(value, Torch):
        arrays.append(value.array)
        return {"torch": len(arrays) - 1}
    if isinstance(value, Other):
        return {"other": value.type_name}
    if isinstance(value, (tuple, list)):
        return {type(value).__name__: [_encode(item, arrays) for item in value]}
    return {"dict": {k: _encode(v, arrays) for k, v in value.items()}}


def _decode(tree: Any, arrays: Mapping[str, np.ndarray], depth: int = 0) -> Any:
    """The inverse of :func:`_encode`; raises ``ValueError`` on anything :func:`_encode` cannot write."""
    if depth > 8:
        raise ValueError("nested too deeply")
    if tree is None or isinstance(tree, (float, str)):
        return tree
    if isinstance(tree, int) and not isinstance(tree, bool):
        return float(tree)
    if not (isinstance(tree, dict) and len(tree) == 1):
        raise ValueError(f"unexpected {type(tree).__name__}")
    (tag, content), = tree.items()
    if tag in ("array", "torch"):
        array = arrays[f"a{int(content)}"]
        if array.dtype.kind not in "biufc":
            raise ValueError(f"array of dtype {array.dtype}")
        return array if tag == "array" else Torch(array)
    if tag == "other" and isinstance(content, str):
        return Other(content[:MAX_TEXT])
    if tag in ("tuple", "list") and isinstance(content, list) and len(content) <= MAX_ITEMS:
        items = [_decode(item, arrays, depth + 1) for item in content]
        return tuple(items) if tag == "tuple" else items
    if tag == "dict" and isinstance(content, dict) and len(content) <= MAX_ITEMS:
        return {str(k): _decode(v, arrays, depth + 1) for k, v in content.items()}
    raise ValueError(f"unexpected tag {tag!r}")


def save_observations(path: Path, observations: list[Observation] | str) -> None:
    """Write one exercise's observations (or why there are none) to ``path`` (.npz), atomically."""
    arrays: list[np.ndarray] = []
    if isinstance(observations, str):
        manifest: Any = {"missing": observations}
    else:
        manifest = [
            {"value": _encode(o.value, arrays), "error": o.error, "mutated": list(o.mutated)} for o in observations
        ]
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "wb") as f:
        np.savez(f, manifest=np.array(json.dumps(manifest)), **{f"a{i}": a for i, a in enumerate(arrays)})
    tmp.replace(path)


def read_file(path: Path, limit: int, *, tail: bool = False) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (with ``tail``: its last ``limit``).

    Files the sandbox leaves behind are not to be trusted: a link (to /dev/zero, say), a pipe, a
    directory or an oversized file raises ``ValueError`` instead of hanging or filling memory.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as error:
        raise ValueError(f"cannot open {path.name} ({error.strerror})") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{path.name} is not a regular file")
        if info.st_size > limit:
            if not tail:
                raise ValueError(f"{path.name} is larger than {limit} bytes")
            f.seek(info.st_size - limit)
        return f.read(limit)


def load_observations(path: Path) -> list[Observation] | str:
    """Read what :func:`save_observations` wrote.  The file comes from the sandbox, so it is read
    without pickle, with size limits, and anything malformed raises ``ValueError``."""
    data = read_file(path, MAX_RESULT_BYTES)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:  # refuse a zip bomb before numpy inflates it
            if sum(info.file_size for info in archive.infolist()) > MAX_RESULT_BYTES:
                raise ValueError("result file too large")
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (OSError, zipfile.BadZipFile, KeyError) as error:
        raise ValueError(f"unreadable result file ({type(error).__name__})") from None
    try:
        manifest = json.loads(str(arrays.pop("manifest")[()]))
        if isinstance(manifest, dict) and isinstance(manifest.get("missing"), str):
            return manifest["missing"][:MAX_TEXT]
        if not isinstance(manifest, list):
            raise ValueError("no observations")
        return [
            Observation(
                value=_decode(item["value"], arrays),
                error=None if item["error"] is None else str(item["error"])[: 2 * MAX_TEXT],
                mutated=tuple(str(name) for name in item["mutated"]),
            )
            for item in manifest
        ]
    except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as error:
        raise ValueError(f"malformed result file ({type(error).__name__})") from None


__all__ = [
    "ANSWER_CELL_PREFIX",
    "Observation",
    "Other",
    "Torch",
    "describe_error",
    "load_observations",
    "normalise",
    "observe",
    "read_file",
    "save_observations",
]
