"""Style transfer driven entirely by the numpy network and hand-derived gradients.

scipy's L-BFGS-B asks for L_total(x) and dL_total/dx at a flat vector of pixels; one evaluation is
forward through :class:`NumpyVGG19`, the losses and their dL/dF_l from
:mod:`nst_lessons.scratch.losses`, then :meth:`NumpyVGG19.backward` down to the pixels.  The
bounds keep every pixel in [0, 1], so no clipping is needed afterwards.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from scipy.ndimage import zoom
from scipy.optimize import Bounds, OptimizeResult, minimize

from nst_lessons.scratch.layers import Array
from nst_lessons.scratch.losses import content_loss, gram_matrix, style_loss, total_loss, tv_loss
from nst_lessons.scratch.vgg import NumpyVGG19

INITS = ("content", "noise")


class LossRecord(NamedTuple):
    """One objective evaluation; the terms are already weighted (content = alpha * L_content, ...),
    so ``total == content + style + tv``."""

    total: float
    content: float
    style: float
    tv: float


@dataclass
class NumpyTransferResult:
    """What :func:`style_transfer_numpy` returns.

    Attributes:
        image: the optimised image, RGB in [0,1], shape (3, H, W).
        history: one :class:`LossRecord` per objective evaluation, in order.
        result: scipy's ``OptimizeResult`` (``nit``, ``nfev``, ``message``, ...).
    """

    image: Array
    history: list[LossRecord]
    result: OptimizeResult


def _resize(image: Array, size: int | None, name: str) -> Array:
    """(3, H, W) in [0,1] -> (3, H', W') with the longer side ``size`` (bilinear), kept if None."""
    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"expected the {name} image as an RGB array of shape (3,H,W), got {image.shape}")
    if image.min() < 0 or image.max() > 1:
        raise ValueError(f"the {name} image must lie in [0, 1]")
    if size is None or max(image.shape[1:]) == size:
        return image
    scale = size / max(image.shape[1:])
    return np.clip(zoom(image, (1, scale, scale), order=1), 0.0, 1.0)


def style_transfer_numpy(
    content: Array,
    style: Array,
    *,
    model: NumpyVGG19 | Any,
    size: int | None = 64,
    iterations: int = 100,
    content_layers: Sequence[str] = ("relu4_2",),
    style_layers: Sequence[str] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"),
    style_layer_weights: Mapping[str, float] | None = None,
    content_weight: float = 1.0,
    style_weight: float = 1e6,
    tv_weight: float = 1e-2,
    tv_squared: bool = False,
    init: str = "content",
    seed: int | None = None,
    callback: Callable[[int, Array, LossRecord], object] | None = None,
) -> NumpyTransferResult:
    """Minimise alpha * L_content + beta * L_style + gamma * L_TV over the pixels with L-BFGS-B.

    Args:
        content: the photo p, RGB in [0,1], shape (3, H, W).
        style: the painting a, RGB in [0,1], shape (3, H', W').
        model: a :class:`NumpyVGG19`, or a torch :class:`nst_lessons.vgg.VGG19` to convert.
        size: both images are resized so that their longer side is ``size``; None keeps them.
        iterations: L-BFGS-B iterations (``maxiter``); each may evaluate the objective more than once.
        content_layers: layers whose L_content terms are summed.
        style_layers: layers of L_style, weighted by ``style_layer_weights`` (default 1/|L| each).
        content_weight, style_weight, tv_weight: alpha, beta, gamma.  The defaults suit the
            random-weight network (``load_vgg19("random")``) at 64 px; trained weights and larger
            images want other values (see :data:`nst_lessons.transfer.DEFAULT_LOSS_WEIGHTS`).
        tv_squared: squared TV instead of the L1 form.
        init: ``"content"`` (start from the photo) or ``"noise"`` (uniform in [0,1] from ``seed``).
        seed: the seed for ``init="noise"``.
        callback: ``callback(iteration, image (3,H,W), record)`` after each iteration, where
            ``record`` is the latest evaluation's :class:`LossRecord`.

    Returns:
        A :class:`NumpyTransferResult`.
    """
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; expected one of {', '.join(INITS)}")
    net = model if isinstance(model, NumpyVGG19) else NumpyVGG19.from_torch(model)
    p = _resize(content, size, "content")
    a = _resize(style, size, "style")
    P = net.forward(p, content_layers)
    A = {name: gram_matrix(F) for name, F in net.forward(a, style_layers).items()}
    layers = tuple(dict.fromkeys((*content_layers, *style_layers)))
    shape = p.shape
    history: list[LossRecord] = []

    def objective(flat: Array) -> tuple[float, Array]:
        x = flat.reshape(shape)
        features = net.forward(x, layers)
        terms = {name: content_loss(features[name], P[name]) for name in content_layers}
        content_term = (sum(loss for loss, _ in terms.values()), {n: dF for n, (_, dF) in terms.items()})
        style_term = style_loss(features, A, style_layer_weights)
        tv_term = tv_loss(x, squared=tv_squared) if tv_weight else None
        loss, grads = total_loss(content_weight, content_term, style_weight, style_term, tv_weight, tv_term)
        history.append(
            LossRecord(
                loss,
                content_weight * content_term[0],
                style_weight * style_term[0],
                tv_weight * tv_term[0] if tv_term else 0.0,
            )
        )
        return loss, net.backward(grads).ravel()

    steps = itertools.count(1)

    def report(xk: Array) -> None:
        # L-BFGS-B's line search ends on an evaluated point, so the last record is this iterate's.
        callback(next(steps), xk.reshape(shape), history[-1])

    x0 = p if init == "content" else np.random.default_rng(seed).uniform(0.0, 1.0, shape)
    result = minimize(
        objective,
        x0.ravel(),
        jac=True,
        method="L-BFGS-B",
        bounds=Bounds(np.zeros(x0.size), np.ones(x0.size)),
        callback=report if callback else None,
        # Stop on the iteration count alone: the default tolerances compare against 1 and would end
        # runs whose loss happens to be small in absolute terms.
        options={"maxiter": iterations, "ftol": 0.0, "gtol": 0.0},
    )
    return NumpyTransferResult(image=result.x.reshape(shape), history=history, result=result)


__all__ = ["INITS", "LossRecord", "NumpyTransferResult", "style_transfer_numpy"]
