"""Colour control for style transfer (Gatys, Ecker, Bethge, Hertzmann & Shechtman, *Controlling
Perceptual Factors in Neural Style Transfer*, CVPR 2017, §5).

Images are tensors of shape (..., 3, H, W) with values in [0,1]; every leading dimension is kept,
and each image (each index of the leading dimensions) is treated on its own. Everything is computed
in float64 and returned in the input's dtype.

Three ways to keep the photo's colours, selected by ``preserve_color``:

- ``"yuv"``: after an ordinary run, keep the result's luminance Y and put back the photo's chroma
  (jcjohnson/neural-style's ``-original_colors``).
- ``"luminance"`` (§5.1): run the transfer on luminance alone. The style's luminance L_S is first
  matched to the content's mean and standard deviation, L_S' = (σ_C/σ_S)(L_S − μ_S) + μ_C, so that
  the painting's brightness does not replace the photo's; the photo's chroma is put back afterwards.
- ``"histogram"`` (§5.2): before the run, move the style image's pixels x to x' = A(x − μ_S) + μ_C so
  that their mean and 3x3 covariance equal the photo's (μ: the mean colour, Σ: the covariance of the
  colours), with A from the Cholesky factors or the symmetric square roots of Σ_S and Σ_C.

The colour space is YIQ, as in Gatys et al. (2017, §5.1). Which one is used does not change the
results here: YUV and YIQ share Y = 0.299 R + 0.587 G + 0.114 B, and their chroma rows each sum to 0
(grey has no chroma), so both chroma pairs are invertible linear maps of (B − Y, R − Y) (IQ is UV
rotated by 33° and mirrored, to the rounding of the published coefficients). Keeping one image's Y
and another's chroma therefore gives the same RGB in either space: out = content + (Y_result −
Y_content) on every channel.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import Tensor

COLOR_MODES = ("yuv", "luminance", "histogram")
"""The values ``preserve_color`` accepts (besides ``None``, no colour control)."""

PHOTO_DEPENDENT_MODES = ("luminance", "histogram")
"""The modes whose :func:`prepare` changes the styles to suit the photo, so that the style targets
A^l belong to one photo (or frame) and cannot be shared by several."""

MATCH_MODES = ("cholesky", "pca")
"""The two choices of A in :func:`match_color`."""

EPS = 1e-12
"""Added to the diagonal of each 3x3 colour covariance before it is factored, so that a flat-colour
(or greyscale, rank-1) image gives a finite A instead of a NaN. It moves the matched covariance by
about ε·|Σ_C|/λ_min(Σ_S): a painting whose colours lie almost in a plane has a tiny smallest
eigenvalue λ_min (the generated "waves" example: 4e-6, near the variance of 8-bit quantisation noise,
255⁻²/12 ≈ 1.3e-6), and with this ε its match is still off by only ~3e-9."""

FLAT_PALETTE = 1e-4
""":func:`color_transform` warns when λ_min(Σ_S)/λ_max(Σ_S) of the source is below this. ε cannot help
such a nearly grey (or nearly planar) palette: the colour noise along its thin direction is
stretched by up to sqrt(λ_C/λ_min) to the photo's spread, beyond [0,1] (random grey pixels with
colour noise of standard deviation 0.004, ratio 6e-5, matched to the Grace Hopper photo at 64 px:
values from -0.58 to 1.19, 15% of them clamped by :func:`prepare`; the generated "waves", 7e-5:
13.6%). ``preserve_color="luminance"`` or ``"yuv"``
suit such a painting better."""

# YIQ (FCC NTSC 1953); Y is Rec. 601 luma. Each chroma row sums to 0: grey (r, r, r) has I = Q = 0.
_RGB_TO_YIQ = torch.tensor(
    [
        [0.299, 0.587, 0.114],
        [0.5959, -0.2746, -0.3213],
        [0.2115, -0.5227, 0.3112],
    ],
    dtype=torch.float64,
)
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)


def _check_rgb(x: Tensor, name: str = "image") -> None:
    if x.dim() < 3 or x.shape[-3] != 3:
        raise ValueError(f"expected an RGB {name} of shape (..., 3, H, W), got {tuple(x.shape)}")


def check_mode(mode: str | None) -> None:
    """A ``ValueError`` unless ``mode`` is ``None`` or one of :data:`COLOR_MODES`."""
    if mode is not None and mode not in COLOR_MODES:
        raise ValueError(f"unknown preserve_color {mode!r}; expected yuv, luminance or histogram")


def _mix(matrix: Tensor, x: Tensor) -> Tensor:
    """Apply a 3x3 matrix to the channels: (3, 3) and (..., 3, H, W) -> (..., 3, H, W), in x's dtype."""
    out = torch.einsum("ij,...jhw->...ihw", matrix.to(x.device), x.double())
    return out.to(x.dtype)


