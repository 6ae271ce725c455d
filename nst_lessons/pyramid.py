"""Coarse-to-fine style transfer: the route to outputs too large to optimise from scratch.

The image is optimised at a small size first; each result, upsampled (bicubic, in float), starts
the next, larger level. The large levels then need only a few iterations to sharpen what the small
ones laid out. That matters because they are where the time and memory go: at 4096 px one L-BFGS
iteration costs 64 times one at 512 px, and the history alone holds 2 m x 50 M values (about 40 GB
for m = 100; pass a smaller ``history_size``).

The loss weights stay the same at every level. L_content grows with the number of pixels while E_l
does not, so the large levels lean towards the photo; raise ``style_weight`` if the style fades.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch
from PIL import Image

from nst_lessons import memory
from nst_lessons.images import ImageLike, load_image
from nst_lessons.networks import FeatureNetwork
from nst_lessons.targets import as_list, load_styles, normalised_blend_weights, style_layer_weights, style_long_side
from nst_lessons.transfer import Network, Speed, TransferResult, described, load_networks, memory_model, pop_legacy, style_transfer


_DEFAULTS = {name: p.default for name, p in inspect.signature(style_transfer).parameters.items()}


def parse_levels(text: str) -> list[tuple[int, int]]:
    """``"512:500,1024:200,2048:50"`` -> ``[(512, 500), (1024, 200), (2048, 50)]``."""
    levels = []
    for item in text.split(","):
        size, sep, iterations = item.strip().partition(":")
        if not sep or not size.isdigit() or not iterations.isdigit():
            raise ValueError(f"expected SIZE:ITERATIONS pairs such as 512:500,1024:200, got {item.strip()!r}")
        levels.append((int(size), int(iterations)))
    return check_levels(levels)


def check_levels(levels: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """``levels`` as a list, or a ``ValueError``: sizes must grow, iteration counts be at least 1."""
    levels = [(int(size), int(iterations)) for size, iterations in levels]
    if not levels:
        raise ValueError("a pyramid needs at least one level")
    sizes = [size for size, _ in levels]
    if sizes != sorted(set(sizes)):
        raise ValueError(f"pyramid sizes must grow from level to level, got {sizes}")
    if min(iterations for _, iterations in levels) < 1:
        raise ValueError("every pyramid level needs at least 1 iteration")
    return levels


def pyramid_transfer(
    content: ImageLike,
    style: ImageLike | Sequence[ImageLike],
    levels: Sequence[tuple[int, int]],
    *,
    style_size: int | None = None,
    init: str | ImageLike = "content",
    network: Network = "vgg19",
    style_network: Network | None = None,
    device: str | torch.device | None = None,
    seed: int | None = None,
    speed: Speed = Speed(),
    check_memory: bool = True,
    **options: object,
) -> TransferResult:
    """:func:`~nst_lessons.transfer.style_transfer` level by level, from the smallest size up.

    Args:
        content, style: as for ``style_transfer``.
        levels: ``[(size, iterations), ...]``, sizes growing, e.g. ``[(512, 500), (1024, 200)]``.
        style_size: the style image's long side at the last level (default: that level's size);
            earlier levels scale it down in proportion.
        init: the first level's starting image; later levels start from the previous result as
            optimised (:attr:`~nst_lessons.transfer.TransferResult.raw`: before ``preserve_color``
            puts the photo's chroma back, which is done once, to the last level's result).
        network, style_network, device, seed, speed: as for ``style_transfer``; the networks are
            loaded once.
        check_memory: check first that the *last* level fits (see :mod:`nst_lessons.memory`), so
            that a run too big is refused before the small levels have spent their time.
        options: any other keyword argument of ``style_transfer`` (``history_size``,
            ``callback``...), the same for every level.

    Returns:
        The last level's :class:`~nst_lessons.transfer.TransferResult`, whose ``settings`` gain
        ``"pyramid"``: one ``{"size", "iterations", "seconds", "best_loss"}`` per level.
    """
    options["speed"] = speed
    network, speed = pop_legacy(options, network, seed, "pyramid_transfer")
    levels = check_levels(levels)
    final_size = levels[-1][0]
    level_style_sizes = [round(style_size * size / final_size) if style_size else None for size, _ in levels]
    content, styles = load_image(content), [load_image(s) for s in as_list(style)]  # decoded once, resized per level
    _check_styles(content, styles, levels, level_style_sizes, described(style_network or network, seed), options)
    model, style_model = load_networks(network, style_network, device, seed)
    if check_memory:
        last = _DEFAULTS | options
        content_image = load_image(content, final_size)
        long_side = style_long_side((content_image.height, content_image.width), style_size, last["style_scale"])
        style_image = max((load_image(s, long_side) for s in styles), key=lambda im: im.width * im.height)
        estimate_at = memory_model(
            content_image.size, style_image.size, last["content_layers"] or model.content_layers,
            style_layer_weights(last["style_layers"], style_model or model), network=model, style_network=style_model,
            precision=speed.precision, optimizer=last["optimizer"], history_size=last["history_size"],
            tv=last["tv_weight"] != 0,
        )  # fmt: skip
        memory.check_fits(estimate_at, max(content_image.size), model.device)
    summary: list[dict[str, object]] = []
    result: TransferResult | None = None
    for (size, iterations), level_style_size in zip(levels, level_style_sizes):
        result = style_transfer(
            content, styles, size=size, iterations=iterations, network=model, style_network=style_model, seed=seed,
            style_size=level_style_size, init=init if result is None else result.raw, check_memory=check_memory,
            **options,
        )  # fmt: skip
        summary.append({"size": size, "iterations": result.iterations, "seconds": result.seconds, "best_loss": result.best_loss})
        if result.stopped is not None:
            break
    assert result is not None
    result.settings["pyramid"] = summary
    return result


def _check_styles(
    content: Image.Image,
    styles: Sequence[Image.Image],
    levels: Sequence[tuple[int, int]],
    style_sizes: Sequence[int | None],
    network: FeatureNetwork,
    options: dict[str, object],
) -> None:
    """The blend weights, and the masks at every level's size (a region may vanish at a deep layer
    of a small level), checked as :func:`style_transfer` checks them, but before the model loads."""
    masks = options.get("masks")
    if masks is None:
        normalised_blend_weights(options.get("style_blend_weights"), len(styles))  # type: ignore[arg-type]
        return
    for (size, _), style_size in zip(levels, style_sizes):
        content_image = load_image(content, size)
        load_styles(
            styles, (content_image.height, content_image.width), style_size, options.get("style_scale"),  # type: ignore[arg-type]
            masks, options.get("style_blend_weights"), options.get("style_layers"), network,  # type: ignore[arg-type]
        )  # fmt: skip


__all__ = ["check_levels", "parse_levels", "pyramid_transfer"]
