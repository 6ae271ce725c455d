"""The hand-derived loss gradients of nst_lessons.scratch.losses against torch autograd (on the
torch losses of nst_lessons.losses) and against central differences, in float64."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nst_lessons import losses as tl
from nst_lessons.gradcheck import check_against_autograd, check_numerically, rel_error
from nst_lessons.scratch import losses as sl

# (N, H, W): N < M, N > M, N = 1, M = 1, and wide layers up to 512 channels.
SHAPES = [(3, 4, 5), (20, 2, 2), (1, 5, 7), (6, 1, 1), (64, 8, 8), (512, 2, 3)]


def features(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


def style_target(N: int, seed: int) -> np.ndarray:
    """A random symmetric N x N Gram matrix, the shape of a style target A."""
    X = np.random.default_rng(seed).standard_normal((N, 7))
    return X @ X.T


@pytest.mark.parametrize("shape", SHAPES)
def test_content_gradient_matches_autograd(shape):
    report = check_against_autograd(
        sl.content_loss,
        lambda F, P: tl.content_loss(F[None], P[None]),
        features(shape, 0),
        features(shape, 1),
    )
    assert report.passed, report


@pytest.mark.parametrize("shape", SHAPES)
def test_style_layer_gradient_matches_autograd(shape):
    report = check_against_autograd(
        sl.style_layer_loss,
        lambda F, A: tl.style_layer_loss(F[None], A),
        features(shape, 2),
        style_target(shape[0], 3),
    )
    assert report.passed, report


@pytest.mark.parametrize("squared", [False, True])
@pytest.mark.parametrize("shape", [(3, 8, 11), (3, 1, 6), (1, 5, 1), (3, 2, 2)])
def test_tv_gradient_matches_autograd(shape, squared):
    x = np.random.default_rng(4).uniform(0, 1, shape)
    report = check_against_autograd(sl.tv_loss, tl.tv_loss, x, squared)
    assert report.passed, report


def test_tv_subgradient_is_zero_at_ties_like_torch():
    x = np.zeros((3, 4, 4))
    x[:, 1:3, 1:3] = 1.0  # many equal neighbours: |d| has a kink at every d = 0
    report = check_against_autograd(sl.tv_loss, tl.tv_loss, x)
    assert report.passed, report


def test_gram_matrix_matches_torch():
    F = features((7, 3, 4), 5)
    G = sl.gram_matrix(F)
    assert G.shape == (7, 7)
    assert rel_error(G, tl.gram_matrix(torch.from_numpy(F)[None])[0].numpy()) <= 1e-12


def test_style_loss_gradients_and_weights_match_autograd():
    F = {"a": features((4, 3, 5), 6), "b": features((9, 2, 2), 7)}
    A = {"a": style_target(4, 8), "b": style_target(9, 9)}
    for weights in (None, {"a": 0.3, "b": 2.0}):
        loss, grads = sl.style_loss(F, A, weights)
        F_t = {k: torch.tensor(v[None], requires_grad=True) for k, v in F.items()}
        torch_loss = tl.style_loss(F_t, {k: torch.from_numpy(v) for k, v in A.items()}, weights)
        torch_loss.backward()
        assert rel_error(loss, torch_loss.item()) <= 1e-12
        for name in F:
            assert rel_error(grads[name], F_t[name].grad[0].numpy()) <= 1e-9, name


def test_total_loss_combines_terms_and_sums_shared_layers():
    x = np.random.default_rng(10).uniform(0, 1, (3, 5, 6))
    F = {"shared": features((4, 3, 3), 11), "style_only": features((5, 2, 2), 12)}
    P = features((4, 3, 3), 13)
    A = {"shared": style_target(4, 14), "style_only": style_target(5, 15)}
    alpha, beta, gamma = 0.7, 3.0, 0.2
    content = sl.content_loss(F["shared"], P)
    loss, grads = sl.total_loss(
        alpha, (content[0], {"shared": content[1]}), beta, sl.style_loss(F, A), gamma, sl.tv_loss(x)
    )

    F_t = {k: torch.tensor(v[None], requires_grad=True) for k, v in F.items()}
    x_t = torch.tensor(x, requires_grad=True)
    torch_loss = tl.total_loss(
        alpha,
        tl.content_loss(F_t["shared"], torch.from_numpy(P)[None]),
        beta,
        tl.style_loss(F_t, {k: torch.from_numpy(v) for k, v in A.items()}),
        gamma,
        tl.tv_loss(x_t),
    )
    torch_loss.backward()
    assert rel_error(loss, torch_loss.item()) <= 1e-12
    assert set(grads) == {"shared", "style_only", sl.INPUT}
    for name in F:
        assert rel_error(grads[name], F_t[name].grad[0].numpy()) <= 1e-9, name
    assert rel_error(grads[sl.INPUT], x_t.grad.numpy()) <= 1e-9


@pytest.mark.parametrize("shape", [(3, 4, 5), (20, 2, 2), (1, 5, 7), (6, 1, 1), (512, 2, 3)])
def test_gradients_match_central_differences(shape):
    F, P, A = features(shape, 16), features(shape, 17), style_target(shape[0], 18)
    n = 60 if F.size > 60 else None
    content = check_numerically(lambda F: sl.content_loss(F, P), F, n_samples=n)
    style = check_numerically(lambda F: sl.style_layer_loss(F, A), F, n_samples=n)
    assert content.passed, content
    assert style.passed, style


@pytest.mark.parametrize("squared", [False, True])
def test_tv_gradient_matches_central_differences(squared):
    x = np.random.default_rng(19).uniform(0, 1, (3, 6, 7))  # no ties: |d| is smooth near x
    report = check_numerically(lambda x: sl.tv_loss(x, squared), x, h=1e-6, tol=1e-5)
    assert report.passed, report


def test_matrix_and_map_layouts_agree_and_keep_their_shape():
    F, P, A = features((5, 3, 4), 20), features((5, 3, 4), 21), style_target(5, 22)
    for fn, target in ((sl.content_loss, P), (sl.style_layer_loss, A)):
        loss_maps, dF_maps = fn(F, target)
        loss_nm, dF_nm = fn(F.reshape(5, 12), target if target is A else target.reshape(5, 12))
        assert dF_maps.shape == (5, 3, 4) and dF_nm.shape == (5, 12)
        assert loss_maps == loss_nm
        np.testing.assert_array_equal(dF_maps.reshape(5, 12), dF_nm)


def test_inputs_are_not_mutated():
    F, P, A = features((4, 3, 3), 23), features((4, 3, 3), 24), style_target(4, 25)
    x = np.random.default_rng(26).uniform(0, 1, (3, 4, 4))
    copies = [a.copy() for a in (F, P, A, x)]
    sl.content_loss(F, P)
    sl.style_layer_loss(F, A)
    sl.style_loss({"l": F}, {"l": A})
    sl.tv_loss(x, squared=True)
    for original, copy in zip((F, P, A, x), copies):
        np.testing.assert_array_equal(original, copy)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: sl.content_loss(np.zeros((3, 4)), np.zeros((3, 5))), "differ in shape"),
        (lambda: sl.content_loss(np.zeros(4), np.zeros(4)), r"\(N,M\) or \(N,H,W\)"),
        (lambda: sl.style_layer_loss(np.zeros((3, 4)), np.zeros((4, 4))), "does not match 3 filters"),
        (lambda: sl.style_layer_loss(np.zeros((2, 4)), np.array([[1.0, 2.0], [0.0, 1.0]])), "symmetric"),
        (lambda: sl.style_loss({}, {"relu1_1": np.eye(3)}), "no features for style layer"),
        (lambda: sl.tv_loss(np.zeros((4, 4))), r"\(C,H,W\)"),
    ],
)
def test_bad_shapes_raise_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()
