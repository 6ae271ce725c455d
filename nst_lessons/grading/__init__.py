"""Autograded exercises: the in-notebook checks, the grader, and the student-notebook generator.

- :func:`check` (:mod:`~.checks`): ``check("gram_matrix", gram_matrix)`` in a notebook runs the
  public cases (and the instructor's hidden ones where ``$NST_LESSONS_HIDDEN_CASES`` is set) and
  says in words what is wrong.
- :mod:`~.grader`: ``nst-lessons grade`` runs a submission in a fresh kernel, tests its answers on
  hidden cases (the instructor's file, or the shipped ones: :mod:`~.cases`) in a sandboxed process
  (:mod:`~.sandbox`, :mod:`~.worker`) and writes Gradescope's results.json.
- :mod:`~.notebooks`: ``nst-lessons release`` writes the student notebooks from the instructor's.
"""

from typing import Any

__all__ = ["CheckFailed", "check"]


def __getattr__(name: str) -> Any:
    # Imported on first use: the sandbox worker lives in this package and must not load the
    # reference answers (nor torch) that the checks import.
    if name in __all__:
        from nst_lessons.grading import checks

        return getattr(checks, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
