"""The random multi-scale network (Ustyuzhaninov et al. 2017): the FFT path is the direct convolution,
filters come from the seed, layers have the shapes the interface reports."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as nnf

from nst_lessons.multiscale import SCALES, MultiScale, embed_kernels, fft_correlate, fft_length, kernel_spectra
from nst_lessons.networks import load_network


def _direct(net: MultiScale, image: torch.Tensor, k: int) -> torch.Tensor:
    return nnf.conv2d(net.preprocess(image), net.kernels(k), padding=k // 2)


@pytest.mark.parametrize("size", [(20, 33), (31, 16)])
def test_fft_path_equals_direct_convolution_per_scale(size: tuple[int, int]) -> None:
    # Every size through the FFT (fft_from=1), float32, odd and even sides, wider and taller.
    net = MultiScale(maps=4, seed=3, fft_from=1)
    image = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        fast = net.extract(image, [f"conv{k}" for k in SCALES])
    for k in SCALES:
        direct = _direct(net, image, k)
        scale = direct.abs().max().item()
        torch.testing.assert_close(fast[f"conv{k}"], direct, rtol=1e-5, atol=1e-5 * scale)


def test_fft_path_gradient_equals_direct_gradient() -> None:
    net = MultiScale(scales=(5, 23), maps=3, seed=0, fft_from=1).double()
    image = torch.rand(1, 3, 18, 22, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    weights = torch.rand(1, 3, 18, 22, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    grads = []
    for conv in (lambda x: net.extract(x, ["conv23"])["conv23"], lambda x: _direct(net, x, 23)):
        x = image.clone().requires_grad_(True)
        (conv(x).relu().sum(1, keepdim=True) * weights).pow(2).sum().backward()
        grads.append(x.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-10, atol=1e-10 * grads[1].abs().max().item())


def test_fft_correlate_handles_several_kernel_sizes_in_one_stack() -> None:
    # A 3x3 kernel centred in a 9x9 stack of zeros: padding 4 there is padding 1 for the kernel.
    g = torch.Generator().manual_seed(5)
    small, large = torch.randn(2, 3, 3, 3, generator=g), torch.randn(2, 3, 9, 9, generator=g)
    x = torch.randn(1, 3, 12, 10, generator=g)
    y = fft_correlate(x, kernel_spectra(embed_kernels([small, large]), 12, 10), 9)
    torch.testing.assert_close(y[:, :2], nnf.conv2d(x, small, padding=1), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(y[:, 2:], nnf.conv2d(x, large, padding=4), rtol=1e-5, atol=1e-5)


def test_fft_length_is_even_five_smooth_and_minimal() -> None:
    def smooth(n: int) -> bool:
        for p in (2, 3, 5):
            while n % p == 0:
                n //= p
        return n == 1

    for n in range(1, 400):
        m = fft_length(n)
        assert m >= n and m % 2 == 0 and smooth(m)
        assert not any(smooth(j) for j in range(max(2, n + n % 2), m, 2))


def test_filters_come_from_the_seed_with_glorot_bounds() -> None:
    a, b, c = MultiScale(seed=7), MultiScale(seed=7), MultiScale(seed=8)
    for k in SCALES:
        assert torch.equal(a.kernels(k), b.kernels(k))
        assert not torch.equal(a.kernels(k), c.kernels(k))
        bound = math.sqrt(6 / ((3 + 128) * k * k))
        w = a.kernels(k)
        assert w.shape == (128, 3, k, k) and w.abs().max() <= bound
        assert w.abs().max() > 0.9 * bound  # uniform over the whole interval, not a narrower one
    assert not any(p.requires_grad for p in a.parameters())


def test_layers_shapes_and_the_registry() -> None:
    net = load_network("multiscale", "cpu", seed=2)
    assert isinstance(net, MultiScale) and net.random and net.seed == 2
    assert torch.equal(net.kernels(55), MultiScale(seed=2).kernels(55))
    image = torch.rand(1, 3, 40, 24)
    names = ["down8", "relu3", "conv55", "relu"]
    with torch.no_grad():
        out = net.extract(image, names)
    shapes = net.layer_shapes(40, 24, names)
    assert {n: tuple(F.shape[1:]) for n, F in out.items()} == shapes
    assert shapes == {"down8": (3, 5, 3), "relu3": (128, 40, 24), "conv55": (128, 40, 24), "relu": (1024, 40, 24)}
    torch.testing.assert_close(out["relu"][:, :128], out["relu3"])
    torch.testing.assert_close(out["down8"], nnf.avg_pool2d(net.preprocess(image), 8))
    with pytest.raises(ValueError, match="layer 'relu4_2'"):
        net.extract(image, ["relu4_2"])


def test_preprocessing_is_caffe() -> None:
    net = MultiScale(scales=(3,), maps=1)
    grey = torch.full((1, 3, 2, 2), 0.5)
    grey[:, 0] = 1.0  # red
    x = net.preprocess(grey)
    torch.testing.assert_close(x[0, :, 0, 0], torch.tensor([127.5 - 103.939, 127.5 - 116.779, 255.0 - 123.68]))


def test_lessons_use_it_offline_without_the_red_band(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from nst_lessons import lesson

    monkeypatch.setenv("NST_LESSONS_FAST", "1")
    model = lesson.style_model()
    assert isinstance(model, MultiScale) and not lesson.is_random(model)
    assert "random multi-scale network" in capsys.readouterr().out
    assert lesson.is_random(load_network("vgg19", "cpu", weights="random"))
