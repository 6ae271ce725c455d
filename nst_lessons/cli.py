"""The ``nst-lessons`` command (also ``python -m nst_lessons``).

    nst-lessons transfer CONTENT STYLE [STYLE ...] -o OUT.png [options]   stylise a photo
    nst-lessons transfer CONTENT [CONTENT ...] STYLE -o FOLDER [options]  stylise many (files and/or folders)
    nst-lessons weights {imagenet,caffe} [--network vgg16]    download VGG weights once
    nst-lessons style-space FOLDER -o OUT                     compare a collection by style and content
    nst-lessons video IN STYLE -o OUT [options]               stylise a video (mp4, webm, gif, frames)
    nst-lessons audio CONTENT STYLE -o OUT.wav [options]      give a sound another's texture
    nst-lessons texture STYLE -o OUT [options]                synthesise a texture like STYLE (an image or a sound)
    nst-lessons examples                                      list the example images and sounds
    nst-lessons grade SUBMISSION.ipynb --results results.json grade an exercise notebook
    nst-lessons release [COURSE]                              write the student notebooks
    nst-lessons book -o SITE [--fast]                         the lessons, executed, as a web site

Bad input ends with one line on stderr, exit status 2, and no output file; so does an output that
is an input (however its path is spelled). Ctrl-C exits 130 after writing what the command keeps
(the best image, a batch's finished results, a video's finished frames); SIGTERM exits 143 leaving
nothing half-written.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import re
import signal
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from nst_lessons import __version__
from nst_lessons.arguments import (
    add_loss_weight_arguments, add_network_arguments, int_at_least, network_spec, non_negative, positive, style_network_spec,
)  # fmt: skip
from nst_lessons.audio import add_audio_parser
from nst_lessons.batch import is_batch_output, resolve_content, run_batch_command
from nst_lessons.book import add_book_parser
from nst_lessons.color import COLOR_MODES
from nst_lessons.data import CLASSICS, EXAMPLES, OFFLINE, SOUNDS, images_home, resolve_image, sounds_home
from nst_lessons.grading.cli import add_grade_parser, add_release_parser
from nst_lessons.files import check_outputs, check_writable
from nst_lessons.images import MIN_SIDE, ImageError, check_output_path, save_image
from nst_lessons.pyramid import parse_levels, pyramid_transfer
from nst_lessons.style_space import add_style_space_parser
from nst_lessons.texture import add_texture_parser
from nst_lessons.transfer import INITS, OPTIMIZERS, PRECISIONS, Speed, snapshot_path, style_transfer
from nst_lessons.vgg import ARCHS, CHECKPOINTS, WeightsError, fetch_weights, weights_home
from nst_lessons.video import add_video_parser


class UsageError(Exception):
    """A bad argument, reported as one line."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``prog: error: ...``) rather than usage + error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: error: {message} (see --help)")


def _layers(text: str) -> list[str]:
    """Comma-separated layer names, each once; whether the network has them is checked against the
    network chosen (``style_transfer`` does it before any work)."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"a layer is named twice in {text!r}")
    return names


def _style_layers(text: str) -> dict[str, float] | list[str]:
    """``relu1_1,relu2_1`` (equal weights) or ``relu1_1:0.5,relu2_1:0.5`` (w_l given)."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if all(":" not in item for item in items):
        return _layers(text)
    weights: dict[str, float] = {}
    for item in items:
        name, _, w = item.partition(":")
        _layers(name)
        if name in weights:
            raise argparse.ArgumentTypeError(f"{name} is named twice in {text!r}")
        weights[name] = non_negative(w or "1")
    return weights


def _blend_weights(text: str) -> list[float]:
    """``0.7,0.3`` -> [0.7, 0.3], each a finite number >= 0."""
    return [non_negative(item.strip()) for item in text.split(",")]


