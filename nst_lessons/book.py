"""The lessons as a static web site: ``nst-lessons book -o SITE``.

Each notebook is executed in a fresh kernel, in the mode this machine allows (:mod:`nst_lessons.lesson`:
the paper's sizes and the real weights on a GPU with internet, smaller sizes on a CPU, tiny images and
random weights in fast mode), and exported with nbconvert to one HTML page with its outputs: figures
embedded as data URIs, and formulas typeset by matplotlib's mathtext as embedded images (so that
the pages read offline; their TeX is the images' alt text). A banner at the top of
every page says in which mode, on which device and with which weights the page was built. The index
lists the notebooks in the order of ``notebooks/README.md`` (those it does not list come after, by
name). A notebook that fails still gets its page, with the outputs up to the failing cell and the
error, marked on the index; the others are built regardless.

The site is written into a temporary folder beside SITE and moved into place at the end, so SITE is
either the previous site or the complete new one. SITE may not exist yet, be empty, or hold an earlier
build (it has the file :data:`MARKER`); anything else is refused, as is a SITE inside the notebooks'
folder, which would mix outputs with inputs.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import html
import io
import os
import re
import shutil
import struct
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from nst_lessons.files import atomic_dir, check_writable
from nst_lessons.lesson import FAST_ENV, settings

MATHJAX_TO_MATHTEXT: tuple[tuple[str, str], ...] = (
    (r"\\[dt]?frac\s*([0-9A-Za-z])([0-9A-Za-z])", r"\\frac{\1}{\2}"),  # \frac12 -> \frac{1}{2}
    (r"\\[dt]frac(?![A-Za-z])", r"\\frac"),
    (r"\\sqrt\s*([0-9A-Za-z])", r"\\sqrt{\1}"),  # \sqrt2 -> \sqrt{2}
    (r"\\le(?![A-Za-z])", r"\\leq"),
    (r"\\ge(?![A-Za-z])", r"\\geq"),
    (r"\\[lr]Vert(?![A-Za-z])", r"\\Vert"),
    (r"\\[Bb]igg?[lr]?(?![A-Za-z])", ""),  # delimiter sizes
    (r"\\texttt(?![A-Za-z])", r"\\mathtt"),
    (r"\\boxed(?![A-Za-z])", ""),
    (r"\\(begin|end)\{cases\}", ""),
    (r"\\\\", r"\\quad "),  # a line break (in cases)
    (r"&", " "),  # a column separator (in cases)
)
"""(pattern, replacement) pairs, applied in order, that turn the MathJax notation the notebooks use
into matplotlib's mathtext, which renders the site's formulas (and checks them in the tests)."""

CODE_PATTERN = re.compile(r"```.*?```|`[^`\n]*`", re.S)
MATH_PATTERN = re.compile(r"(?<![\\$])\$\$(.+?)\$\$|(?<![\\$])\$(?!\$)(.+?)(?<![\\$])\$", re.S)
"""``$$...$$`` (group 1) or ``$...$`` (group 2) in markdown, outside code (remove :data:`CODE_PATTERN` first)."""
MATH_DPI = 200

DEFAULT_SOURCE = Path("notebooks")
MARKER = ".nst-lessons-book"
"""A file in every built site: its presence lets a later build replace the folder."""
CELL_TIMEOUT = 1800.0
RANDOM_BANNER = "RANDOM WEIGHTS"

_MODE_TEXT = {
    "gpu": "on a GPU ({device}): the paper's image sizes and iteration counts",
    "cpu": "on a CPU: smaller images and fewer iterations than the paper's, chosen for a CPU",
    "fast": f"in fast mode ({FAST_ENV}=1): tiny images, a handful of iterations and random weights; "
    "the pictures show the mechanics only",
}


@dataclass
class Page:
    """One notebook's page.

    Attributes:
        source: the notebook file.
        html_name: the page's file name in the site.
        title: the notebook's first heading.
        seconds: how long executing it took.
        error: why it failed (one line), or None.
        random_weights: whether its figures came from random weights.
    """

    source: Path
    html_name: str
    title: str
    seconds: float = 0.0
    error: str | None = None
    random_weights: bool = False


def notebook_order(source: Path) -> list[Path]:
    """The lesson notebooks under ``source`` in the order of its README.md's links, then any the
    README does not link, by name. Only ``NN_*.ipynb`` files count as lessons."""
    lessons = {p.name: p for p in source.glob("[0-9][0-9]_*.ipynb")}
    readme = source / "README.md"
    linked = re.findall(r"\]\(([^)\s]+\.ipynb)\)", readme.read_text(encoding="utf-8")) if readme.is_file() else []
    ordered = [lessons[name] for name in dict.fromkeys(linked) if name in lessons]
    return ordered + sorted(set(lessons.values()) - set(ordered))


def select(notebooks: Sequence[Path], only: Sequence[str] | None) -> list[Path]:
    """The notebooks named by ``only`` (numbers such as ``07`` or file stems), in their order.

    Raises:
        ValueError: a name that matches no notebook.
    """
    if not only:
        return list(notebooks)
    chosen = []
    for name in only:
        matches = [p for p in notebooks if p.stem == name or p.name == name or p.name[:2] == name.zfill(2)]
        if not matches:
            raise ValueError(f"no notebook {name!r} in {', '.join(p.name[:2] for p in notebooks) or 'the folder'}")
        chosen += matches
    return [p for p in notebooks if p in chosen]


def _title(nb: NotebookNode, fallback: str) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            match = re.search(r"^#\s+(.+)$", cell.source, re.M)
            if match:
                return match.group(1).strip()
    return fallback


def mode_banner(mode: str, device: str, random_weights: bool) -> str:
    """The HTML line that heads every page: how the outputs below were made."""
    text = "Built " + _MODE_TEXT[mode].format(device=device)
    if random_weights and mode != "fast":
        text += "; VGG-19's real weights could not be loaded, so the figures come from random weights"
    elif not random_weights:
        text += ", with VGG-19's trained weights"
    colour = "#c00" if random_weights else "#226"
    return (
        f'<div class="nst-book-mode" style="border:2px solid {colour};padding:6px 10px;margin:8px 0;'
        f'font-weight:bold;color:{colour}">{html.escape(text)}.</div>'
    )


def to_mathtext(formula: str) -> str:
    """A formula of the notebooks in matplotlib's mathtext (:data:`MATHJAX_TO_MATHTEXT`), on one line."""
    tex = formula.replace("\n", " ")
    for pattern, replacement in MATHJAX_TO_MATHTEXT:
        tex = re.sub(pattern, replacement, tex)
    return tex


