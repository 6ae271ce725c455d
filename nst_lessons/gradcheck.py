"""Checking hand-derived gradients: against central differences and against torch autograd.

A gradient derived by hand is a claim; two independent witnesses test it:

- :func:`numerical_gradient`: (f(x + h e_i) - f(x - h e_i)) / 2h for each coordinate i, the
  definition of a derivative with O(h^2) error, slow (two evaluations per coordinate) so it can
  sample coordinates;
- :func:`check_against_autograd`: torch differentiates the same loss automatically, exact up to
  rounding, so in float64 the two should agree to ~1e-12.

Both are judged with :func:`rel_error` and summarised by a :class:`GradCheckReport`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import numpy as np
import torch
from numpy.typing import NDArray

Array = NDArray[np.float64]

FLOOR = 1e-5
"""Default ``floor`` of :func:`rel_error`."""


def _scalar(value: Any) -> float:
    """A loss from f's return value: the value itself, or the first item of a (loss, grad) pair."""
    return float(value[0] if isinstance(value, tuple) else value)


class NumericalGradient(NamedTuple):
    """Central-difference estimates at some coordinates of x.

    Attributes:
        index: a tuple of integer arrays, one per axis of x, as ``np.unravel_index`` returns, so
            ``grad[index]`` picks the matching entries of any array of x's shape.
        values: the estimates, shape (number of coordinates,).
    """

    index: tuple[NDArray[np.intp], ...]
    values: Array


def numerical_gradient(
    f: Callable[[Array], Any],
    x: Array,
    h: float = 1e-5,
    n_samples: int | None = None,
    seed: int = 0,
) -> NumericalGradient:
    """df/dx_i ~ (f(x + h e_i) - f(x - h e_i)) / (2h) at every coordinate, or at a random sample.

    Args:
        f: x -> loss, or x -> (loss, ...) like the functions of :mod:`nst_lessons.scratch.losses`.
            It gets a float64 copy of x that is perturbed in place between calls.
        x: the point, any shape; not modified.
        h: the step.
        n_samples: how many distinct coordinates to sample (uniformly, in increasing flat order);
            None, or at least ``x.size``, means all of them (then ``values.reshape(x.shape)`` is
            the whole gradient).
        seed: seeds the sample.

    Returns:
        A :class:`NumericalGradient`; compare with ``rel_error(num.values, grad[num.index])``.
    """
    x = np.array(x, dtype=np.float64)  # a copy: the caller's array is never perturbed
    flat = x.reshape(-1)
    if n_samples is None or n_samples >= x.size:
        coords = np.arange(x.size)
    else:
        coords = np.sort(np.random.default_rng(seed).choice(x.size, size=n_samples, replace=False))
    values = np.empty(len(coords))
    for k, i in enumerate(coords):
        old = flat[i]
        flat[i] = old + h
        f_plus = _scalar(f(x))
        flat[i] = old - h
        f_minus = _scalar(f(x))
        flat[i] = old
        values[k] = (f_plus - f_minus) / (2 * h)
    return NumericalGradient(np.unravel_index(coords, x.shape), values)


def _relative_errors(a: Array, b: Array, floor: float) -> Array:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"cannot compare arrays of shapes {a.shape} and {b.shape}")
    size = np.abs(a) + np.abs(b)
    scale = max(floor * float(size.max(initial=0.0)), np.finfo(np.float64).tiny)
    return np.abs(a - b) / np.maximum(size, scale)


def rel_error(a: Array, b: Array, floor: float = FLOOR) -> float:
    """The worst elementwise relative error, max_i |a_i - b_i| / max(|a_i| + |b_i|, s).

    s = ``floor`` * max_j(|a_j| + |b_j|): entries far smaller than the largest one are measured
    against that level instead of their own size.  Without it, an entry that is 0 up to rounding
    (a sum that cancels) would count 1e-17 against 2e-17 as a 33% error; with it, every entry
    larger than ``floor`` times the largest is still held to its own relative precision.  Two
    all-zero arrays give 0.

    Args:
        a, b: arrays of one shape (or scalars).
        floor: see above; 0 gives the plain elementwise form (guarded against 0/0).
    """
    return float(_relative_errors(a, b, floor).max(initial=0.0))


