"""The losses of Gatys, Ecker & Bethge (2015) and their gradients, derived by hand, in numpy.

For a layer l with N_l filters and M_l = H_l * W_l positions, the paper writes the features as a
matrix F of shape (N_l, M_l): row i is filter i's response at every position.  Every function
here takes F in that layout, or as (N_l, H_l, W_l) maps, and returns dL/dF in the shape it got.

- content:  L = 1/2 sum_ij (F_ij - P_ij)^2                 dL/dF = F - P
- Gram:     G = F F^T                                       (N_l, N_l)
- style:    E_l = 1/(4 N^2 M^2) sum_ij (G_ij - A_ij)^2      dE_l/dF = (G - A) F / (N^2 M^2)
- TV:       sum |x[:, i, j+1] - x[:, i, j]| + |x[:, i+1, j] - x[:, i, j]|   (or squared)
- total:    L = alpha * L_content + beta * L_style + gamma * L_TV

Why dE_l/dF = (G - A) F / (N^2 M^2): G_ij = sum_k F_ik F_jk, so dG_ij/dF_ab = [i=a] F_jb + [j=a] F_ib.
With D = G - A (symmetric), dE/dF_ab = 1/(4N^2M^2) * sum_ij 2 D_ij dG_ij/dF_ab
= 1/(2N^2M^2) * (sum_j D_aj F_jb + sum_i D_ia F_ib) = (D F)_ab / (N^2 M^2).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]

INPUT = "input"
"""The key under which :func:`total_loss` returns dL/dx for a term that acts on the image itself
(TV); :meth:`nst_lessons.scratch.vgg.NumpyVGG19.backward` accepts it beside the layer names."""


def _as_nm(F: Array, name: str = "F") -> Array:
    """F as the paper's (N, M) matrix: (N, M) unchanged, (N, H, W) reshaped to (N, H*W)."""
    F = np.asarray(F, dtype=np.float64)
    if F.ndim == 3:
        return F.reshape(F.shape[0], -1)
    if F.ndim != 2:
        raise ValueError(f"expected {name} of shape (N,M) or (N,H,W), got {F.shape}")
    return F


def gram_matrix(F: Array) -> Array:
    """G = F F^T, unnormalised: G_ij = sum_k F_ik F_jk.

    Args:
        F: shape (N, M) or (N, H, W).

    Returns:
        G, shape (N, N).
    """
    F_nm = _as_nm(F)
    return F_nm @ F_nm.T


def content_loss(F: Array, P: Array) -> tuple[float, Array]:
    """L_content = 1/2 sum (F - P)^2 and dL/dF = F - P.

    Args:
        F: the generated image's features, shape (N, M) or (N, H, W).
        P: the content image's features, the same shape.

    Returns:
        (loss, dF) with dF of F's shape.
    """
    if np.shape(F) != np.shape(P):
        raise ValueError(f"content features {np.shape(F)} and target {np.shape(P)} differ in shape")
    diff = _as_nm(F) - _as_nm(P, "P")
    return 0.5 * float(np.sum(diff**2)), diff.reshape(np.shape(F))


def style_layer_loss(F: Array, A: Array) -> tuple[float, Array]:
    """E_l = 1/(4 N^2 M^2) sum (G - A)^2 and dE_l/dF = (G - A) F / (N^2 M^2).

    Args:
        F: the generated image's features at layer l, shape (N, M) or (N, H, W).
        A: the style image's Gram matrix at layer l, shape (N, N), symmetric.

    Returns:
        (E_l, dF) with dF of F's shape.
    """
    F_nm = _as_nm(F)
    N, M = F_nm.shape
    A = np.asarray(A, dtype=np.float64)
    if A.shape != (N, N):
        raise ValueError(f"style target of shape {A.shape} does not match {N} filters; expected ({N}, {N})")
    if not np.allclose(A, A.T):
        raise ValueError("the style target A must be symmetric (a Gram matrix)")
    D = gram_matrix(F_nm) - A
    norm = float(N**2 * M**2)
    return float(np.sum(D**2)) / (4 * norm), (D @ F_nm / norm).reshape(np.shape(F))