def rgb_to_yiq(x: Tensor) -> Tensor:
    """RGB -> YIQ. x: (..., 3, H, W) -> (..., 3, H, W), channels Y, I, Q."""
    _check_rgb(x)
    return _mix(_RGB_TO_YIQ, x)


def yiq_to_rgb(x: Tensor) -> Tensor:
    """YIQ -> RGB, the exact inverse of :func:`rgb_to_yiq`. x: (..., 3, H, W) -> (..., 3, H, W)."""
    _check_rgb(x, "YIQ image")
    return _mix(_YIQ_TO_RGB, x)


def luminance(x: Tensor) -> Tensor:
    """Y = 0.299 R + 0.587 G + 0.114 B. x: (..., 3, H, W) -> (..., 1, H, W)."""
    return rgb_to_yiq(x)[..., :1, :, :]


def _moments(x: Tensor) -> tuple[Tensor, Tensor]:
    """Per-image channel mean and standard deviation (population, over H*W) in float64.

    x: (..., C, H, W) -> μ, σ each (..., C, 1, 1)."""
    x = x.double()
    mu = x.mean(dim=(-2, -1), keepdim=True)
    sigma = (x - mu).pow(2).mean(dim=(-2, -1), keepdim=True).sqrt()
    return mu, sigma


def match_luminance(L_S: Tensor, L_C: Tensor) -> Tensor:
    """Gatys et al. 2017, §5.1: L_S' = (σ_C/σ_S)(L_S − μ_S) + μ_C, per image.

    Gives the style's luminance the content's mean μ_C and standard deviation σ_C (population,
    over all pixels). A flat style luminance (σ_S = 0) stays flat, at μ_C. Not clamped to [0,1].

    Args:
        L_S: the style's luminance, shape (..., 1, H_S, W_S).
        L_C: the content's luminance, shape (..., 1, H_C, W_C) (the sizes may differ).

    Returns:
        L_S', shape and dtype of L_S.
    """
    mu_S, sigma_S = _moments(L_S)
    mu_C, sigma_C = _moments(L_C)
    scale = torch.where(sigma_S > 0, sigma_C / sigma_S.clamp_min(torch.finfo(torch.float64).tiny), 0.0)
    return (scale * (L_S.double() - mu_S) + mu_C).to(L_S.dtype)


def color_statistics(x: Tensor) -> tuple[Tensor, Tensor]:
    """The mean colour μ and the 3x3 colour covariance Σ (population, over H*W), in float64.

    x: (..., 3, H, W) -> μ (..., 3), Σ (..., 3, 3)."""
    _check_rgb(x)
    pixels = x.double().flatten(-2)  # (..., 3, M)
    mu = pixels.mean(-1)
    centred = pixels - mu.unsqueeze(-1)
    return mu, centred @ centred.transpose(-1, -2) / pixels.shape[-1]


