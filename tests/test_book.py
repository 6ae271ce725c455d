"""``nst-lessons book``: two small lesson notebooks and a failing one, executed in fast mode and
written as a site; the pages carry the title, the figures, the mode banner and the index links, a
failure is reported without stopping the others, and no input is ever overwritten."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat
import pytest

from nst_lessons.book import MARKER
from nst_lessons.cli import main

# matplotlib only, so that each kernel starts in a second or two; the lessons' lesson.setup reads
# the same variable.
FIGURE = """import os
import matplotlib.pyplot as plt
plt.plot([0, 1], [1, 0])
plt.title("{name}")
plt.show()
print("NST_LESSONS_FAST =", os.environ.get("NST_LESSONS_FAST"))"""


def lesson_notebook(path: Path, title: str, code: str) -> None:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(f"# {title}\n\nThe loss is $\\alpha\\,\\mathcal{{L}}$."),
                                         nbformat.v4.new_code_cell(code)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


@pytest.fixture
def lessons(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("JUPYTER_PATH", str(Path(sys.prefix) / "share" / "jupyter"))
    monkeypatch.delenv("NST_LESSONS_FAST", raising=False)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(var, "1")
    folder = tmp_path / "notebooks"
    folder.mkdir()
    lesson_notebook(folder / "01_first.ipynb", "01 · First", FIGURE.format(name="first"))
    lesson_notebook(folder / "02_second.ipynb", "02 · Second", FIGURE.format(name="second"))
    lesson_notebook(folder / "03_broken.ipynb", "03 · Broken", "raise RuntimeError('this lesson is broken')")
    # The README lists 02 before 01; 03 is not listed and comes last.
    (folder / "README.md").write_text("| [02 Second](02_second.ipynb) | ... |\n| [01 First](01_first.ipynb) | ... |\n")
    return folder


def test_the_book_builds_pages_in_fast_mode_and_reports_a_failure(
    lessons: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = {p.name: p.read_bytes() for p in lessons.iterdir()}
    site = tmp_path / "site"
    assert main(["book", "-o", str(site), "--notebooks", str(lessons), "--fast"]) == 1  # one notebook failed
    out, err = capsys.readouterr()
    assert "wrote 3 pages" in out and "1 failed" in out and "failed: 03_broken.ipynb: RuntimeError: this lesson is broken" in err
    assert {p.name: p.read_bytes() for p in lessons.iterdir()} == before  # the notebooks are untouched

    index = (site / "index.html").read_text()
    assert re.findall(r'href="([^"]+)"', index) == ["02_second.html", "01_first.html", "03_broken.html"]
    assert "Built in fast mode" in index and "failed: RuntimeError: this lesson is broken" in index
    for name, title in (("01_first", "01 · First"), ("02_second", "02 · Second")):
        page = (site / f"{name}.html").read_text()
        assert f"<title>{title}</title>" in page
        assert "Built in fast mode (NST_LESSONS_FAST=1)" in page and 'href="index.html"' in page
        embedded = re.findall(r'<img ([^>]*)src="data:image/png;base64,[A-Za-z0-9+/=]{200,}', page)
        assert len([img for img in embedded if "nst-math" not in img]) == 1  # the figure
        assert "NST_LESSONS_FAST = 1" in page
        # the formula typeset as an embedded image, its TeX the alt text: readable offline
        maths = re.findall(r'<img [^>]*class="nst-math"[^>]*>', page)
        assert any(r'alt="\alpha\,\mathcal{L}"' in m and 'src="data:image/png;base64,' in m and 'style="width:' in m for m in maths)
    broken = (site / "03_broken.html").read_text()
    assert "This notebook failed while the site was built" in broken and "this lesson is broken" in broken


def test_a_rebuild_replaces_the_site_and_bad_sites_are_refused(
    lessons: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site = tmp_path / "site"
    assert main(["book", "-o", str(site), "--notebooks", str(lessons), "--fast", "--only", "1"]) == 0
    assert sorted(p.name for p in site.iterdir()) == [MARKER, "01_first.html", "index.html"]
    assert main(["book", "-o", str(site), "--notebooks", str(lessons), "--fast", "--only", "02"]) == 0
    assert sorted(p.name for p in site.iterdir()) == [MARKER, "02_second.html", "index.html"]  # replaced, not mixed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notebooks", "site"]  # no temporary folders left
    capsys.readouterr()

    other = tmp_path / "holiday_photos"
    other.mkdir()
    (other / "beach.jpg").write_bytes(b"not ours")
    cases = [
        (["-o", str(lessons / "site")], "inside the notebooks' folder"),
        (["-o", str(tmp_path)], "holds the notebooks"),
        (["-o", str(other)], "is not empty and is not an earlier site"),
        (["-o", str(site), "--only", "07"], "no notebook '07'"),
        (["-o", str(site), "--notebooks", str(tmp_path / "missing")], "no such folder"),
    ]
    for argv, message in cases:
        notebooks = [] if "--notebooks" in argv else ["--notebooks", str(lessons)]
        assert main(["book", *argv, *notebooks, "--fast"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("nst-lessons: error:") and message in err and err.count("\n") == 1, err
    assert (other / "beach.jpg").read_bytes() == b"not ours" and not (lessons / "site").exists()
