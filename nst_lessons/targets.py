"""The style targets A^l of a run, computed once: from one style, a weighted blend of several, or
one style per masked region (Gatys et al. 2017, §4; see :mod:`nst_lessons.masks`).

Several styles s = 1..S with blend weights b_s (normalised to sum 1) give

    A^l = sum_s b_s A_s^l,        A_s^l = G(F_s^l) * M_l / M'_{s,l}

each style at its own size M'_{s,l} = H'_l W'_l, rescaled to the generated image's M_l positions
as :func:`nst_lessons.losses.gram_targets` does. A :class:`StyleTargets` can be computed once and
passed to many runs (``style_transfer(..., style_targets=...)``), e.g. for a batch or a video.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from PIL import Image
from torch import Tensor

from nst_lessons import color, losses
from nst_lessons.images import MIN_SIDE, ImageLike, load_image, to_tensor
from nst_lessons.masks import area_weights, check_covers, layer_masks, load_mask
from nst_lessons.networks import FeatureNetwork, describe_network
from nst_lessons.vgg import STYLE_LAYERS


def style_layer_weights(
    style_layers: Sequence[str] | Mapping[str, float] | None, network: FeatureNetwork | None = None
) -> dict[str, float]:
    """``{name: w_l}``: names weighted 1/|L| each, or the mapping given, checked (the names against
    ``network``'s layers, default VGG-19's); ``None`` takes the network's own style layers."""
    network = describe_network("vgg19") if network is None else network
    style_layers = network.style_layers if style_layers is None else style_layers
    if isinstance(style_layers, Mapping):
        weights = {str(k): float(v) for k, v in style_layers.items()}
    else:
        weights = {name: 1.0 / len(style_layers) for name in style_layers} if style_layers else {}
    for name, w in weights.items():
        network.layer_index(name)
        if not (w >= 0 and math.isfinite(w)):
            raise ValueError(f"style layer weight for {name} must be a finite number >= 0, got {w}")
    return weights


def normalised_blend_weights(weights: Sequence[float] | None, count: int) -> list[float]:
    """b_s normalised to sum 1 (default equal); a ``ValueError`` for a wrong count, a negative or
    non-finite weight, or weights that sum to 0."""
    if weights is None:
        return [1.0 / count] * count
    weights = [float(w) for w in weights]
    if len(weights) != count:
        raise ValueError(f"style_blend_weights (--style-blend-weights) has {len(weights)} weights for {count} style image(s)")
    if not all(w >= 0 and math.isfinite(w) for w in weights) or sum(weights) <= 0:
        raise ValueError(f"style_blend_weights (--style-blend-weights) must be finite numbers >= 0, not all 0, got {weights}")
    total = sum(weights)
    return [w / total for w in weights]


def check_regions(regions: int, styles: int, blend_weights: Sequence[float] | None = None) -> None:
    """A ``ValueError`` unless there is one style per masked region and no blend weights."""
    if blend_weights is not None:
        raise ValueError("style_blend_weights (--style-blend-weights) do not apply with masks: each region has its own style")
    if regions != styles:
        raise ValueError(
            f"{regions} mask pair(s) (--content-mask/--style-mask) for {styles} style image(s): give one style per region"
        )


def style_long_side(size: tuple[int, int], style_size: int | None, style_scale: float | None) -> int:
    """The styles' long side: ``style_size`` px, or ``style_scale`` times the output's long side
    (jcjohnson's ``-style_scale``), or the output's long side. ``size`` = (H, W) of the output."""
    if style_size is not None and style_scale is not None:
        raise ValueError("give style_size or style_scale, not both")
    if style_scale is None:
        return style_size or max(size)
    if not (style_scale > 0 and math.isfinite(style_scale)):
        raise ValueError(f"style_scale must be a finite number > 0, got {style_scale}")
    long_side = round(style_scale * max(size))
    if long_side < MIN_SIDE:
        raise ValueError(f"style_scale {style_scale} makes the style {long_side} px; at least {MIN_SIDE} px is needed")
    return long_side


def features(
    model: FeatureNetwork, image: Tensor, layers: Sequence[str], precision: str = "fp32", channels_last: bool = False
) -> dict[str, Tensor]:
    """``model.extract(image, layers)`` in a run's precision and memory format, with the feature maps
    in the image's dtype. Image: (B,3,H,W) in [0,1]; returns ``{name: F}``, F (B,N_l,H_l,W_l).

    ``precision="bf16"`` runs the network under bf16 autocast; ``channels_last`` hands it a
    channels-last image (the model's own layout is the caller's to choose)."""
    if channels_last:
        image = image.contiguous(memory_format=torch.channels_last)
    autocast = (  # no cast cache: a CUDA graph capture must not keep casts past the region
        torch.autocast(image.device.type, torch.bfloat16, cache_enabled=False)
        if precision == "bf16"
        else contextlib.nullcontext()
    )
    with autocast:
        out = model.extract(image, layers)
    return {name: F.to(image.dtype) for name, F in out.items()}