def _sqrt_and_inverse_sqrt(sigma: Tensor) -> tuple[Tensor, Tensor]:
    """Σ^½ and Σ^−½ of symmetric positive definite (..., 3, 3) matrices, from Σ = V diag(λ) Vᵀ."""
    lam, V = torch.linalg.eigh(sigma)
    root = lam.sqrt()
    return (V * root.unsqueeze(-2)) @ V.transpose(-1, -2), (V / root.unsqueeze(-2)) @ V.transpose(-1, -2)


def _warn_if_flat(sigma: Tensor) -> None:
    """Warn (one line) when a (..., 3, 3) colour covariance with some spread is almost singular."""
    lam = torch.linalg.eigvalsh(sigma)
    ratio = lam[..., 0].clamp_min(0) / lam[..., -1]
    worst = ratio[lam[..., -1] > 0].min() if bool((lam[..., -1] > 0).any()) else None
    if worst is not None and worst < FLAT_PALETTE:
        warnings.warn(
            f"the style's colours are almost grey or planar (λ_min/λ_max of their covariance {worst:.1e} < "
            f"{FLAT_PALETTE:g}): matching stretches their colour noise, and many values will be clamped; "
            'preserve_color="luminance" or "yuv" may suit this painting better',
            stacklevel=3,
        )


def color_transform(
    source: Tensor, target: Tensor, mode: str = "cholesky", eps: float = EPS
) -> tuple[Tensor, Tensor, Tensor]:
    """The affine map of Gatys et al. 2017, §5.2, x' = A(x − μ_S) + μ_C, from ``source`` to ``target``.

    Any A with A Σ_S Aᵀ = Σ_C matches the covariance; the two standard choices are

    - ``"cholesky"``: A = L_C L_S⁻¹ with Σ = L Lᵀ (L lower triangular), so A is lower triangular;
    - ``"pca"``: A = Σ_C^½ Σ_S^−½ with the symmetric square roots from the eigendecomposition
      Σ = V diag(λ) Vᵀ, Σ^½ = V diag(√λ) Vᵀ (the paper's "image analogies" variant). A itself is not
      symmetric unless Σ_S and Σ_C commute; A Σ_S^½ = Σ_C^½ is.

    Both Σ_S and Σ_C get ε on their diagonal first (see :data:`EPS`), so a flat or greyscale image
    gives a finite A; its missing colour directions then stay at μ_C. A source whose palette is
    nearly grey or planar (λ_min/λ_max of Σ_S below :data:`FLAT_PALETTE`) gives a ``UserWarning``.

    Args:
        source: the image whose colours are moved (the style), shape (..., 3, H_S, W_S).
        target: the image whose colour statistics are wanted (the content), shape (..., 3, H_C, W_C);
            the leading dimensions must broadcast with the source's.
        mode: ``"cholesky"`` or ``"pca"``.
        eps: the regularisation ε ≥ 0.

    Returns:
        A (..., 3, 3), μ_S (..., 3), μ_C (..., 3), all float64.
    """
    if mode not in MATCH_MODES:
        raise ValueError(f"unknown match_color mode {mode!r}; expected cholesky or pca")
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    mu_S, sigma_S = color_statistics(source)
    mu_C, sigma_C = color_statistics(target)
    _warn_if_flat(sigma_S)
    ridge = eps * torch.eye(3, dtype=torch.float64, device=sigma_S.device)
    sigma_S, sigma_C = sigma_S + ridge, sigma_C + ridge
    if mode == "cholesky":
        L_S, L_C = torch.linalg.cholesky(sigma_S), torch.linalg.cholesky(sigma_C)
        # A = L_C L_S⁻¹, computed as the solution of A L_S = L_C rather than with an explicit inverse.
        A = torch.linalg.solve_triangular(L_S, L_C, upper=False, left=False)
    else:
        root_C, _ = _sqrt_and_inverse_sqrt(sigma_C)
        _, inv_root_S = _sqrt_and_inverse_sqrt(sigma_S)
        A = root_C @ inv_root_S
    return A, mu_S, mu_C


