"""The sandbox side of grading: run a submission's answer cells, then its functions on the hidden cases.

Started by :mod:`nst_lessons.grading.sandbox` as ``python -m nst_lessons.grading.worker`` in an
empty temporary directory, it reads a JSON request on stdin::

    {"cells": [{"id": grade_id, "source": code}, ...], "exercises": [name, ...],
     "hidden": {"seeds": [int, ...], "extra": {name: [shape, ...]}}}

and reports through files in its working directory:

- ``progress``: a line before each step (``cell <i>``, ``exercise <name>``), so the grader can
  tell which step hung or ended the process;
- ``cells.json``: the error each answer cell raised at the top level, if any;
- ``<name>.npz``: what exercise ``name``'s function returned on each case
  (:func:`~nst_lessons.grading.observe.save_observations`).

Nothing written here is trusted: the grader rebuilds the cases and judges the values itself, so
code that forges these files can at most hand in answers, which is what it was asked to do.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Any

from nst_lessons.grading.cases import call, hidden_cases_from_json
from nst_lessons.grading.observe import ANSWER_CELL_PREFIX, describe_error, observe, save_observations

PREAMBLE = "import numpy as np\n"
"""What answer cells may take for granted: the notebook's setup cell, minus the check function."""


def main() -> None:
    request = json.load(sys.stdin)
    hidden = hidden_cases_from_json(request["hidden"], "from the grader")
    progress = open("progress", "a", buffering=1)  # line-buffered: each step is on disk before it runs
    namespace: dict[str, Any] = {"__name__": "__answers__"}
    exec(PREAMBLE, namespace)
    # A function is taken right after its own cell ran, so that a later cell rebinding the name
    # (say, importing the reference) cannot stand in for it.
    functions: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for i, cell in enumerate(request["cells"]):
        progress.write(f"cell {i}\n")
        try:
            exec(compile(cell["source"], f"{ANSWER_CELL_PREFIX}{cell['id']}>", "exec"), namespace)
        except (Exception, SystemExit) as error:
            errors[cell["id"]] = describe_error(error)
        if cell["id"] in request["exercises"]:
            functions[cell["id"]] = namespace.get(cell["id"])
    Path("cells.json").write_text(json.dumps(errors))
    for name in request["exercises"]:
        progress.write(f"exercise {name}\n")
        fn = functions.get(name)
        if not callable(fn):
            save_observations(Path(f"{name}.npz"), f"the answer cell '{name}' does not define the function {name}")
            continue
        cases = hidden.cases(name)
        save_observations(
            Path(f"{name}.npz"), [observe(functools.partial(call, name, fn, case), case.args) for case in cases]
        )
    progress.write("done\n")


if __name__ == "__main__":
    main()
