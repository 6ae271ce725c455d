"""Spatial control (Gatys, Ecker, Bethge, Hertzmann & Shechtman 2017, §4): a different style in
each region of the photo.

Region r has a mask T_r on the content image and one on its style image, values in [0,1]
(white = inside). At a style layer l the masks are carried down to the layer's H_l x W_l grid and
weight the positions of the feature maps (the paper's guided Gram matrices, eq. 8); the region's
Gram is divided by the region's area sum_k T_r^l[k] instead of by all M_l positions:

    G_r^l = F^l diag(T_r^l) (F^l)^T * M_l / sum_k T_r^l[k]        (N_l x N_l)

so a region asks for the same correlations per position as a whole image would: an all-ones mask
gives exactly the unmasked Gram, and regions that partition the image have Grams whose
area-weighted sum is the whole image's, sum_r (sum_k T_r^l[k] / M_l) G_r^l = G^l. The style loss
sums over regions: L_style = sum_r sum_l w_l E_l,r.

Each position is weighted by T: that is this package's choice. Gatys et al. (2017, eq. 8, and their
code, NeuralImageSynthesis' ``gram_matrix_guided``) multiply the feature maps by the guide,
F ∘ T, which weights each position by T^2, and normalise the guide so that sum_k T^2 = M_l:
G_r^l = F^l diag(T_r^l)^2 (F^l)^T * M_l / sum_k T_r^l[k]^2 (``area_weights(T, power=2)``). The two
agree on binary masks; on soft boundaries T^2 gives a boundary position less weight, and the
weights of regions that partition the image no longer add up to 1 there.

Carrying a mask down is the network's to say (:meth:`nst_lessons.networks.FeatureNetwork.layer_masks`).
In VGG the convolutions (3x3, padding 1) keep the grid, and at each 2x2 pooling the mask is
*average*-pooled in the same 2x2 windows (cropping an odd last row or
column, as the network does). Average pooling keeps the fraction of each window that lies in the
region, so boundary positions get soft weights, and because it is linear, masks that partition
the image (sum_r T_r = 1 everywhere) still partition every layer's grid: no position is counted
twice or dropped. Max pooling would grow every region by a window at each pooling (positions near a
boundary counted in both regions); nearest sampling would make the partition depend on which pixel
of each window happens to be sampled.

Masks: any image (converted to grey, 0-255 -> [0,1]) or a tensor / array (H,W), (1,H,W) or
(1,1,H,W) in [0,1]. Grey values are soft weights *relative to the rest of the same mask* (a binary
mask is the usual case; values between 0 and 1 weight a position partly, as at the boundaries
above). Because each Gram is divided by its mask's area, any overall scale of a mask cancels: a
uniform 0.5 mask is the same as an all-white one, and a mask drawn at 1/255 gets the full style
weight, not a faint one (:func:`load_mask` warns when a mask's brightest value is below
:data:`FAINT`); to weaken a region's style, lower ``style_weight`` or blend styles instead. Where no
content mask covers a pixel, that pixel has no style loss at all (only the content and TV terms
shape it); masks that should cover the whole photo must add up to 1 there. A mask must have its
image's aspect ratio (within a pixel) and is resized to the image's size; an all-black mask is
refused.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as nnf
from PIL import Image
from torch import Tensor

from nst_lessons.images import ImageError, ImageLike, _open
from nst_lessons.networks import FeatureNetwork, describe_network


FAINT = 0.5
"""A mask whose brightest value is below this gets a warning: its scale cancels (see above)."""


def load_mask(mask: ImageLike, size: tuple[int, int], what: str = "mask") -> Tensor:
    """A mask as a (1,1,H,W) float32 tensor in [0,1] at the image size ``size`` = (H, W).

    Args:
        mask: a path or PIL image (converted to grey), or a tensor / array (H,W), (1,H,W) or
            (1,1,H,W) with values in [0,1].
        size: the (H, W) of the image the mask belongs to.
        what: how to name the mask in messages, e.g. ``"content mask 2"``.

    Raises:
        ImageError: unreadable, values outside [0,1], a different aspect ratio, or all zero.

    Warns:
        UserWarning: the mask's brightest value is below :data:`FAINT` (it still acts at full
            strength: only its relative grey levels count).
    """
    if isinstance(mask, (Tensor, np.ndarray)):
        m = torch.as_tensor(mask).detach().float().cpu()
        if m.dim() not in (2, 3, 4) or math.prod(m.shape[:-2]) != 1:
            raise ImageError(f"{what}: expected a single-channel mask (H,W) or (1,1,H,W), got {tuple(m.shape)}")
        if not bool(((m >= 0) & (m <= 1)).all()):
            raise ImageError(f"{what}: values must lie in [0,1]")
        m = m.reshape(1, 1, *m.shape[-2:])
    else:
        im = mask if isinstance(mask, Image.Image) else _open(mask)
        m = torch.from_numpy(np.asarray(im.convert("L"), dtype=np.float32) / 255.0)[None, None]
    (mh, mw), (h, w) = m.shape[-2:], size
    if abs(mh * w / mw - h) > 1:
        raise ImageError(
            f"{what} is {mw}x{mh} pixels but its image is {w}x{h}: the aspect ratios differ; "
            "draw the mask on the image itself"
        )
    if (mh, mw) != (h, w):
        m = nnf.interpolate(m, size=(h, w), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
    if not bool((m > 0).any()):
        raise ImageError(f"{what} is empty (all black): its region would have no positions")
    if (brightest := float(m.max())) < FAINT:
        warnings.warn(
            f"{what} is at most {brightest:.3g}: a mask is divided by its area, so its region still gets "
            "the full style weight (only relative grey levels count)",
            stacklevel=2,
        )
    return m


def layer_masks(mask: Tensor, layers: Iterable[str], network: FeatureNetwork | None = None) -> dict[str, Tensor]:
    """A mask carried down ``network`` (default VGG-19) to each named layer: for VGG, average-pooled
    2x2 at every pooling before it (:meth:`~nst_lessons.networks.FeatureNetwork.layer_masks`).

    Args:
        mask: (B,1,H,W), the image-sized mask.
        layers: names of the network's layers.

    Returns:
        ``{name: T^l}``, each (B,1,H_l,W_l), the grid of that layer's feature maps.
    """
    layers = list(layers)
    network = describe_network("vgg19") if network is None else network
    for name in layers:
        network.layer_index(name)
    return network.layer_masks(mask, layers)


def check_covers(T: Tensor, what: str = "mask") -> None:
    """An ``ImageError`` if the carried-down mask T (B,1,H,W) has no weight left: the region is too
    small (or only in a row or column the poolings crop) to reach that layer."""
    if not bool(T.sum() > 0):
        raise ImageError(f"{what} covers nothing of a {T.shape[-2]}x{T.shape[-1]} feature map; draw a larger region")


def area_weights(T: Tensor, what: str = "mask", power: int = 1) -> Tensor:
    """sqrt(T^p * M / sum T^p), M = H W: the multiplier that turns F into the region's features, so
    that G(F ∘ area_weights(T)) = F diag(T)^p F^T * M / sum T^p. An all-ones T gives exactly ones.

    ``power=1`` (the package's guided Gram) weights each position by T; ``power=2`` is Gatys et
    al.'s (2017) form, the feature maps multiplied by T (T * sqrt(M / sum T^2)).

    Made once per run (the check reads a value back from the device).

    Args:
        T: (B,1,H,W), a mask carried down to a layer's grid (:func:`layer_masks`).
        power: 1 or 2.

    Returns:
        (B,1,H,W).
    """
    if power not in (1, 2):
        raise ValueError(f"power must be 1 or 2, got {power!r}")
    check_covers(T, what)
    weighted = T if power == 1 else T * T
    return (weighted * (T.shape[-2] * T.shape[-1] / weighted.sum())).sqrt()


__all__ = ["FAINT", "area_weights", "check_covers", "layer_masks", "load_mask"]