def formula_image(formula: str, display: bool) -> str | None:
    """``formula`` typeset by matplotlib as an embedded PNG ``<img>`` (centred on a line of its own
    when ``display``), its TeX as the alt text; None if mathtext cannot parse it."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.mathtext import math_to_image

    buffer = io.BytesIO()
    try:
        depth = math_to_image(
            f"${to_mathtext(formula)}$", buffer, prop=FontProperties(size=13 if display else 11.5, math_fontfamily="cm"),
            dpi=MATH_DPI, format="png",
        )  # fmt: skip
    except Exception:  # mathtext's parse errors have no common type; MathJax may still typeset it online
        return None
    data = buffer.getvalue()
    width, height = struct.unpack(">II", data[16:24])  # the PNG header's IHDR
    scale = 96 / MATH_DPI  # CSS pixels per image pixel: sharp on a high-resolution screen
    style = f"width:{width * scale:.1f}px;height:{height * scale:.1f}px;vertical-align:{-depth * scale:.1f}px"
    alt = html.escape(" ".join(formula.split()))
    img = f'<img class="nst-math" alt="{alt}" style="{style}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'
    return f'<span style="display:block;text-align:center;margin:0.5em 0">{img}</span>' if display else img


def typeset(markdown: str) -> str:
    """``markdown`` with every formula outside code replaced by its :func:`formula_image`, so that
    the pages show typeset formulas without a network (one that mathtext cannot parse stays TeX)."""
    pieces, last = [], 0
    for code in [*CODE_PATTERN.finditer(markdown), None]:
        end = code.start() if code else len(markdown)
        text = markdown[last:end]

        def image(match: re.Match[str]) -> str:
            display = match.group(1) is not None
            return formula_image(match.group(1) if display else match.group(2), display) or match.group(0)

        pieces.append(MATH_PATTERN.sub(image, text))
        if code:
            pieces.append(code.group(0))
            last = code.end()
    return "".join(pieces)


def _execute(nb: NotebookNode, cwd: Path, env: dict[str, str], timeout: float) -> str | None:
    """Run ``nb`` in place in a fresh kernel; the error (one line) if a cell failed."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    previous = {key: os.environ.get(key) for key in env}
    os.environ.update(env)  # the kernel inherits this process's environment
    try:
        NotebookClient(nb, timeout=int(timeout), kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    except CellExecutionError as error:
        return f"{error.ename}: {str(error.evalue).splitlines()[0] if error.evalue else ''}"[:300]
    except Exception as error:  # a dead kernel, a timeout: a report, never a crash of the build
        return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:300]
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return None