def _add_transfer(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "transfer",
        help="render a content photo in the style of a painting",
        description="Neural style transfer (Gatys et al., 2015): optimise the pixels of OUT so that its "
        "features in a network (--network, default VGG-19) match CONTENT's content and STYLE's style. CONTENT and STYLE are image files "
        f"or example names ({', '.join(EXAMPLES)}). Several styles (repeated, or comma-separated) are "
        "blended, or with --content-mask/--style-mask each rules its own region.",
    )
    p.add_argument(
        "images",
        nargs="+",
        metavar="IMAGE",
        help="CONTENT STYLE [STYLE ...] with -o OUT.png: the content image, then one or more style images "
        "(STYLE STYLE or STYLE,STYLE). Or CONTENT [CONTENT ...] STYLE with -o FOLDER: a batch, each CONTENT "
        "a file or a folder of images. Files, or example names such as grace_hopper, starry_night, strokes",
    )
    p.add_argument("-o", "--output", type=Path, required=True, help="the result (.png, .jpg, ...) or, for a batch, a folder")
    p.add_argument("--overwrite", action="store_true", help="batch: replace existing results (default: keep them)")
    p.add_argument("--size", type=int_at_least(MIN_SIDE), default=512, help="long side of the output in px (default 512)")
    p.add_argument("--style-size", type=int_at_least(MIN_SIDE), help="long side of the style image(s) in px (default: --size)")
    p.add_argument("--style-scale", type=positive, help="long side of the style image(s) as a multiple of the output's (instead of --style-size)")
    p.add_argument("--style-blend-weights", type=_blend_weights, metavar="W,W,...", help="several styles: weights of their Grams, normalised to sum 1 (default equal)")
    p.add_argument("--content-mask", type=Path, action="append", metavar="MASK", help="region r's mask on the content image (white = in), once per region, with --style-mask")
    p.add_argument("--style-mask", type=Path, action="append", metavar="MASK", help="region r's mask on style r, once per region")
    p.add_argument("--preserve-color", choices=COLOR_MODES, help="keep the photo's colours: yuv (swap chroma after), luminance (transfer luminance only) or histogram (match the style's colours first)")
    p.add_argument("--iterations", type=int_at_least(1), default=500, help="optimiser iterations (default 500)")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="lbfgs", help="default lbfgs")
    p.add_argument("--learning-rate", type=positive, default=0.02, help="Adam's step size (default 0.02)")
    p.add_argument("--init", default="content", help=f"starting image: {', '.join(INITS)} or an image file (default content)")
    add_network_arguments(p, seed_help="seed for the noise init and random weights")
    p.add_argument("--content-layers", type=_layers, help="comma-separated (default: the network's, relu4_2 for VGG)")
    p.add_argument(
        "--style-layers",
        type=_style_layers,
        help="comma-separated, optionally name:weight (default: the style network's, relu1_1,...,relu5_1 for VGG, equal weights)",
    )
    add_loss_weight_arguments(p)
    p.add_argument("--tv-squared", action="store_true", help="squared total variation instead of the L1 form")
    p.add_argument("--normalize-gradients", action="store_true", help="scale each layer's loss gradient to unit L1 norm (jcjohnson's option); default weights become alpha 5, beta 100, gamma 1e-3: his numbers, but beta is shared by the style layers (his is per layer: 500 here matches it) and gamma acts on [0,1] pixels")
    p.add_argument("--gradients", choices=("autograd", "manual"), default="autograd", help="hand-derived dL/dF with 'manual'")
    p.add_argument("--history-size", type=int_at_least(1), default=100, help="L-BFGS history m (default 100); it holds 2 m x 3 x pixels floats")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32", help="GPU arithmetic: fp32 (default, exact), tf32, or bf16 (fastest)")
    p.add_argument("--channels-last", action="store_true", help="channels-last feature maps (faster with tf32/bf16 on a GPU)")
    p.add_argument("--cuda-graphs", action="store_true", help="replay each L-BFGS iteration from a CUDA graph (GPU, --optimizer lbfgs)")
    p.add_argument(
        "--pyramid",
        metavar="SIZE:ITERATIONS,...",
        help="coarse to fine, each level starting from the last, e.g. 512:500,1024:200,2048:100,4096:50 "
        "(replaces --size and --iterations; --style-size is then the last level's)",
    )
    p.add_argument("--no-memory-check", action="store_true", help="skip the memory estimate that refuses runs too large for the device")
    p.add_argument("--history", type=Path, help="also write the loss history to this JSON file")
    p.add_argument("--save-every", type=int_at_least(1), metavar="N", help="write OUT_<iteration>.png every N iterations")
    p.add_argument("--print-every", type=int_at_least(1), metavar="N", help="print each loss term every N iterations")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_transfer)


def _check_output(path: Path, kind: str) -> None:
    if kind == "image":
        check_output_path(path)
    elif not path.parent.is_dir() or path.is_dir():
        raise ImageError(f"cannot write {path}: {'it is a directory' if path.is_dir() else 'no such folder'}")
    else:
        check_writable(path.parent)


def _check_not_inputs(args: argparse.Namespace, content: Path, styles: Sequence[Path], init: str) -> None:
    """Refuse -o, --history or a --save-every snapshot that is an input of the run (or each other),
    compared by the file the paths resolve to (:func:`~nst_lessons.files.check_outputs`)."""
    inputs: list[tuple[str, str | Path]] = [("the content image", content), *(("the style image", s) for s in styles)]
    inputs += [("the content mask", m) for m in args.content_mask or []] + [("the style mask", m) for m in args.style_mask or []]
    inputs += [("the --init image", init)] if init not in INITS else []
    inputs += [("the --weights checkpoint", args.weights)] if Path(args.weights).is_file() else []
    outputs: list[tuple[str, str | Path]] = [("the output", args.output)]
    outputs += [("the --history file", args.history)] if args.history is not None else []
    if args.save_every:  # only a snapshot name that exists can be an input (an input exists): look for those
        stem, suffix = args.output.stem, args.output.suffix
        for path in args.output.parent.glob(f"{glob.escape(stem)}_*{glob.escape(suffix)}"):
            i = re.fullmatch(rf"{re.escape(stem)}_(\d+){re.escape(suffix)}", path.name)
            if i and int(i[1]) % args.save_every == 0 and int(i[1]) <= args.iterations:
                outputs.append(("the --save-every snapshot", snapshot_path(args.output, int(i[1]))))
    check_outputs(outputs, inputs)


