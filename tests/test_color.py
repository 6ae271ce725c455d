"""Colour control (Gatys et al. 2017, §5): each method against its defining property."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from nst_lessons import color, lesson
from nst_lessons.images import to_tensor


def photo(seed: int, h: int = 24, w: int = 20, batch: tuple[int, ...] = (1,)) -> torch.Tensor:
    """A float64 image in [0,1] with correlated channels (like a photo: not white noise)."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0, 1, (*batch, 1, h, w))
    mixing = rng.uniform(0.2, 0.8, (3, 1, 1))
    tint = rng.uniform(0, 0.3, (3, 1, 1))
    noise = rng.uniform(-0.2, 0.2, (*batch, 3, h, w))
    return torch.from_numpy(np.clip(mixing * base + tint + noise, 0, 1))


def yuv_swap(result: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """The YUV version of the swap, written out from its definition: U = 0.492 (B − Y), V = 0.877 (R − Y)."""

    def to_yuv(x: torch.Tensor) -> torch.Tensor:
        R, G, B = x.unbind(-3)
        Y = 0.299 * R + 0.587 * G + 0.114 * B
        return torch.stack([Y, 0.492 * (B - Y), 0.877 * (R - Y)], dim=-3)

    Y, U, V = torch.cat([to_yuv(result)[..., :1, :, :], to_yuv(content)[..., 1:, :, :]], dim=-3).unbind(-3)
    R, B = Y + V / 0.877, Y + U / 0.492
    G = (Y - 0.299 * R - 0.114 * B) / 0.587
    return torch.stack([R, G, B], dim=-3)


def test_yiq_round_trip_and_luminance() -> None:
    x = photo(0, batch=(2,))
    yiq = color.rgb_to_yiq(x)
    assert yiq.shape == x.shape and yiq.dtype == torch.float64
    assert torch.allclose(color.yiq_to_rgb(yiq), x, atol=1e-12)
    R, G, B = x.unbind(-3)
    assert torch.allclose(color.luminance(x)[..., 0, :, :], 0.299 * R + 0.587 * G + 0.114 * B, atol=1e-12)
    assert color.luminance(x).shape == (2, 1, 24, 20)
    grey = x[..., :1, :, :].expand_as(x)
    assert color.rgb_to_yiq(grey)[..., 1:, :, :].abs().max() < 1e-12  # grey has no chroma
    assert color.rgb_to_yiq(x[0]).shape == (3, 24, 20)  # (3,H,W) works too
    assert color.rgb_to_yiq(x.float()).dtype == torch.float32


def test_swapping_chroma_gives_the_same_rgb_in_yuv_and_yiq() -> None:
    result, content = photo(1), photo(2)
    swapped = color.finish("yuv", result, content)
    assert torch.allclose(swapped, yuv_swap(result, content).clamp(0, 1), atol=1e-12)
    closed_form = content + color.luminance(result) - color.luminance(content)
    assert torch.allclose(swapped, closed_form.clamp(0, 1), atol=1e-12)


@pytest.mark.parametrize("mode", ["yuv", "luminance"])
def test_finish_keeps_the_results_luminance_and_the_contents_chroma(mode: str) -> None:
    result, content = photo(3), photo(4)
    out = color.finish(mode, result, content)
    kept = (out > 0) & (out < 1)
    inside = kept.all(dim=-3, keepdim=True)  # pixels that no clamp touched
    assert inside.float().mean() > 0.5
    chroma = (color.rgb_to_yiq(out) - color.rgb_to_yiq(content))[..., 1:, :, :]
    assert chroma.masked_select(inside).abs().max() < 1e-12
    Y_diff = color.luminance(out) - color.luminance(result)
    assert Y_diff.masked_select(inside).abs().max() < 1e-12
    assert out.min() >= 0 and out.max() <= 1


def test_finish_leaves_other_modes_alone_and_checks_the_size() -> None:
    result, content = photo(5), photo(6)
    assert color.finish(None, result, content) is result
    assert color.finish("histogram", result, content) is result
    with pytest.raises(ValueError, match="result's size"):
        color.finish("yuv", result, photo(6, h=10))


def test_match_luminance_gives_the_contents_mean_and_std() -> None:
    L_S, L_C = color.luminance(photo(7, h=30, batch=(2,))), color.luminance(photo(8, batch=(2,)))
    matched = color.match_luminance(L_S, L_C)
    assert matched.shape == L_S.shape
    dims = (-2, -1)
    assert torch.allclose(matched.mean(dims), L_C.mean(dims), atol=1e-12)
    assert torch.allclose(matched.std(dims, unbiased=False), L_C.std(dims, unbiased=False), atol=1e-12)
    for m, s in zip(matched, L_S, strict=True):  # an affine map with a positive slope keeps each image's order
        assert torch.equal(m.flatten().argsort(), s.flatten().argsort())
    flat = color.match_luminance(torch.full((1, 1, 5, 5), 0.3), L_C[:1])
    assert torch.allclose(flat, L_C[:1].mean().float())


@pytest.mark.parametrize("mode", ["cholesky", "pca"])
def test_match_color_gives_the_targets_mean_and_covariance(mode: str) -> None:
    source, target = photo(9, h=30, w=17, batch=(2,)), photo(10, batch=(2,))
    out = color.match_color(source, target, mode=mode)
    assert out.shape == source.shape and out.dtype == torch.float64
    mu, sigma = color.color_statistics(out)
    mu_C, sigma_C = color.color_statistics(target)
    assert torch.allclose(mu, mu_C, atol=1e-6) and torch.allclose(sigma, sigma_C, atol=1e-6)
    # the covariance really moved: the test would fail without the transform
    assert (color.color_statistics(source)[1] - sigma_C).abs().max() > 1e-3


@pytest.mark.parametrize("mode", ["cholesky", "pca"])
def test_match_color_on_a_painting_with_an_almost_planar_palette(mode: str) -> None:
    waves = to_tensor(lesson.example("waves", 64), dtype=torch.float64)
    photo_ = to_tensor(lesson.example("grace_hopper", 64), dtype=torch.float64)
    _, sigma_S = color.color_statistics(waves)
    assert torch.linalg.eigvalsh(sigma_S).min() < 1e-5  # the hard case for the regularisation
    with pytest.warns(UserWarning, match="almost grey or planar"):
        matched = color.match_color(waves, photo_, mode=mode)
    mu, sigma = color.color_statistics(matched)
    mu_C, sigma_C = color.color_statistics(photo_)
    assert torch.allclose(mu, mu_C, atol=1e-6) and torch.allclose(sigma, sigma_C, atol=1e-6)


def test_a_nearly_grey_palette_with_colour_noise_is_warned_about() -> None:
    g = torch.Generator().manual_seed(0)
    grey = torch.rand(1, 1, 64, 64, generator=g, dtype=torch.float64).expand(1, 3, 64, 64)
    noisy = (grey + 0.004 * torch.randn(1, 3, 64, 64, generator=g, dtype=torch.float64)).clamp(0, 1)
    photo_ = to_tensor(lesson.example("grace_hopper", 64), dtype=torch.float64)
    lam = torch.linalg.eigvalsh(color.color_statistics(noisy)[1])
    assert lam[..., 0] / lam[..., -1] < color.FLAT_PALETTE
    with pytest.warns(UserWarning, match=r"λ_min/λ_max of their covariance 6\.\de-05 < 0\.0001"):
        matched = color.match_color(noisy, photo_)
    assert ((matched < 0) | (matched > 1)).double().mean() > 0.1  # what the warning is about: the noise stretched
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an ordinary photo, and a flat image (nothing to stretch): no warning
        color.match_color(photo_, noisy)
        color.match_color(torch.full((1, 3, 8, 8), 0.4, dtype=torch.float64), photo_)


def test_the_two_choices_of_A() -> None:
    source, target = photo(11), photo(12)
    A_chol, _, _ = color.color_transform(source, target, "cholesky", eps=0)
    A_pca, _, _ = color.color_transform(source, target, "pca", eps=0)
    _, sigma_S = color.color_statistics(source)
    _, sigma_C = color.color_statistics(target)
    for A in (A_chol, A_pca):
        assert torch.allclose(A @ sigma_S @ A.transpose(-1, -2), sigma_C, atol=1e-12)
    assert torch.equal(A_chol, A_chol.tril())  # L_C L_S⁻¹: lower triangular
    # A_pca Σ_S^½ = Σ_C^½: symmetric, and its square is Σ_C
    lam, V = torch.linalg.eigh(sigma_S)
    root_S = V @ torch.diag_embed(lam.sqrt()) @ V.transpose(-1, -2)
    root_C = A_pca @ root_S
    assert torch.allclose(root_C, root_C.transpose(-1, -2), atol=1e-12)
    assert torch.allclose(root_C @ root_C, sigma_C, atol=1e-12)
    assert torch.linalg.eigvalsh(root_C).min() > 0
    assert (A_chol - A_pca).abs().max() > 1e-2  # two different solutions


@pytest.mark.parametrize("mode", ["cholesky", "pca"])
def test_a_flat_colour_image_gives_finite_output(mode: str) -> None:
    flat, content = torch.full((1, 3, 8, 8), 0.4, dtype=torch.float64), photo(13)
    out = color.match_color(flat, content, mode=mode)
    assert torch.isfinite(out).all() and torch.allclose(out, color.color_statistics(content)[0].view(1, 3, 1, 1))
    to_flat = color.match_color(content, flat, mode=mode)
    assert torch.isfinite(to_flat).all() and (to_flat - 0.4).abs().max() < 1e-3
    grey = photo(14)[:, :1].expand(1, 3, 24, 20)  # rank 1 covariance
    with pytest.warns(UserWarning, match="almost grey or planar"):
        assert torch.isfinite(color.match_color(grey, content, mode=mode)).all()
    _, styles = color.prepare("luminance", content, [flat.float()])
    assert torch.isfinite(styles[0]).all()


def test_match_color_in_float32_is_computed_in_float64() -> None:
    source, target = photo(15).float(), photo(16).float()
    out = color.match_color(source, target)
    assert out.dtype == torch.float32
    assert torch.allclose(out.double(), color.match_color(source.double(), target.double()), atol=1e-6)


def test_prepare() -> None:
    content, styles = photo(17), [photo(18, h=30), photo(19, w=28)]
    for mode in (None, "yuv"):
        c, s = color.prepare(mode, content, styles)
        assert c is content and all(a is b for a, b in zip(s, styles, strict=True))
    c, s = color.prepare("luminance", content, styles)
    assert c.shape == content.shape and torch.allclose(c, color.luminance(content).expand_as(c))
    for run, style in zip(s, styles, strict=True):
        assert run.shape == style.shape
        assert torch.equal(run[:, 0], run[:, 1]) and torch.equal(run[:, 0], run[:, 2])  # grey
        expected = color.match_luminance(color.luminance(style), color.luminance(content)).clamp(0, 1)
        assert torch.allclose(color.luminance(run), expected, atol=1e-12)
    c, s = color.prepare("histogram", content, styles)
    assert c is content
    for run, style in zip(s, styles, strict=True):
        assert run.min() >= 0 and run.max() <= 1
        assert torch.allclose(run, color.match_color(style, content).clamp(0, 1))


def test_unknown_modes_are_refused() -> None:
    x = photo(20)
    message = "unknown preserve_color 'sepia'; expected yuv, luminance or histogram"
    with pytest.raises(ValueError, match=message):
        color.prepare("sepia", x, [x])
    with pytest.raises(ValueError, match=message):
        color.finish("sepia", x, x)
    with pytest.raises(ValueError, match="unknown match_color mode 'svd'"):
        color.match_color(x, x, mode="svd")
    with pytest.raises(ValueError, match="eps must be"):
        color.match_color(x, x, eps=-1)
    with pytest.raises(ValueError, match="shape"):
        color.luminance(x[:, :2])