def _uses_random_weights(nb: NotebookNode) -> bool:
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if RANDOM_BANNER in data.get("text/html", "") or RANDOM_BANNER in output.get("text", ""):
                return True
    return False


def render_page(nb: NotebookNode, page: Page, banner: str) -> str:
    """The notebook as one HTML page, headed by a link to the index and the mode ``banner``."""
    from nbconvert import HTMLExporter

    head = ['<p><a href="index.html">← all lessons</a></p>', banner]
    if page.error:
        head.append(
            '<div class="nst-book-error" style="border:2px solid #c00;padding:6px 10px;color:#900">'
            f"This notebook failed while the site was built: {html.escape(page.error)}. "
            "The outputs below stop at the failing cell.</div>"
        )
    nb = nbformat.from_dict(nb)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = typeset(cell.source)
    nb.cells.insert(0, nbformat.v4.new_markdown_cell("\n".join(head)))
    nb.cells[0]["id"] = "nst-book-banner"
    body, _ = HTMLExporter(template_name="lab").from_notebook_node(nb, resources={"metadata": {"name": page.title}})
    return body


def render_index(pages: Sequence[Page], banner: str) -> str:
    """The index page: the lessons in order, each linked, failures marked."""
    items = []
    for page in pages:
        state = (
            f' <span style="color:#c00">(failed: {html.escape(page.error)})</span>'
            if page.error
            else f' <span style="color:#666">({page.seconds:.0f} s)</span>'
        )
        items.append(f'<li><a href="{html.escape(page.html_name)}">{html.escape(page.title)}</a>{state}</li>')
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>nst_lessons: neural style transfer, the lessons</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:48em;margin:2em auto;padding:0 1em;line-height:1.5}"
        "li{margin:0.3em 0}</style></head><body>\n"
        "<h1>Neural style transfer, the lessons</h1>\n"
        f"{banner}\n"
        "<p>Each page is a notebook of the <code>nst_lessons</code> package, executed when the site was built; "
        "the notebooks themselves are in the repository's <code>notebooks/</code> folder.</p>\n"
        f"<ol>\n{chr(10).join(items)}\n</ol>\n</body></html>\n"
    )


def check_site(site: Path, source: Path) -> None:
    """A ``ValueError`` unless ``site`` may receive a build: absent, empty, or an earlier build, and
    outside the notebooks' folder; a ``PermissionError`` if no file can be created beside it."""
    resolved, src = site.resolve(), source.resolve()
    if resolved == src or src in resolved.parents:
        raise ValueError(f"the site {site} would be inside the notebooks' folder {source}; write it elsewhere")
    if resolved in src.parents:
        raise ValueError(f"the site {site} would replace a folder that holds the notebooks ({source})")
    if site.exists() and not site.is_dir():
        raise ValueError(f"{site} exists and is not a folder")
    if site.is_dir() and any(site.iterdir()) and not (site / MARKER).is_file():
        raise ValueError(f"{site} is not empty and is not an earlier site built by nst-lessons book; choose another folder")
    check_writable(resolved.parent)  # the build is made beside the site and renamed into place


@contextlib.contextmanager
def _replacing(site: Path) -> Iterator[Path]:
    """A temporary folder that becomes ``site`` once the block succeeds; an earlier build stays in
    place until then, and is put back if the swap fails."""
    holder = Path(tempfile.mkdtemp(prefix=f".{site.name}.", suffix=".old", dir=site.parent))
    aside = holder / site.name
    try:
        with atomic_dir(site) as tmp:
            yield tmp
            if site.exists():
                os.replace(site, aside)  # atomic_dir moves the new site in right after this
    except BaseException:
        if aside.exists() and not site.exists():
            os.replace(aside, site)
        raise
    finally:
        shutil.rmtree(holder, ignore_errors=True)