def _masks(args: argparse.Namespace) -> list[tuple[Path, Path]] | None:
    """The (content mask, style mask) pairs, one per region, or ``None`` (style_transfer checks that
    there is one style per region)."""
    content_masks, style_masks = args.content_mask or [], args.style_mask or []
    if not content_masks and not style_masks:
        return None
    if len(content_masks) != len(style_masks):
        raise UsageError(
            f"nst-lessons transfer: error: {len(content_masks)} --content-mask and {len(style_masks)} --style-mask: "
            "give one of each per region (see --help)"
        )
    return list(zip(content_masks, style_masks))


def _style_images(texts: Sequence[str]) -> list[Path]:
    """The style images named by the STYLE arguments, each one image or several comma-separated. A
    file name may itself hold commas: the shortest run of comma-separated pieces that is a file or an
    example name is taken as one image ("van gogh, 1889.png,waves" is two)."""
    styles: list[Path] = []
    for text in texts:
        parts, start = text.split(","), 0
        for end in range(1, len(parts) + 1):
            name = ",".join(parts[start:end]).strip()
            if not name or Path(name).is_file() or name in EXAMPLES:
                styles += [resolve_image(name)] if name else []
                start = end
        if start < len(parts):  # no run of the rest names an image: report its first piece
            resolve_image(parts[start].strip())
    return styles


def _run_transfer(args: argparse.Namespace) -> int:
    batch = is_batch_output(args.output)
    if len(args.images) < 2:
        raise UsageError("nst-lessons transfer: error: expected CONTENT and at least one STYLE image (see --help)")
    if batch and (args.history is not None or args.content_mask or args.style_mask or args.save_every):
        raise UsageError("nst-lessons transfer: error: --history, masks and --save-every are for one image, not a batch")
    style_names = args.images[-1:] if batch else args.images[1:]
    styles = _style_images(style_names)
    if not batch:
        content = resolve_content(args.images[0])
        _check_output(args.output, "image")
    masks = None if batch else _masks(args)
    if args.history is not None:
        _check_output(args.history, "json")
    levels = parse_levels(args.pyramid) if args.pyramid is not None else None
    if levels is not None and args.save_every is not None:
        raise UsageError("nst-lessons transfer: error: --save-every does not combine with --pyramid (see --help)")
    init = args.init if args.init in INITS else str(resolve_image(args.init))
    if not batch:
        _check_not_inputs(args, content, styles, init)
    options = dict(
        style_size=args.style_size, optimizer=args.optimizer, learning_rate=args.learning_rate,
        content_layers=args.content_layers, style_layers=args.style_layers, content_weight=args.content_weight,
        style_weight=args.style_weight, tv_weight=args.tv_weight, tv_squared=args.tv_squared, init=init,
        network=network_spec(args), style_network=style_network_spec(args), device=args.device, seed=args.seed,
        gradients=args.gradients, history_size=args.history_size,
        speed=Speed(args.precision, args.channels_last, args.cuda_graphs), check_memory=not args.no_memory_check,
        progress=not args.quiet,
        style_scale=args.style_scale, style_blend_weights=args.style_blend_weights, masks=masks,
        preserve_color=args.preserve_color, normalize_gradients=args.normalize_gradients, print_every=args.print_every,
    )  # fmt: skip
    style = styles[0] if len(styles) == 1 else styles
    if batch:
        return run_batch_command(
            args.images[:-1], style, args.output, overwrite=args.overwrite, levels=levels,
            **(dict(size=args.size, iterations=args.iterations) if levels is None else {}), **options,
        )  # fmt: skip
    if levels is None:
        result = style_transfer(
            content, style, size=args.size, iterations=args.iterations, save_every=args.save_every,
            save_path=args.output if args.save_every else None, **options,
        )  # fmt: skip
    else:
        result = pyramid_transfer(content, style, levels, **options)
    save_image(result.image, args.output)
    if args.history is not None:
        args.history.write_text(json.dumps({"settings": result.settings, "history": result.history}, indent=1, default=str))
    per_it = 1000 * result.seconds / max(result.iterations, 1)
    written = f"{'last' if args.normalize_gradients else 'best'} loss {result.best_loss:.4g}"  # the image written's
    print(
        f"wrote {args.output} ({result.image.width}x{result.image.height}) after {result.iterations} iterations "
        f"in {result.seconds:.1f} s ({per_it:.1f} ms/iteration), {written}"
    )
    if result.stopped is not None and result.stopped.startswith("interrupted"):
        print(f"nst-lessons: interrupted; {args.output} holds the {written.split()[0]} image so far", file=sys.stderr)
        return 130
    return 0