def match_color(source: Tensor, target: Tensor, mode: str = "cholesky", eps: float = EPS) -> Tensor:
    """Gatys et al. 2017, §5.2: x' = A(x − μ_S) + μ_C, so that the source's mean colour and colour
    covariance become the target's (up to the ε of :data:`EPS`). Not clamped to [0,1].

    Args:
        source: (..., 3, H_S, W_S), the image to recolour (the style).
        target: (..., 3, H_C, W_C), the image whose colours to take (the content).
        mode: ``"cholesky"`` or ``"pca"`` (see :func:`color_transform`).
        eps: the regularisation ε.

    Returns:
        x', shape and dtype of ``source``.
    """
    A, mu_S, mu_C = color_transform(source, target, mode, eps)
    pixels = source.double().flatten(-2)  # (..., 3, M)
    moved = A @ (pixels - mu_S.unsqueeze(-1)) + mu_C.unsqueeze(-1)
    return moved.reshape(source.shape).to(source.dtype)


def _gray3(Y: Tensor) -> Tensor:
    """(..., 1, H, W) -> (..., 3, H, W): a luminance image as the grey RGB image with that Y."""
    return Y.expand(*Y.shape[:-3], 3, *Y.shape[-2:]).contiguous()


def prepare(mode: str | None, content: Tensor, styles: Sequence[Tensor]) -> tuple[Tensor, list[Tensor]]:
    """Colour pre-processing before the run.

    - ``None`` and ``"yuv"``: unchanged.
    - ``"luminance"``: the content's Y, and each style's Y matched to it (:func:`match_luminance`),
      each repeated to three channels (a grey image whose Y is that luminance, since the Y
      coefficients sum to 1).
    - ``"histogram"``: each style's colours matched to the content's (:func:`match_color`, Cholesky).

    Matched images are clamped to [0,1], the range of the images the transfer takes. Where the
    match stretches colours out of that range this costs part of the match (the generated "waves"
    matched to the Grace Hopper photo at 64 px: 13.6% of the values clamped, covariance then off
    by up to 0.04; notebook 10 shows it; :func:`color_transform` warns of such palettes).

    Args:
        mode: ``None`` or one of :data:`COLOR_MODES`.
        content: (..., 3, H, W).
        styles: each (..., 3, H_s, W_s).

    Returns:
        (content_run, styles_run), shapes as given.

    Raises:
        ValueError: an unknown mode.
    """
    check_mode(mode)
    _check_rgb(content, "content image")
    for style in styles:
        _check_rgb(style, "style image")
    if mode == "luminance":
        L_C = luminance(content)
        styles_run = [_gray3(match_luminance(luminance(s), L_C).clamp(0, 1)) for s in styles]
        return _gray3(L_C), styles_run
    if mode == "histogram":
        return content, [match_color(s, content).clamp(0, 1) for s in styles]
    return content, list(styles)


def finish(mode: str | None, result: Tensor, content: Tensor) -> Tensor:
    """Colour post-processing after the run.

    ``None`` and ``"histogram"``: unchanged. ``"yuv"`` and ``"luminance"``: the result's Y with the
    content's chroma (I and Q), back in RGB, clamped to [0,1].

    Args:
        mode: ``None`` or one of :data:`COLOR_MODES`.
        result: the stylised image, (..., 3, H, W).
        content: the content photo at the result's size, (..., 3, H, W).

    Returns:
        The image, shape and dtype of ``result``.

    Raises:
        ValueError: an unknown mode, or a content of another size than the result.
    """
    check_mode(mode)
    if mode not in ("yuv", "luminance"):
        return result
    _check_rgb(result, "result")
    if content.shape[-3:] != result.shape[-3:]:
        raise ValueError(
            f"the content {tuple(content.shape[-2:])} must be at the result's size {tuple(result.shape[-2:])}"
        )
    yiq = torch.cat([luminance(result.double()), rgb_to_yiq(content.double())[..., 1:, :, :]], dim=-3)
    return yiq_to_rgb(yiq).clamp(0, 1).to(result.dtype)
