"""Texture synthesis (Gatys, Ecker & Bethge, NeurIPS 2015; the top row of the 2015 paper's Fig. 1):
from white noise, find an image whose Gram matrices match a texture's, with no content at all.

    x* = argmin_x  beta * L_style(a, x) + gamma * L_TV(x)

It is style transfer without the content term, so it runs through :func:`~nst_lessons.transfer.style_transfer`
(its objective, style targets, L-BFGS and memory check): the "content" there is only a blank image of
the output's size. The output may have another shape than the source: the style's Gram targets are
rescaled to the output's number of positions M_l, as for any style at another size
(:mod:`nst_lessons.targets`).

Any network works; offline, the random multi-scale network (:mod:`nst_lessons.multiscale`) is the
one that makes textures you recognise, where a random deep VGG gives coloured blobs.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

import torch

from nst_lessons import audio, memory
from nst_lessons.data import SOUNDS
from nst_lessons.files import check_outputs
from nst_lessons.images import MIN_SIDE, ImageLike, check_output_path, load_image, save_image
from nst_lessons.networks import FeatureNetwork
from nst_lessons.targets import style_layer_weights
from nst_lessons.transfer import Speed, TransferResult, described, memory_model, style_transfer
from nst_lessons.vgg import default_device

DEFAULT_SIZE = 256
"""The long side of the source texture, and of the output unless its width or height is given."""


def texture_shape(style_size: tuple[int, int], width: int | None, height: int | None) -> tuple[int, int]:
    """The output's (width, height): the style's (a PIL size, width x height), or the width and height
    given, or one of them and the other from the style's aspect ratio; a ``ValueError`` below
    :data:`~nst_lessons.images.MIN_SIDE`."""
    sw, sh = style_size
    if width is None and height is None:
        width, height = sw, sh
    elif height is None:
        height = max(1, round(width * sh / sw))
    elif width is None:
        width = max(1, round(height * sw / sh))
    if min(width, height) < MIN_SIDE:
        raise ValueError(f"the texture would be {width}x{height} px; at least {MIN_SIDE} px a side is needed")
    return width, height


def texture_synthesis(
    style: ImageLike,
    *,
    size: int | None = DEFAULT_SIZE,
    width: int | None = None,
    height: int | None = None,
    network: object = "vgg19",
    iterations: int = 500,
    seed: int | None = None,
    tv_weight: float | None = 0.0,
    **options: object,
) -> TransferResult:
    """A new texture like ``style``, synthesised from white noise (style loss only).

    Args:
        style: the source texture: a path, PIL image or tensor (3,H,W)/(1,3,H,W) in [0,1].
        size: its long side in px (``None``: as it is); the output has this size too unless
            ``width``/``height`` say otherwise.
        width, height: the output's shape in px, another than the source's: both, or one (the other
            keeps the source's aspect ratio).
        network: what :func:`~nst_lessons.transfer.style_transfer` takes as its network (a name such as
            ``"vgg19"`` or ``"multiscale"``, a spec, or a built network).
        iterations: L-BFGS iterations.
        seed: the white noise the synthesis starts from (and random filters); another seed, another
            sample of the same texture. ``None`` means 0.
        tv_weight: gamma; 0 by default, as in the paper (the Gram matrices alone).
        options: any other :func:`~nst_lessons.transfer.style_transfer` keyword (``style_layers``,
            ``style_weight``, ``device``, ``progress``, ``callback``, ...), but not the content's.

    Returns:
        The :class:`~nst_lessons.transfer.TransferResult`; ``settings["task"]`` is ``"texture"``.
    """
    for name in ("content_layers", "content_weight", "init", "style_size", "style_scale", "masks", "preserve_color"):
        if name in options:
            raise ValueError(f"texture synthesis takes no {name}: it has no content image and starts from noise")
    source = load_image(style)  # as given: resized only once the run is known to fit
    scale = (size or max(source.size)) / max(source.size)
    style_shape = (max(1, round(source.width * scale)), max(1, round(source.height * scale)))
    out_width, out_height = texture_shape(style_shape, width, height)
    if options.get("check_memory", True):
        _check_fits(network, seed, style_shape, (out_width, out_height), tv_weight, options)
    source = load_image(source, size)
    blank = torch.zeros(1, 3, out_height, out_width)
    result = style_transfer(
        blank, source, size=None, style_size=max(source.size), iterations=iterations, content_layers=(),
        content_weight=0.0, tv_weight=tv_weight, init="noise", seed=seed, network=network, **options,
    )  # fmt: skip
    result.settings.update(task="texture", size=size, width=out_width, height=out_height)
    return result


def _check_fits(
    network: object, seed: int | None, style_shape: tuple[int, int], shape: tuple[int, int], tv_weight: float | None,
    options: dict[str, object],
) -> None:
    """:func:`~nst_lessons.memory.check_fits` for the run, before the source is resized or the output
    allocated (style_transfer checks again once it has them, too late for a --size of 100000)."""
    description = described(network, seed)  # type: ignore[arg-type]
    device = description.device if isinstance(network, FeatureNetwork) else default_device(options.get("device"))  # type: ignore[arg-type]
    speed = options.get("speed") or Speed()
    estimate = memory_model(
        shape, style_shape, (), style_layer_weights(options.get("style_layers"), description), network=description,  # type: ignore[arg-type]
        precision=speed.precision, optimizer=options.get("optimizer", "lbfgs"), history_size=options.get("history_size", 100),  # type: ignore[union-attr]
        tv=tv_weight is None or tv_weight > 0,
    )  # fmt: skip
    memory.check_fits(estimate, max(shape), device, remedies="a smaller --size/--width/--height or a lower history_size")


# --------------------------------------------------------------------------- command line


def add_texture_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``nst-lessons texture STYLE -o OUT``."""
    from nst_lessons import arguments
    from nst_lessons.transfer import PRECISIONS

    p = subparsers.add_parser(
        "texture",
        help="synthesise a new texture like an image or a sound, from noise",
        description="Texture synthesis (Gatys, Ecker & Bethge, 2015): starting from white noise, find an image "
        "whose Gram matrices match STYLE's (style loss only, no content). Offline, --network multiscale (random "
        "filters at eight sizes, Ustyuzhaninov et al. 2017) makes recognisable textures with no download. "
        "A STYLE that is a sound (a file libsndfile reads: .wav .flac .ogg .mp3 ..., or an example sound such "
        "as rain) gives a sound texture instead (Ulyanov & Lebedev, 2016; see nst-lessons audio): the options "
        "marked 'sound:' are for sounds only, --size ... --no-memory-check for images only.",
    )
    p.add_argument("style", metavar="STYLE", help="the source texture: an image or a sound file, or an example name such as starry_night or rain")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="OUT", help="where to write the texture (.png, .jpg, ...; a sound's .wav or .flac)")
    p.add_argument("--size", type=arguments.int_at_least(MIN_SIDE), default=DEFAULT_SIZE, help=f"long side of STYLE, and of OUT unless --width/--height are given, in px (default {DEFAULT_SIZE})")
    p.add_argument("--width", type=arguments.int_at_least(MIN_SIDE), help="OUT's width in px (default: STYLE's at --size; with --height alone, STYLE's aspect ratio)")
    p.add_argument("--height", type=arguments.int_at_least(MIN_SIDE), help="OUT's height in px")
    p.add_argument("--iterations", type=arguments.int_at_least(1), help=f"L-BFGS iterations (default {ITERATIONS} for an image, {audio.ITERATIONS} for a sound)")
    arguments.add_network_arguments(p, seed_help="seed of the white noise the synthesis starts from (and of random filters); another seed, another sample", style_network=False)
    p.add_argument("--style-weight", type=arguments.non_negative, help="beta (default: the network's)")
    p.add_argument("--tv-weight", type=arguments.non_negative, help="gamma, total variation (default 0, as in the paper)")
    p.add_argument("--history-size", type=arguments.int_at_least(1), default=100, help="L-BFGS history m (default 100)")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32", help="GPU arithmetic (default fp32)")
    p.add_argument("--no-memory-check", action="store_true", help="skip the memory estimate that refuses runs too large for the device")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    audio.add_sound_options(p, texture=True, defaults=False)
    image_defaults = {dest: p.get_default(dest) for dest in IMAGE_ONLY_OPTIONS}
    p.set_defaults(func=functools.partial(run_texture, image_defaults=image_defaults))