def _add_weights(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "weights",
        help="download and cache VGG weights",
        description="Download a published VGG checkpoint once, verify its SHA-256 and keep its "
        "convolutional part under $NST_LESSONS_HOME (default: torch's hub cache). "
        "$NST_LESSONS_WEIGHTS_MIRROR=<base URL> fetches from a mirror holding the same file names. "
        "Published: " + ", ".join(f"{arch} {weights}" for arch, weights in CHECKPOINTS) + ".",
    )
    p.add_argument("name", choices=tuple(dict.fromkeys(w for _, w in CHECKPOINTS)), help="which weights")
    p.add_argument("--network", choices=ARCHS, default="vgg19", help="which VGG (default vgg19)")
    p.set_defaults(func=lambda args: print(fetch_weights(args.name, arch=args.network)) or 0)


def _add_examples(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("examples", help="list the example images and sounds", description="List the example images and sounds.")
    p.set_defaults(func=_run_examples)


def _run_examples(args: argparse.Namespace) -> int:
    for name in OFFLINE:
        print(f"{name:16} offline")
    for name in CLASSICS:
        print(f"{name:16} downloaded once")
    for name, seconds in SOUNDS.items():
        print(f"{name:16} sound, {seconds:g} s, generated")
    print(f"images are cached in {images_home()}, sounds in {sounds_home()}, weights in {weights_home()}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="nst-lessons", description="Neural style transfer, taught from first principles.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(title="commands", dest="command", required=True, parser_class=_Parser)
    _add_transfer(subparsers)
    _add_weights(subparsers)
    _add_examples(subparsers)
    add_grade_parser(subparsers)
    add_release_parser(subparsers)
    add_style_space_parser(subparsers)
    add_video_parser(subparsers)
    add_book_parser(subparsers)
    add_audio_parser(subparsers)
    add_texture_parser(subparsers)
    return parser


def _warn(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    print(f"nst-lessons: warning: {message}", file=sys.stderr)


SIGTERM_AGAIN_SECONDS = 1.0
"""After SIGTERM, how long until it is delivered again if the :class:`Terminated` it raised was
swallowed (nothing has unwound to :func:`main` by then)."""


class Terminated(BaseException):
    """SIGTERM, raised in the main thread. Unlike Ctrl-C, which keeps what is finished (the best
    image, a video's finished frames), it unwinds as an error does: every temporary file is removed
    and nothing half-done is left behind."""


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """SIGTERM raises :class:`Terminated` for the duration (where a handler can be set: the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pid = os.getpid()
    unwound = threading.Event()

    def again() -> None:
        if not unwound.is_set():
            os.kill(pid, signal.SIGTERM)

    def terminate(signum: int, frame: object) -> None:
        if os.getpid() != pid:  # a forked child (a DataLoader worker) ends as it would have without us
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
        if isinstance(sys.exc_info()[1], Terminated):  # already unwinding: let the clean-up finish
            return
        # Python ignores an exception raised where the handler happens to run inside an at-fork hook
        # (logging's, while ffmpeg or a worker starts) or a __del__: then deliver the signal again.
        timer = threading.Timer(SIGTERM_AGAIN_SECONDS, again)
        timer.daemon = True
        timer.start()
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        unwound.set()
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 bad input, 130 Ctrl-C, 143 SIGTERM)."""
    with warnings.catch_warnings(), _sigterm_raises():
        warnings.showwarning = _warn  # one line per warning, without the source line
        try:
            args = build_parser().parse_args(argv)
            return args.func(args)
        except UsageError as error:
            print(error, file=sys.stderr)
        except torch.OutOfMemoryError:
            print("nst-lessons: error: out of memory on the device; try a smaller --size", file=sys.stderr)
        except WeightsError as error:  # the Python API's advice, in the command line's words
            print("nst-lessons: error: " + str(error).replace("weights='random'", "--weights random"), file=sys.stderr)
        except (ImageError, ValueError, OSError) as error:
            print(f"nst-lessons: error: {error}", file=sys.stderr)
        except KeyboardInterrupt:
            print("nst-lessons: interrupted", file=sys.stderr)
            return 130
        except Terminated:
            print("nst-lessons: terminated; nothing half-written is left", file=sys.stderr)
            return 128 + signal.SIGTERM
    return 2


if __name__ == "__main__":
    sys.exit(main())