def style_loss(
    features: Mapping[str, Array],
    targets: Mapping[str, Array],
    layer_weights: Mapping[str, float] | None = None,
) -> tuple[float, dict[str, Array]]:
    """L_style = sum_l w_l E_l over the layers in ``targets``, and dL_style/dF_l = w_l dE_l/dF_l.

    Args:
        features: ``{layer: F_l}``, each (N_l, M_l) or (N_l, H_l, W_l).
        targets: ``{layer: A_l}``, each the style image's Gram (N_l, N_l).
        layer_weights: ``{layer: w_l}``; default 1/|L| for every layer, as in the paper.

    Returns:
        (loss, ``{layer: dF_l}``).
    """
    missing = [name for name in targets if name not in features]
    if missing:
        raise ValueError(f"no features for style layer(s) {missing}")
    weights = layer_weights or {name: 1.0 / len(targets) for name in targets}
    loss, grads = 0.0, {}
    for name, A in targets.items():
        E, dF = style_layer_loss(features[name], A)
        loss += weights[name] * E
        grads[name] = weights[name] * dF
    return loss, grads


def tv_loss(x: Array, squared: bool = False) -> tuple[float, Array]:
    """Total variation of an image and its (sub)gradient.

    With d = x[:, :, j+1] - x[:, :, j] (and likewise down the rows), each difference adds
    |d| (or d^2) to the loss; it depends on x[.., j+1] with slope +s and on x[.., j] with slope -s,
    where s = sign(d) (0 at d = 0, as torch takes it) or s = 2d for the squared form.

    Args:
        x: image, shape (C, H, W).
        squared: use squared differences instead of absolute ones.

    Returns:
        (loss, dx) with dx of shape (C, H, W).
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 3:
        raise ValueError(f"expected an image of shape (C,H,W), got {x.shape}")
    dw = x[:, :, 1:] - x[:, :, :-1]
    dh = x[:, 1:, :] - x[:, :-1, :]
    if squared:
        loss, sw, sh = np.sum(dw**2) + np.sum(dh**2), 2 * dw, 2 * dh
    else:
        loss, sw, sh = np.sum(np.abs(dw)) + np.sum(np.abs(dh)), np.sign(dw), np.sign(dh)
    dx = np.zeros_like(x)
    dx[:, :, 1:] += sw
    dx[:, :, :-1] -= sw
    dx[:, 1:, :] += sh
    dx[:, :-1, :] -= sh
    return float(loss), dx


def total_loss(
    alpha: float,
    content: tuple[float, Mapping[str, Array]],
    beta: float,
    style: tuple[float, Mapping[str, Array]],
    gamma: float = 0.0,
    tv: tuple[float, Array] | None = None,
) -> tuple[float, dict[str, Array]]:
    """L_total = alpha * L_content + beta * L_style + gamma * L_TV, with its gradients.

    Each term comes as the (loss, gradient) pair its function returned, so the weights scale both.
    A layer that serves content and style gets the sum of both gradients.

    Args:
        alpha, beta, gamma: the weights alpha, beta, gamma.
        content: (L_content, ``{layer: dL_content/dF_l}``).
        style: (L_style, ``{layer: dL_style/dF_l}``), as from :func:`style_loss`.
        tv: (L_TV, dL_TV/dx) from :func:`tv_loss`, or None for no TV term.

    Returns:
        (L_total, grads) where grads maps each layer to dL_total/dF_l and, if ``tv`` is given,
        :data:`INPUT` to the direct gradient gamma * dL_TV/dx of shape (C, H, W).
    """
    grads: dict[str, Array] = {}
    for weight, (_, layer_grads) in ((alpha, content), (beta, style)):
        for name, dF in layer_grads.items():
            grads[name] = grads[name] + weight * dF if name in grads else weight * dF
    loss = alpha * content[0] + beta * style[0]
    if tv is not None:
        loss += gamma * tv[0]
        grads[INPUT] = gamma * tv[1]
    return float(loss), grads


__all__ = [
    "INPUT",
    "content_loss",
    "gram_matrix",
    "style_layer_loss",
    "style_loss",
    "total_loss",
    "tv_loss",
]
