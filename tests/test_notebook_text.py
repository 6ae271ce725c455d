"""Every notebook's text renders: no control characters in any cell, and every formula parses.

A notebook cell written from a non-raw Python string silently loses its LaTeX: ``"\\alpha"``
becomes BEL + "lpha", ``"\\beta"`` backspace + "eta", ``"\\times"`` a tab, and ``"\\vec"``,
``"\\frac"``, ``"\\nabla"`` a line break followed by "ec", "rac", "abla". The cells of every
notebook under notebooks/ (the lessons and the exercises, including notebooks added later) are
checked for both, and each ``$...$`` and ``$$...$$`` is parsed with matplotlib's mathtext, after
translating the few MathJax commands mathtext lacks (:data:`nst_lessons.book.MATHJAX_TO_MATHTEXT`,
which the web site of ``nst-lessons book`` typesets its formulas with).
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from pathlib import Path

import nbformat
import pytest
from matplotlib.mathtext import MathTextParser

from nst_lessons.book import CODE_PATTERN, MATH_PATTERN, to_mathtext

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(p for p in NOTEBOOKS_DIR.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)

# What a line break eats of a command: "\v" (vec, varepsilon, ...), "\f" (frac, forall) and "\n"
# (nabla, neq, newline) all end a line when written without a raw string.
_EATEN = re.compile(r"\n[ \t]*(ec|ar(epsilon|phi|theta|rho)|dots|rac|orall|abla|eq|ewline)(?![A-Za-z])")


@lru_cache(maxsize=1)
def _parser() -> MathTextParser:
    return MathTextParser("path")


def control_characters(text: str) -> list[str]:
    """The control characters in ``text`` other than the line break, as their escapes."""
    return sorted({repr(c) for c in text if c != "\n" and unicodedata.category(c) == "Cc"})


def formulas(markdown: str) -> list[str]:
    """The contents of every ``$...$`` and ``$$...$$`` in ``markdown``, outside code spans."""
    text = CODE_PATTERN.sub("", markdown)
    return [m.group(1) or m.group(2) for m in MATH_PATTERN.finditer(text)]


def formula_problem(formula: str) -> str | None:
    """Why ``formula`` would not render, or None."""
    eaten = _EATEN.search(formula)
    if eaten:
        return f"a line starts with {eaten.group(1)!r}: a command lost its backslash to a line break"
    if bad := control_characters(formula):
        return f"control characters {', '.join(bad)}"
    try:
        _parser().parse(f"${to_mathtext(formula)}$")
    except ValueError as error:
        return f"mathtext cannot parse it: {str(error).splitlines()[-1]}"
    return None


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(NOTEBOOKS_DIR)))
def test_no_control_characters(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    bad = {i: control_characters(c.source) for i, c in enumerate(nb.cells) if c.cell_type in ("markdown", "code")}
    assert not {i: chars for i, chars in bad.items() if chars}, "cells with control characters (non-raw strings?)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(NOTEBOOKS_DIR)))
def test_every_formula_parses(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    problems = [
        (i, formula[:60], problem)
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "markdown"
        for formula in formulas(cell.source)
        if (problem := formula_problem(formula))
    ]
    assert not problems


def test_the_check_catches_formulas_written_without_raw_strings() -> None:
    # what "$\vec y$ and $\alpha/\beta$, $$\frac12 \times 2$$, $\nabla f$" becomes without the r prefix
    broken = "$\x0bec y$ and $\x07lpha/\x08eta$, $$\x0crac12 \x09imes 2$$, $\nabla f$"
    assert [formula_problem(f) is not None for f in formulas(broken)] == [True, True, True, True]
    assert control_characters(broken) == ["'\\t'", "'\\x07'", "'\\x08'", "'\\x0b'", "'\\x0c'"]
    fixed = r"Given $\vec y$ and $\alpha/\beta$, $$\hat x = \tfrac12 \lVert x - y \rVert^2 \times 2$$ and `$HOME`"
    assert formulas(fixed) == [r"\vec y", r"\alpha/\beta", r"\hat x = \tfrac12 \lVert x - y \rVert^2 \times 2"]
    assert all(formula_problem(f) is None for f in formulas(fixed)) and not control_characters(fixed)


def test_unbalanced_or_unknown_latex_is_reported() -> None:
    assert formula_problem(r"\frac{1}{2") is not None
    assert formula_problem(r"\notacommand x") is not None
    assert formula_problem(r"x \le y, \; \Big( \sum_i x_i \Big)") is None
