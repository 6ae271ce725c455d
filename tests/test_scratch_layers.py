"""The numpy layers of nst_lessons.scratch.layers against torch.nn.functional, forward and
backward, in float64."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as Fn

from nst_lessons.gradcheck import check_numerically, rel_error
from nst_lessons.scratch import layers as L

rng = np.random.default_rng(0)


def torch_forward_backward(fn, x: np.ndarray, dy_seed: int, *params: np.ndarray):
    """Run ``fn`` on (1, C, H, W) tensors and back-propagate a random dy; returns
    (y, dy, dx, dparams) as numpy arrays without the batch axis."""
    x_t = torch.tensor(x[None], requires_grad=True)
    p_t = [torch.tensor(p, requires_grad=True) for p in params]
    y = fn(x_t, *p_t)[0]
    dy = np.random.default_rng(dy_seed).standard_normal(tuple(y.shape))
    y.backward(torch.from_numpy(dy))
    return y.detach().numpy(), dy, x_t.grad[0].numpy(), [p.grad.numpy() for p in p_t]


def torch_conv(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return Fn.conv2d(x, w, b, padding=1)


CONV_SHAPES = [(3, 4, 5, 7), (8, 16, 6, 6), (1, 1, 1, 1), (5, 2, 9, 4), (64, 3, 3, 2)]  # (C, K, H, W)


@pytest.mark.parametrize("C, K, H, W", CONV_SHAPES)
def test_conv2d_matches_torch(C, K, H, W):
    x = rng.standard_normal((C, H, W))
    w = rng.standard_normal((K, C, 3, 3))
    b = rng.standard_normal(K)
    y_t, dy, dx_t, (dw_t, db_t) = torch_forward_backward(torch_conv, x, 1, w, b)
    assert rel_error(L.conv2d(x, w, b), y_t) <= 1e-12
    dx, dw, db = L.conv2d_backward(dy, x, w)
    assert rel_error(dx, dx_t) <= 1e-12
    assert rel_error(dw, dw_t) <= 1e-12
    assert rel_error(db, db_t) <= 1e-12
    np.testing.assert_array_equal(L.conv2d_backward_input(dy, w), dx)


def test_conv2d_weight_gradient_matches_central_differences():
    x, w, b = rng.standard_normal((3, 5, 4)), rng.standard_normal((2, 3, 3, 3)), rng.standard_normal(2)
    R = rng.standard_normal((2, 5, 4))  # L = sum(R * conv(x, w, b)), so dL/dy = R

    def loss_and_dw(w):
        return float(np.sum(R * L.conv2d(x, w, b))), L.conv2d_backward(R, x, w)[1]

    report = check_numerically(loss_and_dw, w)
    assert report.passed, report


def test_col2im_is_the_adjoint_of_im2col():
    # <im2col(x), c> = <x, col2im(c)> for every x and c: the definition of the transpose.
    x = rng.standard_normal((4, 5, 6))
    c = rng.standard_normal((4 * 9, 5 * 6))
    assert rel_error(np.sum(L.im2col(x) * c), np.sum(x * L.col2im(c, x.shape))) <= 1e-12


def test_relu_matches_torch_including_zeros():
    x = rng.standard_normal((4, 5, 6))
    x[0, :2] = 0.0  # at x = 0 torch's gradient is 0
    y_t, dy, dx_t, _ = torch_forward_backward(Fn.relu, x, 2)
    np.testing.assert_array_equal(L.relu(x), y_t)
    np.testing.assert_array_equal(L.relu_backward(dy, x), dx_t)


POOL_SHAPES = [(3, 4, 6), (2, 5, 7), (4, 9, 2), (1, 3, 3), (2, 2, 9)]  # even, odd (floor), thin


@pytest.mark.parametrize("shape", POOL_SHAPES)
def test_max_pool_matches_torch_with_ties(shape):
    x = np.round(rng.standard_normal(shape))  # small integers: many windows hold a tie for the max
    y_t, dy, dx_t, _ = torch_forward_backward(lambda x: Fn.max_pool2d(x, 2, 2), x, 3)
    np.testing.assert_array_equal(L.max_pool(x), y_t)
    dx = L.max_pool_backward(dy, x)
    np.testing.assert_array_equal(dx, dx_t)
    assert np.count_nonzero(dx) == np.count_nonzero(dy)  # one winner per window


@pytest.mark.parametrize("shape", POOL_SHAPES)
def test_avg_pool_matches_torch(shape):
    x = rng.standard_normal(shape)
    y_t, dy, dx_t, _ = torch_forward_backward(lambda x: Fn.avg_pool2d(x, 2, 2), x, 4)
    assert rel_error(L.avg_pool(x), y_t) <= 1e-12
    assert rel_error(L.avg_pool_backward(dy, x), dx_t) <= 1e-12


def test_layers_do_not_mutate_inputs():
    x, w, b = rng.standard_normal((3, 4, 4)), rng.standard_normal((2, 3, 3, 3)), rng.standard_normal(2)
    dy_conv, dy_pool = rng.standard_normal((2, 4, 4)), rng.standard_normal((3, 2, 2))
    arrays = (x, w, b, dy_conv, dy_pool)
    copies = [a.copy() for a in arrays]
    L.conv2d(x, w, b), L.conv2d_backward(dy_conv, x, w), L.relu_backward(x, x)
    L.max_pool_backward(dy_pool, x), L.avg_pool_backward(dy_pool, x)
    for a, copy in zip(arrays, copies):
        np.testing.assert_array_equal(a, copy)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: L.conv2d(np.zeros((3, 4)), np.zeros((2, 3, 3, 3)), np.zeros(2)), r"\(C,H,W\)"),
        (lambda: L.conv2d(np.zeros((4, 4, 4)), np.zeros((2, 3, 3, 3)), np.zeros(2)), "do not fit"),
        (lambda: L.conv2d(np.zeros((3, 4, 4)), np.zeros((2, 3, 5, 5)), np.zeros(2)), "do not fit"),
        (lambda: L.conv2d_backward_input(np.zeros((3, 4, 4)), np.zeros((2, 3, 3, 3))), "channels"),
        (lambda: L.relu_backward(np.zeros((2, 3)), np.zeros((3, 2))), "expected the output's shape"),
        (lambda: L.max_pool_backward(np.zeros((3, 2, 3)), np.zeros((3, 4, 4))), "the output's shape"),
        (lambda: L.avg_pool_backward(np.zeros((3, 2, 2)), np.zeros((3, 5, 4, 4))), r"\(C,H,W\)"),
    ],
)
def test_bad_shapes_raise_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()
