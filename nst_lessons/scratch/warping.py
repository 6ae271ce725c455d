"""Backward warping with exact bilinear sampling, in numpy (float64).

:func:`nst_lessons.video.warp` does the same with OpenCV's ``remap``: fast, and exact to float32
on the float32 frames it is given, but its sample positions are float32 and on float64 images it
rounds them to 1/32 pixel (differences up to 0.02 on random images). This is the exact one in
float64, the reference of the ``nst_video`` exercises; :func:`nst_lessons.video.consistency_weights`
takes it as ``warp_with``.
"""

from __future__ import annotations

import numpy as np


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """ω(image)(q) = image(q + flow(q)), bilinear, the border repeated outside the frame.

    Repeating the border is the same as clamping the sample position to the frame: both
    neighbours of a position outside it are then the same border pixel.

    Args:
        image: (H,W) or (H,W,C). flow: (H,W,2) in pixels, flow[..., 0] along x (columns),
            flow[..., 1] along y (rows).

    Returns:
        The warped image, image's shape, float64.
    """
    h, w = flow.shape[:2]
    x = np.clip(np.arange(w)[None, :] + flow[..., 0], 0, w - 1)
    y = np.clip(np.arange(h)[:, None] + flow[..., 1], 0, h - 1)
    x0, y0 = np.minimum(np.floor(x).astype(int), w - 2), np.minimum(np.floor(y).astype(int), h - 2)
    fx, fy = x - x0, y - y0  # in [0, 1]; at the last column or row x0 stops one short and fx = 1
    if image.ndim == 3:
        fx, fy = fx[..., None], fy[..., None]
    a = np.asarray(image, dtype=np.float64)
    top = a[y0, x0] * (1 - fx) + a[y0, x0 + 1] * fx
    bottom = a[y0 + 1, x0] * (1 - fx) + a[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


__all__ = ["warp"]