IMAGE_ONLY_OPTIONS = {
    "size": "--size", "width": "--width", "height": "--height", "network": "--network", "weights": "--weights",
    "pooling": "--pooling", "style_weight": "--style-weight", "tv_weight": "--tv-weight", "history_size": "--history-size",
    "precision": "--precision", "no_memory_check": "--no-memory-check",
}  # fmt: skip
"""``texture``'s options that only an image takes (argparse dest -> flag); the sound-only ones are
:data:`nst_lessons.audio.SOUND_ONLY_OPTIONS`."""
ITERATIONS = 500
"""An image texture's default L-BFGS iterations."""


def run_texture(args: argparse.Namespace, image_defaults: dict[str, object]) -> int:
    """``nst-lessons texture``: a sound STYLE (:func:`nst_lessons.audio.is_sound_input`) goes to
    :func:`nst_lessons.audio.run_sound_command`, anything else to :func:`run_image_texture`; an
    option given that the other kind only has is refused in one line, before any work."""
    if audio.is_sound_input(args.style):
        given = [flag for dest, flag in IMAGE_ONLY_OPTIONS.items() if getattr(args, dest) != image_defaults[dest]]
        if given:
            raise ValueError(f"{given[0]} is for an image texture, and STYLE {args.style} is a sound")
        return audio.run_sound_command(args)
    given = [flag for dest, flag in audio.SOUND_ONLY_OPTIONS.items() if getattr(args, dest) is not None]
    if given:
        raise ValueError(f"{given[0]} is for a sound texture, and STYLE {args.style} is not a sound")
    if audio.is_sound_path(args.output):  # a misspelled example sound, named as such rather than as OUT's format
        raise ValueError(
            f"STYLE {args.style} is not a sound file or an example sound ({', '.join(SOUNDS)}), "
            f"and OUT {args.output} is a sound"
        )
    args.iterations = ITERATIONS if args.iterations is None else args.iterations
    return run_image_texture(args)