def build_site(
    source: Path, site: Path, *, only: Sequence[str] | None = None, fast: bool = False, timeout: float = CELL_TIMEOUT
) -> list[Page]:
    """Execute the notebooks of ``source`` and write the site to ``site``; returns the pages, with
    the failures marked. The notebooks themselves are read, never written."""
    notebooks = select(notebook_order(source), only)
    if not notebooks:
        raise ValueError(f"no lesson notebooks (NN_*.ipynb) in {source}")
    check_site(site, source)
    fast = fast or os.environ.get(FAST_ENV) == "1"
    env = {FAST_ENV: "1"} if fast else {}
    if fast:
        mode, device = "fast", "cpu"
    else:
        s = settings()
        mode, device = s.mode, torch_device_name(s.device)
    pages: list[Page] = []
    with _replacing(site) as out:
        for path in notebooks:
            nb = nbformat.read(path, as_version=4)
            page = Page(path, f"{path.stem}.html", _title(nb, path.stem))
            print(f"executing {path.name} ...", file=sys.stderr, flush=True)
            start = time.monotonic()
            page.error = _execute(nb, path.parent, env, timeout)
            page.seconds = time.monotonic() - start
            page.random_weights = _uses_random_weights(nb) or mode == "fast"
            banner = mode_banner(mode, device, page.random_weights)
            (out / page.html_name).write_text(render_page(nb, page, banner), encoding="utf-8")
            print(f"  {'FAILED: ' + page.error if page.error else 'built'} in {page.seconds:.0f} s", file=sys.stderr)
            pages.append(page)
        index_banner = mode_banner(mode, device, any(p.random_weights for p in pages))
        (out / "index.html").write_text(render_index(pages, index_banner), encoding="utf-8")
        (out / MARKER).write_text("built by nst-lessons book\n", encoding="utf-8")
    return pages


def torch_device_name(device: object) -> str:
    """A readable name for a torch device: the GPU's model for CUDA."""
    import torch

    dev = torch.device(device)  # type: ignore[arg-type]
    return torch.cuda.get_device_name(dev) if dev.type == "cuda" else str(dev)


def add_book_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``book``."""
    p = subparsers.add_parser(
        "book",
        help="execute the lesson notebooks and write them as a static web site",
        description=(
            "Execute every lesson notebook in a fresh kernel and write one HTML page per notebook, with its "
            "outputs and figures, and an index in the order of the notebooks' README. The mode is this "
            "machine's (GPU: the paper's sizes; CPU: smaller; the real weights when they can be downloaded) "
            f"unless --fast or {FAST_ENV}=1; every page says which. A notebook that fails is marked, the "
            "others are built, and the exit status is 1."
        ),
    )
    p.add_argument("-o", "--output", type=Path, required=True, metavar="SITE", help="the folder to write the site to")
    p.add_argument(
        "--notebooks", type=Path, default=DEFAULT_SOURCE, metavar="DIR", help="the lessons' folder (default: %(default)s)"
    )
    p.add_argument("--only", nargs="+", metavar="NN", help="build only these notebooks (numbers such as 07, or names)")
    p.add_argument("--fast", action="store_true", help=f"fast mode ({FAST_ENV}=1): tiny images, random weights, minutes in all")
    p.add_argument(
        "--cell-timeout", type=float, default=CELL_TIMEOUT, metavar="S", help="seconds one cell may run (default: %(default)g)"
    )
    p.set_defaults(func=run_book)


def run_book(args: argparse.Namespace) -> int:
    if not args.notebooks.is_dir():
        raise ValueError(f"no such folder: {args.notebooks}")
    if not args.cell_timeout > 0:
        raise ValueError(f"--cell-timeout must be positive, got {args.cell_timeout:g}")
    pages = build_site(args.notebooks, args.output, only=args.only, fast=args.fast, timeout=args.cell_timeout)
    failed = [p for p in pages if p.error]
    print(f"wrote {len(pages)} pages and index.html to {args.output}" + (f"; {len(failed)} failed" if failed else ""))
    for page in failed:
        print(f"failed: {page.source.name}: {page.error}", file=sys.stderr)
    return 1 if failed else 0


__all__ = [
    "MARKER",
    "Page",
    "add_book_parser",
    "build_site",
    "MATHJAX_TO_MATHTEXT",
    "check_site",
    "formula_image",
    "mode_banner",
    "notebook_order",
    "render_index",
    "render_page",
    "run_book",
    "select",
    "to_mathtext",
    "typeset",
]
