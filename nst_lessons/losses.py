"""The losses of Gatys, Ecker & Bethge (2015), in torch, in the paper's notation.

For a layer l with N_l filters, each a feature map of M_l = H_l * W_l positions, the features of
an image are F of shape (B, N_l, H_l, W_l) (the paper's F^l is one batch item viewed as N_l x M_l).

- content:  L_content = 1/2 * sum_ij (F_ij - P_ij)^2                       (P: the photo's features)
- Gram:     G_ij = sum_k F_ik F_jk                                           (G = F F^T, N_l x N_l)
- style:    E_l = 1 / (4 N_l^2 M_l^2) * sum_ij (G_ij - A_ij)^2               (A: the painting's Gram)
            L_style = sum_l w_l E_l
- TV:       sum |x[..., i, j+1] - x[..., i, j]| + |x[..., i+1, j] - x[..., i, j]|  (or squared)
- temporal: L_temporal = 1/D * sum_k c_k (x_k - w_k)^2, D = C*H*W            (Ruder et al. 2016; w: the
            previous stylised frame warped to this one, c: per-pixel weights, 0 at occlusions)
- total:    L_total = alpha * L_content + beta * L_style + gamma * L_TV (+ lambda * L_temporal for video)

Every function preserves dtype, so float64 inputs give float64 losses for gradient checks.
Sums run over the batch too. The hand-derived gradients dL/dF (used by the "manual" gradient mode
of :func:`nst_lessons.transfer.style_transfer`) sit beside each loss; numpy twins of all of this,
written independently, live in :mod:`nst_lessons.scratch` and check one another in the tests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor


def _as_nm(F: Tensor) -> Tensor:
    """(B, N, H, W) -> (B, N, M) with M = H*W."""
    if F.dim() != 4:
        raise ValueError(f"expected feature maps of shape (B,N,H,W), got {tuple(F.shape)}")
    return F.flatten(2)


class _Gram(torch.autograd.Function):
    """G = F F^T for F (B, N, M), with autograd's own backward for that product,
    dL/dF = dL/dG F + ((F^T) dL/dG)^T, its two terms summed in place: the same numbers, bitwise.
    (Autograd sums them out of place, which cost the loss terms about 15% more CPU time at
    128x160 px; see bench/README.md.)"""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, F_nm: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(F_nm)
        return F_nm @ F_nm.transpose(1, 2)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> Tensor:  # type: ignore[override]
        (F_nm,) = ctx.saved_tensors  # type: ignore[attr-defined]
        return torch.bmm(grad, F_nm).add_(torch.bmm(F_nm.transpose(1, 2), grad).transpose(1, 2))


class _SymmetricGram(_Gram):
    """G = F F^T with dL/dF = (dL/dG + dL/dG^T) F: one N x N x M product in the backward instead of
    two (equal up to rounding, not bitwise)."""

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> Tensor:  # type: ignore[override]
        (F_nm,) = ctx.saved_tensors  # type: ignore[attr-defined]
        return torch.bmm(grad + grad.transpose(1, 2), F_nm)


def gram_matrix(F: Tensor, symmetric_backward: bool = False) -> Tensor:
    """G = F F^T, not normalised.

    Args:
        F: feature maps, shape (B, N, H, W).
        symmetric_backward: compute dL/dF as (dL/dG + dL/dG^T) F, one product where the default
            has two: a third fewer multiply-adds for forward and backward, the same gradient up to
            rounding. Off by default, which keeps autograd's own numbers bitwise.

    Returns:
        G, shape (B, N, N).
    """
    return (_SymmetricGram if symmetric_backward else _Gram).apply(_as_nm(F))


def content_loss(F: Tensor, P: Tensor) -> Tensor:
    """L_content = 1/2 sum (F - P)^2. F, P: shape (B, N, H, W). Returns a scalar."""
    if F.shape != P.shape:
        raise ValueError(f"content features {tuple(F.shape)} and target {tuple(P.shape)} differ in shape")
    return 0.5 * (F - P).pow(2).sum()


def content_grad(F: Tensor, P: Tensor) -> Tensor:
    """dL_content/dF = F - P, shape (B, N, H, W)."""
    return F - P


def _style_norm(F: Tensor) -> tuple[int, int]:
    _, N, H, W = F.shape
    return N, H * W


def style_layer_loss(F: Tensor, A: Tensor, symmetric_backward: bool = False) -> Tensor:
    """E_l = 1/(4 N^2 M^2) sum (G(F) - A)^2.

    Args:
        F: the generated image's features at layer l, shape (B, N, H, W).
        A: the style image's Gram matrix at that layer, shape (B, N, N) or (N, N).
        symmetric_backward: see :func:`gram_matrix`.

    Returns:
        A scalar.
    """
    N, M = _style_norm(F)
    G = gram_matrix(F, symmetric_backward)
    if A.shape[-2:] != (N, N):
        raise ValueError(f"style target of shape {tuple(A.shape)} does not match {N} filters")
    return (G - A).pow(2).sum() / (4 * N**2 * M**2)


def style_layer_grad(F: Tensor, A: Tensor) -> Tensor:
    """dE_l/dF = (G - A) F / (N^2 M^2), shape (B, N, H, W) (G and A are symmetric)."""
    N, M = _style_norm(F)
    G = gram_matrix(F)
    return ((G - A) @ _as_nm(F)).view_as(F) / (N**2 * M**2)


def style_loss(
    features: Mapping[str, Tensor],
    targets: Mapping[str, Tensor],
    layer_weights: Mapping[str, float] | None = None,
    symmetric_backward: bool = False,
) -> Tensor:
    """L_style = sum_l w_l E_l over the layers in ``targets``.

    Args:
        features: ``{layer: F}``, each (B, N_l, H_l, W_l).
        targets: ``{layer: A}``, each the style Gram (B, N_l, N_l) or (N_l, N_l).
        layer_weights: ``{layer: w_l}``; default 1/|L| for every layer, as in the paper.
        symmetric_backward: see :func:`gram_matrix`.
    """
    weights = layer_weights or {name: 1.0 / len(targets) for name in targets}
    return sum(weights[name] * style_layer_loss(features[name], A, symmetric_backward) for name, A in targets.items())


def tv_loss(x: Tensor, squared: bool = False) -> Tensor:
    """Total variation of images x, shape (B, C, H, W) or (C, H, W).

    L1 (default): sum |x[..., i, j+1] - x[..., i, j]| + |x[..., i+1, j] - x[..., i, j]|.
    ``squared=True``: the same with squared differences (smooth, and gentler on edges it keeps).
    """
    dw = x[..., :, 1:] - x[..., :, :-1]
    dh = x[..., 1:, :] - x[..., :-1, :]
    if squared:
        return dw.pow(2).sum() + dh.pow(2).sum()
    return dw.abs().sum() + dh.abs().sum()


def tv_grad(x: Tensor, squared: bool = False) -> Tensor:
    """dL_TV/dx, same shape as x: each difference d = x[k+1] - x[k] sends dphi/dd to x[k+1] and its
    negative to x[k], with dphi/dd = sign(d) for the L1 form (0 at d = 0, as autograd does) or 2d."""
    dw = x[..., :, 1:] - x[..., :, :-1]
    dh = x[..., 1:, :] - x[..., :-1, :]
    gw, gh = (2 * dw, 2 * dh) if squared else (dw.sign(), dh.sign())
    g = torch.zeros_like(x)
    g[..., :, 1:] += gw
    g[..., :, :-1] -= gw
    g[..., 1:, :] += gh
    g[..., :-1, :] -= gh
    return g


def temporal_loss(x: Tensor, warped: Tensor, c: Tensor) -> Tensor:
    """Ruder, Dosovitskiy & Brox (2016)'s short-term temporal loss for video frames:
    1/D * sum_k c_k (x_k - w_k)^2 with D = C*H*W (the mean over pixels and channels).

    x, warped: (B, C, H, W), ``warped`` the previous stylised frame carried along the optical flow to
    this frame; c: (B, 1, H, W) or (B, C, H, W), per-pixel weights in [0, 1] (0 where the flow is
    unreliable: occlusions and motion boundaries), broadcast over channels.
    """
    d = x - warped
    return (c * d * d).sum() / (x.shape[-3] * x.shape[-2] * x.shape[-1])


def temporal_grad(x: Tensor, warped: Tensor, c: Tensor) -> Tensor:
    """dL_temporal/dx = 2/D * c * (x - w), shape of x."""
    return (2.0 / (x.shape[-3] * x.shape[-2] * x.shape[-1])) * c * (x - warped)


def total_loss(
    alpha: float,
    content: Tensor,
    beta: float,
    style: Tensor,
    gamma: float = 0.0,
    tv: Tensor | float = 0.0,
) -> Tensor:
    """L_total = alpha * L_content + beta * L_style + gamma * L_TV (scalars in, a scalar out)."""
    return alpha * content + beta * style + gamma * tv


def gram_targets(
    features: Mapping[str, Tensor], layers: Sequence[str], positions: Mapping[str, int] | None = None
) -> dict[str, Tensor]:
    """The style targets A_l = G(F_l) of the style image's features F_l (B, N_l, H'_l, W'_l), detached.

    G sums over positions, so it grows with the image. The paper's style and generated images are
    the same size; when they are not, pass ``positions`` = ``{layer: M_l}`` of the generated image
    and each A_l is rescaled by M_l / M'_l (M'_l = H'_l W'_l): the style then asks for the same
    correlations per position whatever its size (what Gatys' own code gets by dividing G by M).
    """
    targets = {}
    for name in layers:
        F = features[name]
        scale = 1.0 if positions is None else positions[name] / (F.shape[-2] * F.shape[-1])
        targets[name] = gram_matrix(F).detach() * scale
    return targets


__all__ = [
    "content_grad",
    "content_loss",
    "gram_matrix",
    "gram_targets",
    "style_layer_grad",
    "style_layer_loss",
    "style_loss",
    "temporal_grad",
    "temporal_loss",
    "total_loss",
    "tv_grad",
    "tv_loss",
]
