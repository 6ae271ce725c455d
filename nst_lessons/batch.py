"""Batch runs: many content images, one style, the same settings, one folder of results.

    nst-lessons transfer CONTENT [CONTENT ...] STYLE -o FOLDER [options]

Each CONTENT is an image file, an example name or a folder (its image files, not its subfolders).
Every content image is stylised with the same settings and written to ``FOLDER/<its file name>``:
the same name and extension (so ``holiday/beach.jpg`` becomes ``FOLDER/beach.jpg``, re-encoded as
JPEG), or ``.png`` in place of an extension Pillow cannot write. VGG-19 is loaded once, and the
style targets A^l are computed once (:func:`run_batch` says when they cannot be).

What can go wrong with one image does not stop the others: an unreadable content file, one too
small, or one that does not fit in memory is reported on one line naming it and skipped; the exit
status is then 1. An existing output is kept (and reported as skipped) unless ``overwrite``; every
result is written to a temporary file and renamed, so a folder never holds half an image. Ctrl-C
stops the batch without writing the image in progress.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from nst_lessons.data import resolve_image
from nst_lessons.images import ImageError, ImageLike, check_output_path, load_image, save_image
from nst_lessons.pyramid import pyramid_transfer
from nst_lessons.targets import StyleTargets, as_list, shared_targets
from nst_lessons.transfer import Network, TransferResult, load_networks, pop_legacy, style_transfer

_TARGET_OPTIONS = ("style_size", "style_scale", "style_blend_weights", "masks")
"""Options that shape the style targets: given to :meth:`StyleTargets.compute` once, not to each run."""


def is_batch_output(output: str | os.PathLike[str]) -> bool:
    """True when ``-o`` names a folder: an existing one, or a path without a suffix.

    Any other path is one image (single mode), where an unknown suffix such as ``.psd`` is then
    reported as a format that cannot be written; a new folder named ``results.v2`` must be created first.
    """
    output = Path(output)
    return output.is_dir() or not output.suffix


def resolve_content(name: str | os.PathLike[str]) -> Path:
    """The content image of a single-image run (:func:`~nst_lessons.data.resolve_image`); a folder
    is refused with the hint that a batch needs ``-o`` to name a folder (:func:`is_batch_output`)."""
    if Path(name).is_dir():
        raise ImageError(f"{name} is a folder: give -o a folder (no suffix) for a batch")
    return resolve_image(name)


def image_files(inputs: Iterable[str | os.PathLike[str]], recursive: bool = False) -> list[Path]:
    """The images named by ``inputs``, in order: each folder's files whose extension Pillow reads
    (sorted by path, hidden files left out; with ``recursive``, those of its subfolders too), and
    each file or example name as it is.

    Raises:
        ImageError: an input that is neither a folder, a file nor an example name.
    """
    readable = set(Image.registered_extensions())
    files: list[Path] = []
    for item in inputs:
        if Path(item).is_dir():
            found = Path(item).rglob("*") if recursive else Path(item).iterdir()
            visible = (p for p in found if not any(part.startswith(".") for part in p.relative_to(item).parts))
            files += sorted(p for p in visible if p.is_file() and p.suffix.lower() in readable)
        else:
            files.append(resolve_image(item))
    return files


def check_results_folder(out_dir: str | os.PathLike[str]) -> Path:
    """``out_dir`` as a Path, after checking that it is a folder or can be made one (its parent exists).

    Raises:
        ImageError: it is a file, or its parent folder does not exist (one line).
    """
    out_dir = Path(out_dir)
    if not out_dir.is_dir() and (out_dir.exists() or not out_dir.parent.is_dir()):
        reason = "it is a file" if out_dir.exists() else f"folder {out_dir.parent} does not exist"
        raise ImageError(f"cannot write results to {out_dir}: {reason}")
    return out_dir


def output_name(content: Path) -> str:
    """The result's file name: the content's, or its stem + ``.png`` if Pillow cannot write that format."""
    try:
        check_output_path(Path(content.name))
    except ImageError:
        return content.stem + ".png"
    return content.name


@dataclass
class BatchReport:
    """What :func:`run_batch` did with each content image.

    Attributes:
        written: (content, output) pairs, in order.
        kept: (content, existing output) pairs left alone because ``overwrite`` was off.
        failed: (content, one-line reason) pairs.
    """

    written: list[tuple[Path, Path]] = field(default_factory=list)
    kept: list[tuple[Path, Path]] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)


def run_batch(
    contents: Sequence[str | os.PathLike[str]],
    style: ImageLike | Sequence[ImageLike],
    out_dir: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    levels: Sequence[tuple[int, int]] | None = None,
    network: Network = "vgg19",
    style_network: Network | None = None,
    device: str | torch.device | None = None,
    on_result: Callable[[Path, Path, TransferResult], None] | None = None,
    **options: object,
) -> BatchReport:
    """Stylise every image of ``contents`` with ``style`` and write the results to ``out_dir``.

    The style targets A^l (:class:`~nst_lessons.targets.StyleTargets`) are computed once, for
    the first content image's output size, and rescaled to each other output's size
    (:meth:`StyleTargets.at`, exact for the same long side); except with ``levels`` or with
    ``preserve_color`` "luminance"/"histogram", where each run computes its own.

    Args:
        contents: image files, example names and/or folders (see :func:`image_files`).
        style: the style image (file, example name, PIL image), or several, read once.
        out_dir: the results' folder; created if missing (its parent must exist).
        overwrite: replace existing outputs instead of keeping them.
        levels: ``[(size, iterations), ...]`` to run :func:`~nst_lessons.pyramid.pyramid_transfer`
            instead of :func:`~nst_lessons.transfer.style_transfer`.
        network, style_network, device: as for ``style_transfer``; each network is loaded once here.
        on_result: called as ``on_result(content, output, result)`` after each image is written.
        **options: any other ``style_transfer`` (or ``pyramid_transfer``) argument, the same for
            all, except ``masks``, which belong to one content image.

    Raises:
        ImageError, ValueError, OSError: a style, an input name or ``out_dir`` is unusable, or the
            inputs hold no image (nothing is run, ``out_dir`` is not created). Problems with one content image are reported, not raised.
        KeyboardInterrupt: Ctrl-C; the image in progress is not written.
    """
    if options.get("masks") is not None:
        raise ValueError("masks belong to one content image; a batch cannot use them")
    styles = [load_image(resolve_image(s) if isinstance(s, (str, os.PathLike)) else s) for s in as_list(style)]
    files = image_files(contents)
    if not files:
        raise ImageError(f"no images in {', '.join(str(c) for c in contents) or 'the content list'}")
    out_dir = check_results_folder(out_dir)
    out_dir.mkdir(exist_ok=True)
    options = dict(options)
    network, _ = pop_legacy(options, network, options.get("seed"), "run_batch")  # type: ignore[arg-type]
    model, style_model = load_networks(network, style_network, device, options.get("seed"))  # type: ignore[arg-type]
    options.update(network=model, style_network=style_model)
    base: StyleTargets | None = None  # the first image's targets, which every other's are rescaled from
    per_image = {key: value for key, value in options.items() if key not in _TARGET_OPTIONS}
    report = BatchReport()
    claimed: dict[str, Path] = {}
    for content in files:
        output = out_dir / output_name(content)
        if output.name in claimed:
            report.failed.append((content, f"its output {output} is already claimed by {claimed[output.name]}"))
            continue
        claimed[output.name] = content
        if output.exists() and not overwrite:
            report.kept.append((content, output))
            continue
        try:
            if levels is not None:
                result = pyramid_transfer(content, styles, levels, device=device, **options)
            else:
                image = load_image(content, options.get("size", 512))  # type: ignore[arg-type]
                size = (image.height, image.width)
                if base is None:
                    base = shared_targets(style_model or model, styles, size, options)
                targets = base.at(size) if base is not None else None
                run = options if targets is None else dict(per_image, style_targets=targets)
                result = style_transfer(image, styles, device=device, **run)
        except torch.OutOfMemoryError:
            report.failed.append((content, "out of memory on the device; try a smaller --size"))
            continue
        except (ImageError, ValueError, OSError) as error:
            report.failed.append((content, str(error)))
            continue
        if result.stopped is not None and result.stopped.startswith("interrupted"):
            raise KeyboardInterrupt
        save_image(result.image, output)
        report.written.append((content, output))
        if on_result is not None:
            on_result(content, output, result)
    return report


def run_batch_command(
    contents: Sequence[str], style: ImageLike | Sequence[ImageLike], out_dir: Path, *, overwrite: bool, **options: object
) -> int:
    """The CLI's batch mode: :func:`run_batch`, one line per image; exit status 1 if any failed."""

    def wrote(content: Path, output: Path, result: TransferResult) -> None:
        print(f"wrote {output} from {content} ({result.iterations} iterations, {result.seconds:.1f} s)", flush=True)

    report = run_batch(contents, style, out_dir, overwrite=overwrite, on_result=wrote, **options)
    for content, output in report.kept:
        print(f"kept {output} (it exists; --overwrite replaces it), skipped {content}")
    for content, reason in report.failed:
        print(f"nst-lessons: failed: {content}: {reason}", file=sys.stderr)
    print(
        f"{len(report.written)} written, {len(report.kept)} kept, {len(report.failed)} failed, in {out_dir}",
        file=sys.stderr if report.failed else sys.stdout,
    )
    return 1 if report.failed else 0