@dataclass(frozen=True)
class GradCheckReport:
    """The verdict of one gradient check; ``str(report)`` says it in a sentence.

    Attributes:
        grad_error: :func:`rel_error` of the gradients.
        worst_index: where that worst error is, an index into the gradient.
        ours, reference: the two gradients' values at ``worst_index``.
        loss_error: :func:`rel_error` of the losses, or None if only gradients were compared.
        tolerance: the largest error that passes.
        reference_name: what the gradient was checked against.
    """

    grad_error: float
    worst_index: tuple[int, ...]
    ours: float
    reference: float
    loss_error: float | None
    tolerance: float
    reference_name: str

    @property
    def passed(self) -> bool:
        return self.grad_error <= self.tolerance and (self.loss_error or 0.0) <= self.tolerance

    def __str__(self) -> str:
        if self.grad_error <= self.tolerance:
            text = f"gradient matches {self.reference_name}: worst relative error {self.grad_error:.2g}"
        else:
            text = (
                f"gradient DISAGREES with {self.reference_name}: worst relative error "
                f"{self.grad_error:.2g} at index {self.worst_index} (ours {self.ours:.6g}, "
                f"{self.reference_name} {self.reference:.6g})"
            )
        if self.loss_error is not None:
            verdict = "matches" if self.loss_error <= self.tolerance else "DISAGREES"
            text += f"; loss {verdict} with relative error {self.loss_error:.2g}"
        return f"{text} (tolerance {self.tolerance:.0e})"


def _report(
    ours: Array, reference: Array, loss_error: float | None, tol: float, floor: float, name: str
) -> GradCheckReport:
    errors = _relative_errors(ours, reference, floor)
    worst = np.unravel_index(int(np.argmax(errors)), errors.shape) if errors.size else ()
    return GradCheckReport(
        grad_error=float(errors.max(initial=0.0)),
        worst_index=tuple(int(i) for i in worst),
        ours=float(np.asarray(ours)[worst]) if errors.size else 0.0,
        reference=float(np.asarray(reference)[worst]) if errors.size else 0.0,
        loss_error=loss_error,
        tolerance=tol,
        reference_name=name,
    )


def check_against_autograd(
    numpy_fn: Callable[..., tuple[float, Array]],
    torch_fn: Callable[..., torch.Tensor],
    *inputs: Any,
    wrt: int = 0,
    tol: float = 1e-9,
    floor: float = FLOOR,
) -> GradCheckReport:
    """Compare a numpy (loss, gradient) function with torch autograd on the same inputs, float64.

    Args:
        numpy_fn: ``numpy_fn(*inputs) -> (loss, dloss/dinputs[wrt])``.
        torch_fn: the same loss in torch, ``torch_fn(*tensors) -> 0-dim tensor``; array inputs
            arrive as float64 CPU tensors (a model it uses must be float64 too: ``model.double()``),
            other inputs unchanged.
        inputs: the arguments; arrays are copied, never modified.
        wrt: which input the gradient is taken with respect to.
        tol: the largest relative error (:func:`rel_error`) of loss and gradient that passes.
        floor: passed to :func:`rel_error`.

    Returns:
        A :class:`GradCheckReport` against "torch autograd".
    """
    arrays = [np.array(v, dtype=np.float64) if isinstance(v, np.ndarray) else v for v in inputs]
    loss, grad = numpy_fn(*arrays)
    tensors = [torch.tensor(v, dtype=torch.float64) if isinstance(v, np.ndarray) else v for v in inputs]
    if not isinstance(tensors[wrt], torch.Tensor):
        raise ValueError(f"input {wrt} is not an array: nothing to differentiate with respect to")
    tensors[wrt].requires_grad_(True)
    torch_loss = torch_fn(*tensors)
    torch_loss.backward()
    reference = tensors[wrt].grad.numpy()
    if np.shape(grad) != reference.shape:
        raise ValueError(f"numpy gradient has shape {np.shape(grad)}, torch's {reference.shape}")
    loss_error = rel_error(loss, torch_loss.item(), floor=0.0)
    return _report(grad, reference, loss_error, tol, floor, "torch autograd")


def check_numerically(
    fn: Callable[[Array], tuple[float, Array]],
    x: Array,
    *,
    h: float = 1e-5,
    n_samples: int | None = None,
    seed: int = 0,
    tol: float = 1e-6,
    floor: float = FLOOR,
) -> GradCheckReport:
    """Compare ``fn(x) -> (loss, gradient)`` with central differences (:func:`numerical_gradient`).

    The finite difference has an error of order h^2 * f''' plus rounding of order eps * f / h,
    so the tolerance is far looser than against autograd.
    """
    _, grad = fn(np.array(x, dtype=np.float64))
    num = numerical_gradient(fn, x, h=h, n_samples=n_samples, seed=seed)
    report = _report(np.asarray(grad)[num.index], num.values, None, tol, floor, "central differences")
    k = report.worst_index[0]  # the worst sample -> its index in x
    return replace(report, worst_index=tuple(int(axis[k]) for axis in num.index))


__all__ = [
    "FLOOR",
    "GradCheckReport",
    "NumericalGradient",
    "check_against_autograd",
    "check_numerically",
    "numerical_gradient",
    "rel_error",
]
