"""VGG's building blocks in numpy, forward and backward, for one image x of shape (C, H, W).

Every backward function takes the upstream gradient dy = dL/dy (the shape of the layer's output)
and returns dL/dx (the shape of its input) by the chain rule: dL/dx_i = sum_j dL/dy_j * dy_j/dx_i,
summed over every output j that the input i influenced.  Each function says which outputs those are.

All arithmetic is vectorised: windows are gathered with ``sliding_window_view`` (im2col) and the
sums over them become one matrix product; the only Python loop runs over the nine kernel offsets
(in col2im), never over pixels.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray

Array = NDArray[np.float64]


def _check_image(x: Array, name: str = "x") -> None:
    if x.ndim != 3:
        raise ValueError(f"expected {name} of shape (C,H,W), got {x.shape}")


def im2col(x: Array) -> Array:
    """The 3x3 neighbourhoods of every pixel of x, zero-padded by 1, as columns of a matrix.

    Args:
        x: shape (C, H, W).

    Returns:
        cols of shape (C*9, H*W): row c*9 + 3*i + j, column h*W + w holds x_pad[c, h+i, w+j], so a
        3x3 convolution is the single matrix product ``w.reshape(K, C*9) @ cols``.
    """
    C, H, W = x.shape
    x_pad = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    windows = sliding_window_view(x_pad, (3, 3), axis=(1, 2))  # (C, H, W, 3, 3), a view: no copy
    # The one copy; ascontiguousarray is several times faster than reshape's own copy of this view.
    return np.ascontiguousarray(windows.transpose(0, 3, 4, 1, 2)).reshape(C * 9, H * W)


def conv2d(x: Array, w: Array, b: Array) -> Array:
    """3x3 convolution (cross-correlation, as in torch), stride 1, zero padding 1.

    y[k, h, w'] = b[k] + sum_{c,i,j} w[k, c, i, j] * x_pad[c, h+i, w'+j]

    Args:
        x: input, shape (C, H, W).
        w: filters, shape (K, C, 3, 3).
        b: biases, shape (K,).

    Returns:
        y, shape (K, H, W).
    """
    _check_image(x)
    K, C = w.shape[:2]
    if w.shape[2:] != (3, 3) or x.shape[0] != C or b.shape != (K,):
        raise ValueError(f"conv2d: x {x.shape}, w {w.shape}, b {b.shape} do not fit (C,H,W), (K,C,3,3), (K,)")
    _, H, W = x.shape
    y = w.reshape(K, C * 9) @ im2col(x)
    y += b[:, None]
    return y.reshape(K, H, W)


def col2im(cols: Array, shape: tuple[int, int, int]) -> Array:
    """The adjoint of :func:`im2col`: scatter-add columns back onto the pixels they were read from.

    im2col copied x_pad[c, h+i, w+j] into row c*9 + 3*i + j, column h*W + w; a gradient on that
    entry therefore flows back to x_pad[c, h+i, w+j].  Every pixel sits in up to nine windows, so
    its gradient is the sum of nine shifted (C, H, W) slices, one per kernel offset (i, j).

    Args:
        cols: shape (C*9, H*W), laid out as :func:`im2col` returns.
        shape: (C, H, W) of the image.

    Returns:
        shape (C, H, W); the padding's gradient is dropped.
    """
    C, H, W = shape
    d = cols.reshape(C, 3, 3, H, W)
    dx_pad = np.zeros((C, H + 2, W + 2))
    for i in range(3):
        for j in range(3):
            dx_pad[:, i : i + H, j : j + W] += d[:, i, j]
    return np.ascontiguousarray(dx_pad[:, 1:-1, 1:-1])


def conv2d_backward_input(dy: Array, w: Array) -> Array:
    """dL/dx of a 3x3, padding-1 convolution; it does not depend on x.

    y = W cols with W = w.reshape(K, C*9), so dL/dcols = W^T dy (shape (C*9, H*W)), and
    :func:`col2im` sends each column entry back to its pixel.  Written out,
    dL/dx[c, h, w'] = sum_{k,i,j} dy[k, h-i+1, w'-j+1] * w[k, c, i, j]: a convolution of dy with
    the filters swapped in (k, c) and rotated by 180 degrees, the "transposed convolution".

    Args:
        dy: shape (K, H, W).
        w: shape (K, C, 3, 3).

    Returns:
        dx, shape (C, H, W).
    """
    _check_image(dy, "dy")
    K, C = w.shape[:2]
    if dy.shape[0] != K:
        raise ValueError(f"conv2d backward: dy has {dy.shape[0]} channels, the filters make {K}")
    _, H, W = dy.shape
    return col2im(w.reshape(K, C * 9).T @ dy.reshape(K, H * W), (C, H, W))


def conv2d_backward(dy: Array, x: Array, w: Array) -> tuple[Array, Array, Array]:
    """Gradients of :func:`conv2d` with respect to its input, filters and biases.

    - dL/dx: see :func:`conv2d_backward_input`.
    - dL/dw[k, c, i, j] = sum_{h,w'} dy[k, h, w'] * x_pad[c, h+i, w'+j]: each filter weight met
      every window, so its gradient is dy correlated with the im2col columns, ``dy @ cols^T``.
    - dL/db[k] = sum_{h,w'} dy[k, h, w']: the bias was added at every position.

    Args:
        dy: dL/dy, shape (K, H, W).
        x: the forward input, shape (C, H, W).
        w: the filters, shape (K, C, 3, 3).

    Returns:
        (dx, dw, db) of shapes (C, H, W), (K, C, 3, 3), (K,).
    """
    _check_image(dy, "dy")
    K = dy.shape[0]
    dw = (dy.reshape(K, -1) @ im2col(x).T).reshape(w.shape)
    return conv2d_backward_input(dy, w), dw, dy.sum(axis=(1, 2))


def relu(x: Array) -> Array:
    """y = max(x, 0), any shape."""
    return np.maximum(x, 0.0)


def relu_backward(dy: Array, x: Array) -> Array:
    """dL/dx = dy where x > 0, else 0 (dy/dx is 1 or 0; at x = 0 we take 0, as torch does).

    Args:
        dy: dL/dy, the shape of x.
        x: the forward input (pre-activation).
    """
    _check_same_shape(dy, x.shape, "relu_backward")
    return np.where(x > 0, dy, 0.0)


def _check_same_shape(dy: Array, shape: tuple[int, ...], where: str) -> None:
    if dy.shape != shape:
        raise ValueError(f"{where}: dy has shape {dy.shape}, expected the output's shape {shape}")


def _windows(x: Array) -> Array:
    """The non-overlapping 2x2 windows of x (C, H, W) as shape (C, H//2, W//2, 4), row-major within
    each window.  Odd H or W drop their last row or column, like torch's floor mode."""
    _check_image(x)
    C, H, W = x.shape
    Ho, Wo = H // 2, W // 2
    blocks = x[:, : 2 * Ho, : 2 * Wo].reshape(C, Ho, 2, Wo, 2)
    return blocks.transpose(0, 1, 3, 2, 4).reshape(C, Ho, Wo, 4)


def _unwindow(d: Array, shape: tuple[int, ...]) -> Array:
    """Inverse of :func:`_windows`: (C, Ho, Wo, 4) back to ``shape`` (C, H, W), zeros in any row or
    column that floor mode dropped."""
    C, Ho, Wo, _ = d.shape
    dx = np.zeros(shape)
    dx[:, : 2 * Ho, : 2 * Wo] = d.reshape(C, Ho, Wo, 2, 2).transpose(0, 1, 3, 2, 4).reshape(C, 2 * Ho, 2 * Wo)
    return dx


def max_pool(x: Array) -> Array:
    """2x2 max pooling, stride 2: (C, H, W) -> (C, H//2, W//2)."""
    return _windows(x).max(axis=-1)


def max_pool_backward(dy: Array, x: Array) -> Array:
    """Only the winner of each window influenced the output, with slope 1, so dL/dx is dy at the
    winner and 0 at the other three.  On ties the first maximum in row-major order wins (what
    ``argmax`` returns, and what torch picks), so exactly one element per window gets the gradient.

    Args:
        dy: dL/dy, shape (C, H//2, W//2).
        x: the forward input, shape (C, H, W).

    Returns:
        dx, shape (C, H, W).
    """
    win = _windows(x)
    _check_same_shape(dy, win.shape[:3], "max_pool_backward")
    winner = win.argmax(axis=-1)[..., None] == np.arange(4)  # (C, Ho, Wo, 4) one-hot
    return _unwindow(winner * dy[..., None], x.shape)


def avg_pool(x: Array) -> Array:
    """2x2 average pooling, stride 2: (C, H, W) -> (C, H//2, W//2)."""
    return _windows(x).mean(axis=-1)


def avg_pool_backward(dy: Array, x: Array) -> Array:
    """Each of the four inputs of a window contributed 1/4 of its output, so each gets dy/4.

    Args:
        dy: dL/dy, shape (C, H//2, W//2).
        x: the forward input, shape (C, H, W) (only its shape is used).

    Returns:
        dx, shape (C, H, W).
    """
    _check_same_shape(dy, _windows(x).shape[:3], "avg_pool_backward")
    return _unwindow(np.broadcast_to(dy[..., None] / 4.0, (*dy.shape, 4)), x.shape)


__all__ = [
    "avg_pool",
    "avg_pool_backward",
    "conv2d",
    "conv2d_backward",
    "conv2d_backward_input",
    "col2im",
    "im2col",
    "max_pool",
    "max_pool_backward",
    "relu",
    "relu_backward",
]