@dataclass
class Region:
    """One masked region: its targets A_r^l (1,N_l,N_l) and the content-side multipliers
    (:func:`masks.area_weights`) of its mask at each style layer of the output, (1,1,H_l,W_l)."""

    A: dict[str, Tensor]
    weights: dict[str, Tensor]


@dataclass
class StyleTargets:
    """The per-layer style targets of a run at an output size.

    Attributes:
        layers: ``{name: w_l}``.
        size: the output's (H, W) the targets are scaled to.
        A: ``{name: A^l}``, each (1,N_l,N_l): the (blended) targets; empty with ``regions``.
        regions: with masks, one :class:`Region` per region; else ``None``.
        network: the network whose features they are (``None``: VGG-19); an objective whose style
            network has another :attr:`~nst_lessons.networks.FeatureNetwork.spec` refuses them.
    """

    layers: dict[str, float]
    size: tuple[int, int]
    A: dict[str, Tensor]
    regions: list[Region] | None = None
    network: FeatureNetwork | None = None

    @classmethod
    def from_tensors(
        cls,
        model: FeatureNetwork,
        styles: Sequence[Tensor],
        *,
        style_layers: Sequence[str] | Mapping[str, float] | None = None,
        size: tuple[int, int],
        blend_weights: Sequence[float] | None = None,
        masks: Sequence[tuple[Tensor, Tensor]] | None = None,
        precision: str = "fp32",
        channels_last: bool = False,
    ) -> StyleTargets:
        """Targets from style tensors (1,3,H'_s,W'_s) in [0,1], on the model's device, for an output
        of ``size`` = (H, W). ``masks``: one (content mask (1,1,H,W), style mask (1,1,H'_r,W'_r))
        pair per region, region r taking ``styles[r]``; ``blend_weights`` do not apply then."""
        layers = style_layer_weights(style_layers, model)
        names = list(layers)
        positions = _positions(model, size, names)
        with torch.no_grad():
            F_s = [features(model, s, names, precision, channels_last) for s in styles]
            if masks is None:
                b = normalised_blend_weights(blend_weights, len(styles))
                per_style = [losses.gram_targets(F, names, positions) for F in F_s]
                if len(per_style) == 1:  # exactly the single-style targets, not 1.0 * A
                    return cls(layers, tuple(size), per_style[0], network=model)
                A = {n: sum((w * A_s[n] for w, A_s in zip(b[1:], per_style[1:])), b[0] * per_style[0][n]) for n in names}
                return cls(layers, tuple(size), A, network=model)
            check_regions(len(masks), len(styles), blend_weights)
            regions = []
            for r, ((content_mask, style_mask), F) in enumerate(zip(masks, F_s), start=1):
                T_style = layer_masks(style_mask.to(F[names[0]]), names, model) if names else {}
                T_content = layer_masks(content_mask.to(F[names[0]]), names, model) if names else {}
                masked = {n: F[n] * area_weights(T_style[n], f"style mask {r}") for n in names}
                weights = {n: area_weights(T_content[n], f"content mask {r}") for n in names}
                regions.append(Region(losses.gram_targets(masked, names, positions), weights))
            return cls(layers, tuple(size), {}, regions, network=model)

    @classmethod
    def compute(
        cls,
        model: FeatureNetwork,
        styles: ImageLike | Sequence[ImageLike],
        *,
        style_layers: Sequence[str] | Mapping[str, float] | None = None,
        size: tuple[int, int],
        style_size: int | None = None,
        style_scale: float | None = None,
        blend_weights: Sequence[float] | None = None,
        masks: Sequence[tuple[ImageLike, ImageLike]] | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
        precision: str = "fp32",
    ) -> StyleTargets:
        """Load the style image(s) at their long side (:func:`style_long_side`) and their masks,
        and compute the targets for an output of ``size`` = (H, W) (:meth:`from_tensors`)."""
        images, pairs = load_styles(styles, size, style_size, style_scale, masks, blend_weights, style_layers, model)
        device = next(model.parameters()).device if device is None else torch.device(device)
        tensors = [to_tensor(im, device, dtype) for im in images]
        return cls.from_tensors(
            model, tensors, style_layers=style_layers, size=size, blend_weights=blend_weights, masks=pairs, precision=precision
        )

    def at(self, size: tuple[int, int]) -> StyleTargets:
        """The same targets for an output of ``size`` = (H, W): each A^l rescaled by the ratio of
        the layer's positions M_l (exact when ``size`` is unchanged). Masked targets belong to one
        content image and cannot be moved."""
        if tuple(size) == self.size:
            return self
        if self.regions is not None:
            raise ValueError(f"masked style targets were made for a {self.size[1]}x{self.size[0]} output, not {size[1]}x{size[0]}")
        network = describe_network("vgg19") if self.network is None else self.network
        new, old = _positions(network, size, list(self.layers)), _positions(network, self.size, list(self.layers))
        return StyleTargets(self.layers, tuple(size), {n: A * (new[n] / old[n]) for n, A in self.A.items()}, network=self.network)