def run_image_texture(args: argparse.Namespace) -> int:
    """``nst-lessons texture STYLE -o OUT`` for an image STYLE: everything checked before the run,
    the result written atomically, one line of summary."""
    from nst_lessons.arguments import network_spec
    from nst_lessons.data import resolve_image

    check_output_path(args.output)
    style = resolve_image(str(args.style))
    check_outputs([("the output", args.output)], [("the input texture", style)])
    result = texture_synthesis(
        style, size=args.size, width=args.width, height=args.height, network=network_spec(args),
        iterations=args.iterations, seed=args.seed, tv_weight=args.tv_weight if args.tv_weight is not None else 0.0,
        device=args.device, speed=Speed(precision=args.precision), history_size=args.history_size,
        style_weight=args.style_weight, check_memory=not args.no_memory_check, progress=not args.quiet,
    )  # fmt: skip
    save_image(result.image, args.output)
    per_it = 1000 * result.seconds / max(result.iterations, 1)
    print(
        f"wrote {args.output} ({result.image.width}x{result.image.height}) after {result.iterations} iterations "
        f"in {result.seconds:.1f} s ({per_it:.1f} ms/iteration), best loss {result.best_loss:.4g}"
    )
    if result.stopped is not None and result.stopped.startswith("interrupted"):  # as transfer: kept, then 130
        print(f"nst-lessons: interrupted; {args.output} holds the best image so far", file=sys.stderr)
        return 130
    return 0


__all__ = [
    "DEFAULT_SIZE", "IMAGE_ONLY_OPTIONS", "ITERATIONS", "add_texture_parser", "run_image_texture", "run_texture",
    "texture_shape", "texture_synthesis",
]  # fmt: skip
