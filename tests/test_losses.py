"""The torch losses against their definitions written out with numpy loops, and their hand gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nst_lessons import losses


def rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).standard_normal(shape))


def test_gram_matrix_is_F_F_transpose() -> None:
    F = rand(2, 3, 4, 5)
    G = losses.gram_matrix(F)
    assert G.shape == (2, 3, 3) and G.dtype == torch.float64
    f = F.numpy().reshape(2, 3, 20)
    for b in range(2):
        for i in range(3):
            for j in range(3):
                assert G[b, i, j].item() == pytest.approx(sum(f[b, i, k] * f[b, j, k] for k in range(20)))


def test_gram_symmetric_backward_is_the_gradient_for_any_upstream_gradient() -> None:
    # gradcheck feeds non-symmetric dL/dG too: (g + g^T) F must hold for every g, not only for the
    # style loss's symmetric one; and the forward is the plain Gram, bitwise.
    F = rand(2, 3, 4, 5, seed=20).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda F: losses.gram_matrix(F, symmetric_backward=True), (F,))
    assert torch.equal(losses.gram_matrix(F, symmetric_backward=True), losses.gram_matrix(F))
    A = losses.gram_matrix(rand(2, 3, 4, 5, seed=21))
    grads = [torch.autograd.grad(losses.style_layer_loss(F, A, symmetric), F)[0] for symmetric in (False, True)]
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-12, atol=1e-12 * grads[0].abs().max().item())


def test_content_loss_is_half_the_squared_error() -> None:
    F, P = rand(1, 4, 3, 3, seed=1), rand(1, 4, 3, 3, seed=2)
    loss = losses.content_loss(F, P)
    assert loss.dtype == torch.float64
    assert loss.item() == pytest.approx(0.5 * ((F.numpy() - P.numpy()) ** 2).sum())
    with pytest.raises(ValueError, match="differ in shape"):
        losses.content_loss(F, P[:, :3])


def test_style_layer_loss_uses_the_papers_normalisation() -> None:
    F = rand(1, 3, 2, 5, seed=3)
    A = losses.gram_matrix(rand(1, 3, 4, 4, seed=4))
    N, M = 3, 10
    f = F.numpy().reshape(N, M)
    E = ((f @ f.T - A.numpy()[0]) ** 2).sum() / (4 * N**2 * M**2)
    assert losses.style_layer_loss(F, A).item() == pytest.approx(E)
    assert losses.style_layer_loss(F, A[0]).item() == pytest.approx(E)  # an unbatched target broadcasts
    with pytest.raises(ValueError, match="does not match 3 filters"):
        losses.style_layer_loss(F, torch.zeros(4, 4, dtype=torch.float64))


def test_style_loss_weights_layers_equally_by_default() -> None:
    feats = {"a": rand(1, 2, 3, 3, seed=5), "b": rand(1, 4, 2, 2, seed=6)}
    targets = {k: losses.gram_matrix(rand(*v.shape, seed=9)) for k, v in feats.items()}
    each = {k: losses.style_layer_loss(feats[k], targets[k]).item() for k in feats}
    assert losses.style_loss(feats, targets).item() == pytest.approx((each["a"] + each["b"]) / 2)
    weighted = losses.style_loss(feats, targets, {"a": 0.25, "b": 2.0}).item()
    assert weighted == pytest.approx(0.25 * each["a"] + 2.0 * each["b"])


@pytest.mark.parametrize("squared", [False, True])
def test_tv_loss_matches_its_definition(squared: bool) -> None:
    x = rand(1, 3, 4, 5, seed=7)
    a = x.numpy()[0]
    phi = np.square if squared else np.abs
    want = sum(
        phi(a[c, i, j + 1] - a[c, i, j]) for c in range(3) for i in range(4) for j in range(4)
    ) + sum(phi(a[c, i + 1, j] - a[c, i, j]) for c in range(3) for i in range(3) for j in range(5))
    assert losses.tv_loss(x, squared=squared).item() == pytest.approx(want)
    assert losses.tv_loss(x[0], squared=squared).item() == pytest.approx(want)  # (C,H,W) too


def test_tv_loss_is_zero_on_a_constant_image() -> None:
    assert losses.tv_loss(torch.full((1, 3, 8, 8), 0.3)).item() == 0


@pytest.mark.parametrize("shape", [(1, 3, 4, 7), (1, 16, 2, 2), (1, 1, 5, 5), (1, 8, 1, 1), (2, 5, 3, 4)])
def test_hand_gradients_match_autograd(shape: tuple[int, ...]) -> None:
    F = rand(*shape, seed=11).requires_grad_(True)
    P = rand(*shape, seed=12)
    A = losses.gram_matrix(rand(*shape, seed=13))
    for loss_fn, grad_fn, target in (
        (losses.content_loss, losses.content_grad, P),
        (losses.style_layer_loss, losses.style_layer_grad, A),
    ):
        (auto,) = torch.autograd.grad(loss_fn(F, target), F)
        torch.testing.assert_close(grad_fn(F.detach(), target), auto, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("squared", [False, True])
def test_tv_grad_matches_autograd(squared: bool) -> None:
    x = rand(1, 3, 6, 5, seed=14).requires_grad_(True)
    (auto,) = torch.autograd.grad(losses.tv_loss(x, squared=squared), x)
    torch.testing.assert_close(losses.tv_grad(x.detach(), squared=squared), auto, rtol=1e-12, atol=1e-12)


def test_temporal_loss_is_the_weighted_mean_squared_difference() -> None:
    x, w = rand(1, 3, 4, 5, seed=20), rand(1, 3, 4, 5, seed=21)
    c = (rand(1, 1, 4, 5, seed=22) > 0.5).double()
    expected = sum(c[0, 0, i, j] * (x[0, k, i, j] - w[0, k, i, j]) ** 2 for k in range(3) for i in range(4) for j in range(5)) / 60
    assert losses.temporal_loss(x, w, c).item() == pytest.approx(expected.item(), rel=1e-12)
    assert losses.temporal_loss(x, w, torch.zeros_like(c)).item() == 0.0  # occluded everywhere: no pull
    x.requires_grad_(True)
    (auto,) = torch.autograd.grad(losses.temporal_loss(x, w, c), x)
    torch.testing.assert_close(losses.temporal_grad(x.detach(), w, c), auto, rtol=1e-12, atol=1e-12)


def test_total_loss_weights_the_terms() -> None:
    total = losses.total_loss(2.0, torch.tensor(3.0), 10.0, torch.tensor(0.5), 0.1, torch.tensor(7.0))
    assert total.item() == pytest.approx(2 * 3 + 10 * 0.5 + 0.1 * 7)


def test_float32_stays_float32() -> None:
    F = torch.rand(1, 3, 4, 4)
    assert losses.style_layer_loss(F, losses.gram_matrix(F)).dtype == torch.float32


def test_gram_targets_are_rescaled_to_the_generated_images_positions() -> None:
    F = rand(1, 4, 3, 5, seed=15)
    tiled = F.repeat(1, 1, 2, 2)  # the same texture on four times the area: G is four times larger
    assert torch.allclose(losses.gram_matrix(tiled), 4 * losses.gram_matrix(F))
    (A,) = losses.gram_targets({"l": tiled}, ["l"], positions={"l": 15}).values()
    torch.testing.assert_close(A, losses.gram_matrix(F))
    (A_same,) = losses.gram_targets({"l": tiled}, ["l"]).values()
    torch.testing.assert_close(A_same, losses.gram_matrix(tiled))