def _positions(network: FeatureNetwork, size: tuple[int, int], names: Sequence[str]) -> dict[str, int]:
    """M_l = H_l W_l of each named layer for an input of ``size`` = (H, W)."""
    shapes = network.layer_shapes(*size, names) if names else {}
    return {n: shapes[n][1] * shapes[n][2] for n in names}


def load_masks(
    masks: Sequence[tuple[ImageLike, ImageLike]],
    size: tuple[int, int],
    style_sizes: Sequence[tuple[int, int]],
    blend_weights: Sequence[float] | None = None,
    style_layers: Sequence[str] | Mapping[str, float] | None = None,
    network: FeatureNetwork | None = None,
) -> list[tuple[Tensor, Tensor]]:
    """One (content mask (1,1,H,W), style mask (1,1,H'_r,W'_r)) pair per region, checked and resized
    (:func:`nst_lessons.masks.load_mask`): ``size`` is the output's (H, W), ``style_sizes`` the
    styles' (H'_r, W'_r), one style per region (:func:`check_regions`, with ``blend_weights``).

    Each mask is also carried down to every style layer and must still cover part of it
    (:func:`nst_lessons.masks.check_covers`), so that a region too small for a deep layer is
    refused before any model is loaded (``network``: the style network or its
    :func:`~nst_lessons.networks.describe_network`, default VGG-19)."""
    check_regions(len(masks), len(style_sizes), blend_weights)
    names = list(style_layer_weights(style_layers, network))
    pairs = []
    for r, ((c, s), style_size) in enumerate(zip(masks, style_sizes), start=1):
        pair = load_mask(c, size, f"content mask {r}"), load_mask(s, style_size, f"style mask {r}")
        for side, mask in zip(("content", "style"), pair):
            for name, T in layer_masks(mask, names, network).items():
                check_covers(T, f"{side} mask {r} (at {name})")
        pairs.append(pair)
    return pairs


def shared_targets(
    model: FeatureNetwork, styles: Sequence[ImageLike], size: tuple[int, int], options: Mapping[str, object]
) -> StyleTargets | None:
    """The style targets for outputs of ``size`` = (H, W), computed once for many photos or frames
    from the ``style_transfer`` keyword ``options`` that shape them, or ``None`` where each needs its
    own: with colours matched to each photo (:data:`nst_lessons.color.PHOTO_DEPENDENT_MODES`)."""
    if options.get("preserve_color") in color.PHOTO_DEPENDENT_MODES:
        return None
    return StyleTargets.compute(
        model, styles, style_layers=options.get("style_layers"), size=size,  # type: ignore[arg-type]
        style_size=options.get("style_size"), style_scale=options.get("style_scale"),  # type: ignore[arg-type]
        blend_weights=options.get("style_blend_weights"), dtype=options.get("dtype", torch.float32),  # type: ignore[arg-type]
        precision=getattr(options.get("speed"), "precision", "fp32"),  # a transfer.Speed
    )  # fmt: skip


def load_styles(
    styles: ImageLike | Sequence[ImageLike],
    size: tuple[int, int],
    style_size: int | None = None,
    style_scale: float | None = None,
    masks: Sequence[tuple[ImageLike, ImageLike]] | None = None,
    blend_weights: Sequence[float] | None = None,
    style_layers: Sequence[str] | Mapping[str, float] | None = None,
    network: FeatureNetwork | None = None,
) -> tuple[list[Image.Image], list[tuple[Tensor, Tensor]] | None]:
    """The style image(s) for an output of ``size`` = (H, W), each at its long side
    (:func:`style_long_side`), and their region masks checked and resized (:func:`load_masks`), or
    ``None`` without masks."""
    images = [load_image(s, style_long_side(size, style_size, style_scale)) for s in as_list(styles)]
    sizes = [(im.height, im.width) for im in images]
    pairs = None if masks is None else load_masks(masks, size, sizes, blend_weights, style_layers, network)
    return images, pairs


def as_list(styles: ImageLike | Sequence[ImageLike]) -> list[ImageLike]:
    """One style or several: a path, image or tensor is one; a list or tuple is several."""
    if isinstance(styles, (list, tuple)):
        if not styles:
            raise ValueError("no style image given")
        return list(styles)
    return [styles]


__all__ = ["STYLE_LAYERS", "Region", "StyleTargets", "as_list", "check_regions", "load_masks", "normalised_blend_weights", "features", "style_layer_weights", "style_long_side"]
