"""What is wrong with an answer, in words: the reference answers and the diagnoses.

Each exercise has graded parts (a loss and its gradient are two).  A part compares what the
student's function returned with the reference from :mod:`nst_lessons.scratch`; when they differ
it tries the typical mistakes (a missing 1/2, a wrong sign, F^T F instead of F F^T, a forgotten
mask, ...) to say which one it is.  The same code serves :func:`check` in the notebook (public
cases, in the student's kernel, plus the instructor's hidden ones when
``$NST_LESSONS_HIDDEN_CASES`` names a file, as it does where nbgrader autogrades) and the grader
(hidden cases, judged in the grader's own process on the values the sandbox sent back), so the
feedback is the same in both places.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np

from nst_lessons.grading.cases import (
    ALL_EXERCISES,
    ALPHA,
    BETA,
    HIDDEN_CASES_ENV,
    LBFGS_ITERATIONS,
    Case,
    call,
    hidden_cases,
    make_cases,
    run_lbfgs,
)
from nst_lessons.grading.observe import Observation, Other, Torch, normalise, observe
from nst_lessons.scratch import layers as ref_layers
from nst_lessons.scratch import losses as ref_losses


class Wrong(Exception):
    """What is wrong with a returned value, as a sentence for the student."""


class CheckFailed(AssertionError):
    """Raised by :func:`check`.  An ``AssertionError``, so nbgrader marks the check cell failed."""


@dataclass(frozen=True)
class Part:
    """A graded part of an exercise: ``diagnose(case, value)`` raises :class:`Wrong` or returns."""

    title: str
    points: float
    diagnose: Callable[[Case, Any], None]


@dataclass(frozen=True)
class Verdict:
    """One part judged: ``problem`` is None when it passed."""

    exercise: str
    part: Part
    problem: str | None

    @property
    def name(self) -> str:
        return f"{self.exercise}: {self.part.title}"

    @property
    def score(self) -> float:
        return self.part.points if self.problem is None else 0.0


NOT_ANSWERED = "not answered yet: replace `raise NotImplementedError()` with your code"

# --------------------------------------------------------------------------- generic checks

_TORCH = "is a torch.Tensor; the exercises take and return numpy arrays (compute with numpy)"


def _describe(value: Any) -> str:
    if value is None:
        return "None"
    if isinstance(value, Torch):
        return "a torch.Tensor"
    if isinstance(value, Other):
        return f"a {value.type_name}"
    if isinstance(value, float):
        return f"the number {value:.4g}"
    if isinstance(value, np.ndarray):
        return f"a numpy array of shape {value.shape}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} values"
    return f"a {type(value).__name__}"


def _close(got: Any, expected: Any) -> bool:
    got, expected = np.asarray(got), np.asarray(expected)
    if got.shape != expected.shape:
        return False
    scale = float(np.max(np.abs(expected), initial=0.0))
    return bool(np.allclose(got, expected, rtol=1e-6, atol=1e-9 * scale))


def _number(value: Any, what: str) -> float:
    """``value`` as a finite float, or :class:`Wrong`."""
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "iuf":
        value = float(value)
    if isinstance(value, Torch):
        raise Wrong(f"{what} {_TORCH}")
    if not isinstance(value, float):
        raise Wrong(f"{what} is {_describe(value)}; it should be a single number")
    if not np.isfinite(value):
        raise Wrong(f"{what} is {value}")
    return value


_DTYPE_HINTS = {
    "b": " (a boolean mask? multiply it by the incoming gradient)",
    "i": " (an integer array: did np.zeros_like copy the dtype of an integer array?)",
    "u": " (an integer array: did np.zeros_like copy the dtype of an integer array?)",
    "f": " (keep float64: float32 loses the precision gradients need)",
    "c": "",
}


def _array(value: Any, shape: tuple[int, ...], what: str, hints: Mapping[tuple[int, ...], str] | None = None) -> np.ndarray:
    """``value`` as a finite float64 array of ``shape``, or :class:`Wrong`; ``hints`` explain wrong shapes."""
    if isinstance(value, Torch):
        raise Wrong(f"{what} {_TORCH}")
    if not isinstance(value, np.ndarray):
        missing = ": is a `return` missing?" if value is None else ""
        raise Wrong(f"{what} is {_describe(value)}; it should be a single numpy array of shape {shape}{missing}")
    if value.shape != tuple(shape):
        raise Wrong(f"{what} has shape {value.shape}; it should have shape {tuple(shape)}{(hints or {}).get(value.shape, '')}")
    if value.dtype != np.float64:
        raise Wrong(f"{what} has dtype {value.dtype}; it should be float64{_DTYPE_HINTS[value.dtype.kind]}")
    if not np.all(np.isfinite(value)):
        raise Wrong(f"{what} contains NaN or infinity")
    return value


def _compare(got: Any, expected: Any, what: str, mistakes: Iterable[tuple[Any, str]] = ()) -> None:
    """Pass if ``got`` matches ``expected``; else name the first typical mistake it matches."""
    if _close(got, expected):
        return
    for candidate, message in mistakes:
        if _close(got, candidate):
            raise Wrong(f"{what} {message}")
    error = float(np.max(np.abs(np.asarray(got) - expected)))
    scale = float(np.max(np.abs(expected)))
    raise Wrong(f"{what} is wrong: off by up to {error:.3g} where the right values reach {scale:.3g}")


def _pair(value: Any, first: str, second: str) -> tuple[Any, Any]:
    """The two items of a returned pair, or :class:`Wrong`."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        a, b = value
        if isinstance(a, np.ndarray) and a.ndim > 0 and (isinstance(b, float) or (isinstance(b, np.ndarray) and b.ndim == 0)):
            raise Wrong(f"returned ({second}, {first}); the order is ({first}, {second})")
        return a, b
    raise Wrong(f"returned {_describe(value)}; it should return the pair ({first}, {second})")


# --------------------------------------------------------------------------- the losses


def _gram(case: Case, value: Any) -> None:
    F = case.args["F"]
    N, H, W = F.shape
    F_nm = F.reshape(N, -1)
    M = F_nm.shape[1]
    G = ref_losses.gram_matrix(F)
    flatten = " — flatten the maps into the paper's N x M matrix first: F.reshape(N, -1)"
    hints = {
        (M, M): " — that is F^T F, which compares the M positions; G = F F^T compares the N filters",
        (N, H, H): flatten,
        (N, W, W): flatten,
    }
    scrambled = F.reshape(-1, N)
    _compare(
        _array(value, G.shape, "G", hints),
        G,
        "G",
        [
            (F_nm.T @ F_nm, "is F^T F, which compares positions; G = F F^T compares filters: G_ij = sum_k F_ik F_jk"),
            (G / M, "is divided by M_l: the paper's Gram matrix is not normalised (the factor comes in E_l)"),
            (G / (N * M), "is divided by N_l M_l: the paper's Gram matrix is not normalised (the factor comes in E_l)"),
            (scrambled.T @ scrambled, "mixes the filters up: F.reshape(-1, N) does not keep filter i's map "
             "together; use F.reshape(N, -1), one row per filter"),
        ],
    )


def _content_loss(case: Case, value: Any) -> None:
    F, P = case.args["F"], case.args["P"]
    L, _ = ref_losses.content_loss(F, P)
    got = _number(_pair(value, "loss", "dF")[0], "the loss")
    _compare(
        got,
        L,
        "the loss",
        [
            (2 * L, "is twice too large: L_content = 1/2 sum (F - P)^2 has a 1/2 in front"),
            (np.sqrt(2 * L), "is the norm |F - P|; the loss is half its square, 1/2 sum (F - P)^2"),
            (L / F.size, "is a mean: the paper sums over all i, j"),
            (2 * L / F.size, "is a mean: the paper sums over all i, j"),
        ],
    )


def _content_grad(case: Case, value: Any) -> None:
    F, P = case.args["F"], case.args["P"]
    _, dF = ref_losses.content_loss(F, P)
    hints = {(F.shape[0], F[0].size): " — give dF the shape of F"}
    got = _array(_pair(value, "loss", "dF")[1], F.shape, "dF", hints)
    _compare(
        got,
        dF,
        "dF",
        [
            (-dF, "has the wrong sign: dL/dF = F - P"),
            (2 * dF, "is twice too large: the 1/2 cancels the 2 that comes down from the square, dL/dF = F - P"),
            (dF / 2, "is half what it should be: the 1/2 cancels the 2 from the square, dL/dF = F - P"),
        ],
    )


_STYLE_GRAD = "dE_l/dF = (G - A) F / (N_l^2 M_l^2)"


def _style_terms(case: Case) -> tuple[np.ndarray, np.ndarray, int, int, int, int]:
    """F, the squared Gram difference (G - A)^2 summed, N, H, W and M = H W."""
    F, A = case.args["F"], case.args["A"]
    N, H, W = F.shape
    F_nm = F.reshape(N, -1)
    return F, np.sum((F_nm @ F_nm.T - A) ** 2), N, H, W, H * W


def _style_loss(case: Case, value: Any) -> None:
    F, S, N, H, W, M = _style_terms(case)
    E, _ = ref_losses.style_layer_loss(F, case.args["A"])
    got = _number(_pair(value, "E", "dF")[0], "E")
    _compare(
        got,
        E,
        "E",
        [
            (S, "is missing the normalisation 1/(4 N_l^2 M_l^2)"),
            (S / (N**2 * M**2), "is 4 times too large: the factor is 1/(4 N_l^2 M_l^2)"),
            (S / (4 * N * M), "divides by 4 N_l M_l; both are squared: 1/(4 N_l^2 M_l^2)"),
            (S / (4 * N**2 * W**2), "uses M_l = W; M_l = H W is the number of positions in a map"),
            (S / (4 * N**2 * H**2), "uses M_l = H; M_l = H W is the number of positions in a map"),
        ],
    )


def _style_grad(case: Case, value: Any) -> None:
    F, _, N, H, W, M = _style_terms(case)
    _, dF = ref_losses.style_layer_loss(F, case.args["A"])
    hints = {
        (N, M): " — reshape it to F's shape (N, H, W)",
        (M, N): " — that is F^T (G - A); the paper's ((F^l)^T (G^l - A^l))_ji is indexed j, i, "
        "so dE/dF = (G - A) F, of F's shape",
    }
    got = _array(_pair(value, "E", "dF")[1], F.shape, "dF", hints)
    _compare(
        got,
        dF,
        "dF",
        [
            (-dF, f"has the wrong sign: {_STYLE_GRAD}"),
            (2 * dF, f"is twice too large: {_STYLE_GRAD} (the 4 cancels one 2 from the square, one from G's two F's)"),
            (dF / 2, f"is half what it should be: {_STYLE_GRAD} (the 4 cancels one 2 from the square, one from G's two F's)"),
            (4 * dF, f"is 4 times too large: {_STYLE_GRAD}"),
            (dF / 4, f"is a quarter of what it should be: {_STYLE_GRAD}"),
            (dF * N**2 * M**2, f"is missing the normalisation: {_STYLE_GRAD}"),
            (dF * M**2 / W**2, "uses M_l = W; M_l = H W is the number of positions in a map"),
            (dF * M**2 / H**2, "uses M_l = H; M_l = H W is the number of positions in a map"),
        ],
    )


def _tv_spread(sw: np.ndarray, sh: np.ndarray, shape: tuple[int, ...], later: bool = True, earlier: bool = True) -> np.ndarray:
    """dL/dx from the slopes of the W- and H-differences, given to the later and/or earlier pixel of each pair."""
    dx = np.zeros(shape)
    if later:
        dx[:, :, 1:] += sw
        dx[:, 1:, :] += sh
    if earlier:
        dx[:, :, :-1] -= sw
        dx[:, :-1, :] -= sh
    return dx


def _tv_loss(case: Case, value: Any) -> None:
    x = case.args["x"]
    L, _ = ref_losses.tv_loss(x)
    dw, dh = np.abs(np.diff(x, axis=2)), np.abs(np.diff(x, axis=1))
    rolled = np.abs(np.roll(x, -1, 2) - x).sum() + np.abs(np.roll(x, -1, 1) - x).sum()
    _compare(
        _number(_pair(value, "loss", "dx")[0], "the loss"),
        L,
        "the loss",
        [
            (ref_losses.tv_loss(x, squared=True)[0], "uses squared differences; this exercise is the L1 form "
             "sum |x[c,i,j+1] - x[c,i,j]| + |x[c,i+1,j] - x[c,i,j]|"),
            (dw.sum(), "counts only the differences along W (x[:, :, 1:] - x[:, :, :-1]); add those along H"),
            (dh.sum(), "counts only the differences along H (x[:, 1:, :] - x[:, :-1, :]); add those along W"),
            (rolled, "wraps around the border (np.roll?): the last column has no neighbour to its right"),
            (dw.mean() + dh.mean(), "averages the differences; the loss sums them"),
        ],
    )


def _tv_grad(case: Case, value: Any) -> None:
    x = case.args["x"]
    _, dx = ref_losses.tv_loss(x)
    sw, sh = np.sign(np.diff(x, axis=2)), np.sign(np.diff(x, axis=1))
    rw, rh = np.sign(np.roll(x, -1, 2) - x), np.sign(np.roll(x, -1, 1) - x)
    pair = "each difference d = x[.., j+1] - x[.., j] depends on both pixels"
    _compare(
        _array(_pair(value, "loss", "dx")[1], x.shape, "dx"),
        dx,
        "dx",
        [
            (-dx, "has the wrong sign: d|d|/dd = sign(d), and d = x[.., j+1] - x[.., j]"),
            (_tv_spread(sw, sh, x.shape, earlier=False), f"only moves the later pixel of each pair: {pair}, "
             "so add sign(d) to x[.., j+1] and subtract it from x[.., j]"),
            (_tv_spread(sw, sh, x.shape, later=False), f"only moves the earlier pixel of each pair: {pair}, "
             "so add sign(d) to x[.., j+1] and subtract it from x[.., j]"),
            (ref_losses.tv_loss(x, squared=True)[1], "is the gradient of the squared form (2 d); the L1 form's is sign(d)"),
            (_tv_spread(sw, 0 * sh, x.shape), "has only the differences along W; add those along H"),
            (_tv_spread(0 * sw, sh, x.shape), "has only the differences along H; add those along W"),
            (2 * dx, "is twice too large: each difference adds sign(d) to one pixel and -sign(d) to the other, once"),
            (np.roll(rw, 1, 2) - rw + np.roll(rh, 1, 1) - rh, "wraps around the border (np.roll?): "
             "the last column has no neighbour to its right"),
        ],
    )


# --------------------------------------------------------------------------- the layers

_POOLED = " — that is the pooled shape of dy; dx has the shape of the input x"


def _relu(case: Case, value: Any) -> None:
    dy, x = case.args["dy"], case.args["x"]
    dx = ref_layers.relu_backward(dy, x)
    _compare(
        _array(value, x.shape, "dx"),
        dx,
        "dx",
        [
            (dy, "is dy unchanged: the ReLU's mask is missing; dL/dx = dy where x > 0, and 0 elsewhere"),
            (np.where(dy > 0, dy, 0.0), "masks where dy > 0; the mask comes from the forward input: dL/dx = dy [x > 0]"),
            (np.where(x < 0, dy, 0.0), "keeps dy where x < 0: the mask is the wrong way round"),
            ((x > 0).astype(float), "is the mask [x > 0] itself; multiply it by dy"),
            (np.maximum(x, 0.0), "is relu(x), the forward pass; the backward pass masks dy: dy [x > 0]"),
            (dy * x, "multiplies dy by x; the ReLU's slope is 1 where x > 0 and 0 elsewhere"),
            (dy * np.maximum(x, 0.0), "multiplies dy by relu(x); the ReLU's slope is 1 where x > 0 and 0 elsewhere"),
            (-dx, "has the wrong sign"),
        ],
    )


def _top_left(dy: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    dx = np.zeros(shape)
    dx[:, ::2, ::2] = dy
    return dx


def _max_pool(case: Case, value: Any) -> None:
    dy, x = case.args["dy"], case.args["x"]
    dx = ref_layers.max_pool_backward(dy, x)
    spread = ref_layers.avg_pool_backward(dy, x)
    _compare(
        _array(value, x.shape, "dx", {dy.shape: _POOLED}),
        dx,
        "dx",
        [
            (spread, "spreads dy/4 over each window, as average pooling does; max pooling sends all of dy "
             "to the pixel that held the window's maximum"),
            (4 * spread, "copies dy to all four pixels of each window; only the one that held the maximum gets it"),
            (dx / 4, "divides by 4: the maximum receives all of dy, the other three pixels nothing"),
            (_top_left(dy, x.shape), "sends dy to the top-left pixel of each window; it belongs to the pixel "
             "that held the maximum"),
            (ref_layers.max_pool_backward(dy, -x), "sends dy to each window's minimum; it belongs to the maximum"),
        ],
    )


def _avg_pool(case: Case, value: Any) -> None:
    dy, x = case.args["dy"], case.args["x"]
    dx = ref_layers.avg_pool_backward(dy, x)
    _compare(
        _array(value, x.shape, "dx", {dy.shape: _POOLED}),
        dx,
        "dx",
        [
            (4 * dx, "copies dy to the four pixels without the 1/4: each pixel is a quarter of the window's mean"),
            (ref_layers.max_pool_backward(dy, x), "routes dy to each window's maximum, as max pooling does; "
             "average pooling gives each of the four pixels dy/4"),
            (dx / 4, "divides by 16: each of the four pixels gets dy/4"),
            (_top_left(dy, x.shape) / 4, "gives dy/4 to the top-left pixel only; all four pixels get dy/4"),
        ],
    )


def _conv(case: Case, value: Any) -> None:
    dy, x, w = case.args["dy"], case.args["x"], case.args["w"]
    C, H, W = x.shape
    dx = ref_layers.conv2d_backward(dy, x, w)[0]
    hints = {
        w.shape: " — that is the shape of dL/dw; this exercise asks for dL/dx, of x's shape",
        dy.shape: " — that is dy's shape (K channels); dL/dx has x's C channels: sum over k against w[k, c]",
        (C, H + 2, W + 2): " — that is the padded input's shape: drop the one-pixel border",
        (C, H - 2, W - 2): " — a 'valid' correlation loses the border: pad dy by one pixel first",
    }
    rotate = "dL/dx correlates dy with the filters rotated by 180 degrees, w[:, :, ::-1, ::-1]"
    _compare(
        _array(value, x.shape, "dx", hints),
        dx,
        "dx",
        [
            (ref_layers.conv2d_backward_input(dy, w[:, :, ::-1, ::-1]), f"uses the filters as they are: {rotate}"),
            (ref_layers.conv2d_backward_input(dy, w[:, :, ::-1, :]), f"flips the filters along one axis only: {rotate}"),
            (ref_layers.conv2d_backward_input(dy, w[:, :, :, ::-1]), f"flips the filters along one axis only: {rotate}"),
            (-dx, "has the wrong sign"),
        ],
    )


# --------------------------------------------------------------------------- the closure


def objective(
    case: Case,
    x: np.ndarray,
    *,
    alpha: float = ALPHA,
    beta: float = BETA,
    layer_weight: float | None = None,
    shared: str = "sum",
) -> tuple[float, np.ndarray]:
    """The reference closure: L_total = alpha sum_l L_content + beta sum_l w_l E_l at the flat
    image ``x``, and its flat gradient, on the case's network and targets.

    The keywords turn the knobs of the typical mistakes: ``layer_weight`` replaces w_l = 1/|L|, and
    ``shared="content"`` or ``"style"`` lets that term's gradient overwrite the other's at a layer
    that serves both, instead of adding them.
    """
    net, P, A = case.args["net"], case.args["content_targets"], case.args["style_targets"]
    w = 1.0 / len(A) if layer_weight is None else layer_weight
    features = net.forward(x.reshape(case.args["shape"]), list(dict.fromkeys([*P, *A])))
    content = {name: ref_losses.content_loss(features[name], P[name]) for name in P}
    style = {name: ref_losses.style_layer_loss(features[name], A[name]) for name in A}
    loss = alpha * sum(L for L, _ in content.values()) + beta * w * sum(E for E, _ in style.values())
    by_content = {name: alpha * dF for name, (_, dF) in content.items()}
    by_style = {name: beta * w * dF for name, (_, dF) in style.items()}
    if shared == "sum":
        grads = {name: by_content.get(name, 0.0) + by_style.get(name, 0.0) for name in {**by_content, **by_style}}
    else:
        grads = {**by_content, **by_style} if shared == "style" else {**by_style, **by_content}
    return loss, net.backward(grads).ravel()


# Where two mistakes give the same value (the only content layer is also a style layer, and its
# content gradient got overwritten: "only the style term"), the first, more specific one is named.
_CLOSURE_MISTAKES: tuple[tuple[dict[str, Any], str], ...] = (
    ({"alpha": 1.0}, "leaves out alpha: L_total = alpha L_content + beta L_style"),
    ({"beta": 1.0}, "leaves out beta: L_total = alpha L_content + beta L_style"),
    ({"layer_weight": 1.0}, "leaves out the layer weights w_l = 1/|L| in L_style = sum_l w_l E_l"),
    ({"shared": "style"}, "loses the content gradient at a layer used for both content and style: "
     "add the two terms' dL/dF there, do not let one overwrite the other"),
    ({"shared": "content"}, "loses the style gradient at a layer used for both content and style: "
     "add the two terms' dL/dF there, do not let one overwrite the other"),
    ({"beta": 0.0}, "has only the content term: add beta L_style"),
    ({"alpha": 0.0}, "has only the style term: add alpha L_content"),
)


def _evaluations(case: Case, value: Any) -> list[tuple[np.ndarray, Any]]:
    """The (point, returned pair) of each closure evaluation, or :class:`Wrong`."""
    if not (isinstance(value, dict) and isinstance(value.get("evaluations"), list)):
        missing = ": is a `return closure` missing?" if value is None else ""
        raise Wrong(f"make_closure returned {_describe(value)}; it should return the function closure(x_flat){missing}")
    points = case.extra["points"]
    if len(value["evaluations"]) != len(points):
        raise Wrong("the closure's results came back incomplete")
    return [(x.ravel(), result) for x, result in zip(points, value["evaluations"])]


def _closure_loss(case: Case, value: Any) -> None:
    for x, result in _evaluations(case, value):
        got = _number(_pair(result, "loss", "grad")[0], "the loss")
        mistakes = [(objective(case, x, **knobs)[0], message) for knobs, message in _CLOSURE_MISTAKES]
        _compare(got, objective(case, x)[0], "the loss", mistakes)


def _closure_grad(case: Case, value: Any) -> None:
    flat = " — flatten it to x_flat's shape: scipy works with flat vectors (dx.ravel())"
    for x, result in _evaluations(case, value):
        got = _array(_pair(result, "loss", "grad")[1], x.shape, "the gradient", {case.args["shape"]: flat})
        expected = objective(case, x)[1]
        mistakes = [(objective(case, x, **knobs)[1], message) for knobs, message in _CLOSURE_MISTAKES]
        _compare(got, expected, "the gradient", [*mistakes, (-expected, "has the wrong sign")])


def _closure_lbfgs(case: Case, value: Any) -> None:
    _evaluations(case, value)
    final = value.get("final")
    if isinstance(final, str):
        raise Wrong(f"scipy's L-BFGS-B failed on your closure: {final}")
    x0 = case.extra["points"][0].ravel()
    x = _array(final, x0.shape, "L-BFGS-B's result")
    if x.min() < 0 or x.max() > 1:
        raise Wrong("L-BFGS-B's result leaves the bounds [0, 1]")
    start, reached = objective(case, x0)[0], objective(case, x)[0]
    best = run_lbfgs(lambda flat: objective(case, flat), x0).fun
    if reached > start - 0.5 * (start - best):
        raise Wrong(
            f"{LBFGS_ITERATIONS} iterations of L-BFGS-B took the loss from {start:.4g} only to {reached:.4g}; "
            f"with the reference closure they reach {best:.4g} (a gradient that does not match the loss "
            "misleads the line search)"
        )


# --------------------------------------------------------------------------- nst_controls

_YIQ = np.array([[0.299, 0.587, 0.114], [0.5959, -0.2746, -0.3213], [0.2115, -0.5227, 0.3112]])
_YIQ_ROUNDED = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_Y = _YIQ[0]
_YUV = np.stack([_Y, 0.492 * (np.eye(3)[2] - _Y), 0.877 * (np.eye(3)[0] - _Y)])  # Y, U = 0.492 (B - Y), V = 0.877 (R - Y)


def _torch(a: np.ndarray) -> Any:
    import torch

    return torch.from_numpy(np.ascontiguousarray(a))


def _mix(matrix: np.ndarray, x: np.ndarray) -> np.ndarray:
    """A 3x3 matrix applied to the channels of (3, H, W)."""
    return np.einsum("ij,jhw->ihw", matrix, x)


def _rgb_to_yiq(case: Case, value: Any) -> None:
    from nst_lessons import color

    x = case.args["x"]
    expected = color.rgb_to_yiq(_torch(x)).numpy()
    hints = {(*x.shape[1:], 3): " — the channels come first: x[0] is R, x[1] G, x[2] B, and so Y, I, Q"}
    _compare(
        _array(value, x.shape, "the YIQ image", hints),
        expected,
        "the YIQ image",
        [
            (_mix(_YUV, x), "is YUV (U = 0.492 (B - Y), V = 0.877 (R - Y)); YIQ has the same Y but I and Q "
             "rows 0.5959 R - 0.2746 G - 0.3213 B and 0.2115 R - 0.5227 G + 0.3112 B"),
            (_mix(_YIQ.T, x), "applies the transposed matrix: row i of the matrix gives channel i, "
             "Y = 0.299 R + 0.587 G + 0.114 B (np.einsum('ij,jhw->ihw', M, x))"),
            (_mix(_YIQ_ROUNDED, x), "uses the three-digit rounding of the coefficients (0.596, -0.274, ...); "
             "use the four-digit ones given, whose chroma rows sum to exactly 0"),
            (_mix(np.linalg.inv(_YIQ), x), "applies the inverse matrix, YIQ -> RGB"),
        ],
    )


def _yiq_to_rgb(case: Case, value: Any) -> None:
    from nst_lessons import color

    x = case.args["x"]
    expected = color.yiq_to_rgb(_torch(x)).numpy()
    _compare(
        _array(value, x.shape, "the RGB image"),
        expected,
        "the RGB image",
        [
            (_mix(_YIQ, x), "applies the RGB -> YIQ matrix again; its inverse undoes it: np.linalg.inv(M)"),
            (_mix(_YIQ.T, x), "applies the transposed matrix; the inverse of the YIQ matrix is not its transpose "
             "(the matrix is not orthogonal): np.linalg.inv(M)"),
            (_mix(np.linalg.inv(_YIQ).T, x), "applies the transpose of the inverse: row i of np.linalg.inv(M) gives channel i"),
            (_mix(np.linalg.inv(_YIQ_ROUNDED), x), "inverts the three-digit rounding of the coefficients; "
             "use the four-digit ones given"),
            (_mix(np.linalg.inv(_YUV), x), "inverts YUV, not YIQ"),
        ],
    )


def _moments(a: np.ndarray, ddof: int = 0) -> tuple[float, float]:
    return float(a.mean()), float(a.std(ddof=ddof))


def _match_luminance(case: Case, value: Any) -> None:
    from nst_lessons import color

    L_S, L_C = case.args["L_S"], case.args["L_C"]
    expected = color.match_luminance(_torch(L_S)[None], _torch(L_C)[None]).numpy()[0]
    (mu_S, s_S), (mu_C, s_C) = _moments(L_S), _moments(L_C)
    (_, s_S1), (_, s_C1) = _moments(L_S, 1), _moments(L_C, 1)
    moved = " the style's luminance L_S is the one that is moved"
    hints = {L_C.shape: f" — that is L_C's shape:{moved}"}
    wrong_way = (s_S / s_C) * (L_C - mu_C) + mu_S if L_C.shape == L_S.shape else None
    _compare(
        _array(value, L_S.shape, "L_S'", hints),
        expected,
        "L_S'",
        [
            ((s_S / s_C) * (L_S - mu_S) + mu_C, "scales by sigma_S / sigma_C; the content's spread goes on top: sigma_C / sigma_S"),
            (L_S - mu_S + mu_C, "shifts the mean but keeps the style's contrast: scale by sigma_C / sigma_S too"),
            ((s_C / s_S) * (L_S - mu_S) + mu_S, "keeps the style's mean: add the content's, mu_C, after scaling"),
            ((s_C / s_S) * L_S + mu_C, "scales L_S before subtracting its mean: (sigma_C / sigma_S)(L_S - mu_S) + mu_C"),
            ((s_C / s_S) * L_S - mu_S + mu_C, "subtracts mu_S after scaling: (sigma_C / sigma_S)(L_S - mu_S) + mu_C"),
            ((s_C1 / s_S1) * (L_S - mu_S) + mu_C, "uses the sample standard deviation (ddof=1); the paper's "
             "statistics are over all pixels: np.std's default, ddof=0"),
            ((s_C**2 / s_S**2) * (L_S - mu_S) + mu_C, "scales by the ratio of variances; it is the ratio of standard deviations"),
            *([(wrong_way, f"moves L_C to L_S's mean and spread, the wrong way round:{moved}")] if wrong_way is not None else []),
        ],
    )


def _covariance(x: np.ndarray, ddof: int = 0) -> tuple[np.ndarray, np.ndarray]:
    pixels = x.reshape(3, -1)
    mu = pixels.mean(1)
    d = pixels - mu[:, None]
    return mu, d @ d.T / (pixels.shape[1] - ddof)


def _affine(x: np.ndarray, A: np.ndarray, mu_from: np.ndarray, mu_to: np.ndarray) -> np.ndarray:
    return (A @ (x.reshape(3, -1) - mu_from[:, None]) + mu_to[:, None]).reshape(x.shape)


def _sqrtm(S: np.ndarray, power: float) -> np.ndarray:
    lam, V = np.linalg.eigh(S)
    return (V * lam**power) @ V.T


def _color_mistakes(source: np.ndarray, target: np.ndarray, A_of: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> list[tuple[Any, str]]:
    """The mistakes both colour matches share, given how the exercise makes A from Σ_S and Σ_C."""
    (mu_S, S_S), (mu_C, S_C) = _covariance(source), _covariance(target)
    (_, S_S1), (_, S_C1) = _covariance(source, 1), _covariance(target, 1)
    A = A_of(S_S, S_C)
    return [
        (_affine(source, A, mu_S, 0 * mu_C), "is centred at 0: add the target's mean colour mu_C after applying A"),
        (_affine(source, A, mu_S, mu_S), "keeps the source's mean colour: add the target's, mu_C, after applying A"),
        (_affine(source, A, 0 * mu_S, mu_C), "applies A to x without subtracting mu_S first: x' = A (x - mu_S) + mu_C"),
        (_affine(source, A_of(S_C, S_S), mu_S, mu_C), "swaps the covariances: A must take Sigma_S to Sigma_C "
         "(A Sigma_S A^T = Sigma_C), so Sigma_S's factor is the one inverted"),
        (_affine(source, A_of(S_S1, S_C1), mu_S, mu_C), "uses the sample covariance (np.cov divides by M - 1); "
         "the paper's statistics divide by the number of pixels M: np.cov(..., bias=True)"),
    ]


def _match_color(mode: str) -> Callable[[Case, Any], None]:
    def diagnose(case: Case, value: Any) -> None:
        from nst_lessons import color

        source, target = case.args["source"], case.args["target"]
        expected = color.match_color(_torch(source), _torch(target), mode=mode, eps=0.0).numpy()
        (mu_S, S_S), (mu_C, S_C) = _covariance(source), _covariance(target)
        if mode == "cholesky":
            A_of = lambda S_S, S_C: np.linalg.cholesky(S_C) @ np.linalg.inv(np.linalg.cholesky(S_S))  # noqa: E731
            U_S, U_C = np.linalg.cholesky(S_S).T, np.linalg.cholesky(S_C).T  # scipy's default: Sigma = U^T U
            own = [
                (_affine(source, U_C @ np.linalg.inv(U_S), mu_S, mu_C), "uses the upper-triangular factors U of "
                 "Sigma = U^T U (scipy.linalg.cholesky's default); A = L_C L_S^-1 needs the lower ones, Sigma = L L^T "
                 "(np.linalg.cholesky, or scipy's lower=True)"),
                (_affine(source, np.linalg.inv(np.linalg.cholesky(S_S)) @ np.linalg.cholesky(S_C), mu_S, mu_C),
                 "multiplies the factors in the wrong order: A = L_C L_S^-1, not L_S^-1 L_C"),
                (_affine(source, _sqrtm(S_C, 0.5) @ _sqrtm(S_S, -0.5), mu_S, mu_C), "is the image-analogies (PCA) "
                 "match; this exercise asks for the Cholesky one, A = L_C L_S^-1"),
            ]
        else:
            A_of = lambda S_S, S_C: _sqrtm(S_C, 0.5) @ _sqrtm(S_S, -0.5)  # noqa: E731
            L = np.linalg.cholesky
            own = [
                (_affine(source, _sqrtm(S_S, -0.5) @ _sqrtm(S_C, 0.5), mu_S, mu_C), "multiplies the square roots in "
                 "the wrong order: A = Sigma_C^1/2 Sigma_S^-1/2 (matrices do not commute)"),
                (_affine(source, np.sqrt(np.abs(S_C)) @ np.linalg.inv(np.sqrt(np.abs(S_S))), mu_S, mu_C),
                 "takes the square root of each entry; the matrix square root is V diag(sqrt(lambda)) V^T from "
                 "np.linalg.eigh"),
                (_affine(source, L(S_C) @ np.linalg.inv(L(S_S)), mu_S, mu_C), "is the Cholesky match; this "
                 "exercise asks for the symmetric square roots, A = Sigma_C^1/2 Sigma_S^-1/2"),
            ]
        hints = {target.shape: " — that is the target's shape: the source's pixels are the ones moved"}
        got = _array(value, source.shape, "x'", hints)
        _compare(got, expected, "x'", [*own, *_color_mistakes(source, target, A_of)])

    return diagnose


def _guided_gram(case: Case, value: Any) -> None:
    from nst_lessons import losses, masks

    F, T = case.args["F"], case.args["T"]
    N, H, W = F.shape
    M = H * W
    F_t, T_t = _torch(F)[None], _torch(T)[None, None]
    G = losses.gram_matrix(F_t * masks.area_weights(T_t)).numpy()[0]
    paper = losses.gram_matrix(F_t * masks.area_weights(T_t, power=2)).numpy()[0]
    F_nm, t = F.reshape(N, M), T.reshape(M)
    weighted = lambda w, scale: (F_nm * w) @ F_nm.T * scale  # noqa: E731
    binary = (t > 0.5).astype(float)
    hints = {(M, M): " — that compares positions; G compares the N filters: (N, N)"}
    _compare(
        _array(value, (N, N), "G", hints),
        G,
        "G",
        [
            (weighted(t * t, M / t.sum()), "applies the mask twice: (F T)(F T)^T weights each position by T^2; "
             "weight it by T once, F diag(T) F^T, e.g. (F * T) @ F.T"),
            (paper, "is Gatys et al.'s form, the feature maps times T normalised by sum T^2 (T^2 per position); "
             "this exercise asks for the package's, T per position and M_l / sum T"),
            (weighted(t, 1.0), "is missing the normalisation M_l / sum_k T[k]"),
            (weighted(t, 1 / t.sum()), "divides by sum_k T[k] but leaves out M_l: the factor is M_l / sum_k T[k]"),
            (weighted(t, 1 / M), "divides by M_l; the factor is M_l / sum_k T[k] (the region's area replaces M_l)"),
            (weighted(np.sqrt(t), M / t.sum()), "weights each position by sqrt(T): multiply by T once, not by its root on one side"),
            (weighted(binary, M / binary.sum()), "treats the soft mask as binary (T > 0.5); its values are weights"),
            (weighted(np.ones(M), 1.0), "ignores the mask: that is the ordinary Gram matrix F F^T"),
        ],
    )


# --------------------------------------------------------------------------- nst_video

_BACKWARD_WARP = "a backward warp looks each output pixel q up where it came from, image(q + flow(q))"


def _bilinear(image: np.ndarray, x: np.ndarray, y: np.ndarray, mode: str = "clamp") -> np.ndarray:
    """image sampled at (x, y) bilinearly; outside the frame: "clamp" (border repeated), "zeros", "wrap"."""
    h, w = image.shape[:2]
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]

    def at(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        if mode == "wrap":
            return image[yy % h, xx % w]
        inside = ((xx >= 0) & (xx < w) & (yy >= 0) & (yy < h))[..., None]
        value = image[np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)]
        return value * inside if mode == "zeros" else value

    if mode == "clamp":
        x, y = np.clip(x, 0, w - 1), np.clip(y, 0, h - 1)
        return _bilinear(image, x, y, "none")
    top = at(y0, x0) * (1 - fx) + at(y0, x0 + 1) * fx
    bottom = at(y0 + 1, x0) * (1 - fx) + at(y0 + 1, x0 + 1) * fx
    return top * (1 - fy) + bottom * fy


def _warp(case: Case, value: Any) -> None:
    from nst_lessons.scratch.warping import warp

    image, flow = case.args["image"], case.args["flow"]
    h, w = flow.shape[:2]
    expected = warp(image, flow)
    gx, gy = np.meshgrid(np.arange(w), np.arange(h))
    x, y = gx + flow[..., 0], gy + flow[..., 1]
    hints = {flow.shape: " — that is the flow's shape; the warped image has the image's"}
    got = _array(value, image.shape, "the warped image", hints)
    if np.mean(got == 0) > 0.02:  # the images have no zeros: pixels left empty
        raise Wrong(f"the warped image has holes ({np.mean(got == 0):.0%} of its values are 0): is it a forward warp, "
                    f"pushing each pixel along the flow? {_BACKWARD_WARP}, so every pixel gets a value")
    sample = lambda xx, yy, mode="clamp": _bilinear(image, xx, yy, mode)  # noqa: E731
    x_r, y_r = np.clip(np.rint(x), 0, w - 1).astype(int), np.clip(np.rint(y), 0, h - 1).astype(int)
    x_f, y_f = np.clip(np.floor(x), 0, w - 1).astype(int), np.clip(np.floor(y), 0, h - 1).astype(int)
    _compare(
        got,
        expected,
        "the warped image",
        [
            (sample(gx - flow[..., 0], gy - flow[..., 1]), f"samples at q - flow(q): a forward warp's look-up; {_BACKWARD_WARP}"),
            (sample(gx + flow[..., 1], gy + flow[..., 0]), "swaps x and y: flow[..., 0] moves along x (columns, the "
             "second index), flow[..., 1] along y (rows, the first index)"),
            (image[y_r, x_r], "rounds the sample position to the nearest pixel; interpolate bilinearly between the "
             "four pixels around it"),
            (image[y_f, x_f], "truncates the sample position to a pixel (floor); interpolate bilinearly between the "
             "four pixels around it"),
            (sample(x, y, "zeros"), "treats pixels outside the frame as 0; repeat the border (clamp the sample "
             "position to [0, W-1] x [0, H-1])"),
            (sample(x, y, "wrap"), "wraps around the border; repeat the border instead (clamp the sample position)"),
            (_swapped_weights(image, x, y), "swaps the bilinear weights: the pixel at floor(x) gets 1 - (x - floor(x)), "
             "the one at floor(x) + 1 gets x - floor(x)"),
            (image, "is the image unchanged: sample it at q + flow(q)"),
        ],
    )


def _swapped_weights(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    x, y = np.clip(x, 0, w - 1), np.clip(y, 0, h - 1)
    x0, y0 = np.minimum(np.floor(x).astype(int), w - 2), np.minimum(np.floor(y).astype(int), h - 2)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    top = image[y0, x0] * fx + image[y0, x0 + 1] * (1 - fx)
    bottom = image[y0 + 1, x0] * fx + image[y0 + 1, x0 + 1] * (1 - fx)
    return top * fy + bottom * (1 - fy)


def _consistency_parts(forward: np.ndarray, backward: np.ndarray, w_tilde: np.ndarray, central: bool = True) -> dict[str, np.ndarray]:
    """Where each of Ruder et al.'s three tests marks the flow as not trusted, (H, W) booleans."""
    h, w = backward.shape[:2]
    sq = lambda f: (f**2).sum(-1)  # noqa: E731
    if central:
        du_dy, du_dx = np.gradient(backward[..., 0])
        dv_dy, dv_dx = np.gradient(backward[..., 1])
    else:  # one-sided differences, the last row and column repeated
        du_dx, du_dy = (np.diff(backward[..., 0], axis=a, append=backward[..., 0].take([-1], axis=a)) for a in (1, 0))
        dv_dx, dv_dy = (np.diff(backward[..., 1], axis=a, append=backward[..., 1].take([-1], axis=a)) for a in (1, 0))
    x = np.arange(w)[None, :] + backward[..., 0]
    y = np.arange(h)[:, None] + backward[..., 1]
    return {
        "disocclusion": sq(w_tilde + backward) > 0.01 * (sq(w_tilde) + sq(backward)) + 0.5,
        "boundary": du_dx**2 + du_dy**2 + dv_dx**2 + dv_dy**2 > 0.01 * sq(backward) + 0.002,
        "outside": (x < 0) | (x > w - 1) | (y < 0) | (y > h - 1),
    }


def _consistency(case: Case, value: Any) -> None:
    from nst_lessons.scratch.warping import warp
    from nst_lessons.video import consistency_weights

    forward, backward = case.args["forward"], case.args["backward"]
    expected = consistency_weights(forward, backward, warp_with=warp).astype(np.float64)
    if isinstance(value, np.ndarray) and value.dtype == bool:
        raise Wrong("c is a boolean array; return the weights as floats, 1.0 where the flow is trusted and 0.0 elsewhere (.astype(float))")
    got = _array(value, backward.shape[:2], "c", {backward.shape: " — one weight per pixel, shared by x and y: (H, W)"})

    def c_without(*tests: str, w_tilde: np.ndarray | None = None, central: bool = True) -> np.ndarray:
        parts = _consistency_parts(forward, backward, warp(forward, backward) if w_tilde is None else w_tilde, central)
        return (~np.any([m for name, m in parts.items() if name not in tests], axis=0)).astype(float)

    _compare(
        got,
        expected,
        "c",
        [
            (1 - expected, "is 1 where the flow is not trusted and 0 elsewhere: the wrong way round"),
            (c_without(w_tilde=forward), "compares w(q) with w^(q) at the same position; the forward flow must be read "
             "where the pixel came from, w~(q) = w(q + w^(q)) = warp(forward, backward)"),
            (c_without(w_tilde=warp(backward, forward)), "warps the wrong flow: w~ = warp(forward, backward), the "
             "forward flow carried along the backward one"),
            (c_without("disocclusion"), "never marks disocclusions: c = 0 where |w~ + w^|^2 > 0.01 (|w~|^2 + |w^|^2) + 0.5"),
            (c_without("boundary"), "never marks motion boundaries: c = 0 where |grad u^|^2 + |grad v^|^2 > 0.01 |w^|^2 + 0.002"),
            (c_without("outside"), "keeps pixels whose source q + w^(q) lies outside the frame: their c is 0"),
            (c_without(central=False), "uses one-sided differences for the gradients of u^ and v^; use central ones, "
             "np.gradient, as the package does"),
        ],
    )


def _temporal_terms(case: Case) -> tuple[np.ndarray, np.ndarray, int]:
    x, warped, c = case.args["x"], case.args["warped"], case.args["c"]
    return x - warped, c[..., None], x.size


def _temporal_reference(case: Case) -> tuple[float, np.ndarray]:
    from nst_lessons import losses

    x, warped, c = (_torch(np.moveaxis(np.atleast_3d(case.args[k]), -1, 0))[None] for k in ("x", "warped", "c"))
    return float(losses.temporal_loss(x, warped, c)), np.moveaxis(losses.temporal_grad(x, warped, c)[0].numpy(), 0, -1)


def _temporal_loss(case: Case, value: Any) -> None:
    d, c, D = _temporal_terms(case)
    L, _ = _temporal_reference(case)
    H, W = c.shape[:2]
    _compare(
        _number(_pair(value, "loss", "dx")[0], "the loss"),
        L,
        "the loss",
        [
            ((c * d * d).sum(), "is a sum: divide by D = 3 H W, the number of values in a frame"),
            ((c * d * d).sum() / (H * W), "divides by H W; D = 3 H W counts every value, the three channels too"),
            ((c * d * d).sum() / (3 * c.sum()), "divides by the weights' sum; D = 3 H W is every value of the frame"),
            ((c * d * d).sum() / c.sum(), "divides by the weights' sum; D = 3 H W is every value of the frame"),
            ((d * d).sum() / D, "ignores c: each squared difference is weighted by its pixel's c"),
            (((c * d) ** 2).sum() / D, "squares c along with the difference, (c (x - w))^2 weights by c^2; "
             "the loss is c (x - w)^2"),
            ((c * np.abs(d)).sum() / D, "uses |x - w|; the loss squares the difference"),
        ],
    )


def _temporal_grad(case: Case, value: Any) -> None:
    d, c, D = _temporal_terms(case)
    _, dx = _temporal_reference(case)
    H, W = c.shape[:2]
    got = _array(_pair(value, "loss", "dx")[1], d.shape, "dx", {(H, W): " — give dx the shape of x, (H, W, 3)"})
    _compare(
        got,
        dx,
        "dx",
        [
            (-dx, "has the wrong sign: dL/dx = 2 c (x - w) / D"),
            (dx / 2, "is half what it should be: the square brings down a 2, dL/dx = 2 c (x - w) / D"),
            (dx * D, "is missing the 1/D: dL/dx = 2 c (x - w) / D"),
            (dx * D / (H * W), "divides by H W; D = 3 H W counts every value, the three channels too"),
            (2 * d / D, "ignores c: dL/dx = 2 c (x - w) / D"),
            (2 * c * c * d / D, "has c^2, as if the loss squared c with the difference; dL/dx = 2 c (x - w) / D"),
        ],
    )


# --------------------------------------------------------------------------- the parts

PARTS: dict[str, tuple[Part, ...]] = {
    "gram_matrix": (Part("G = F F^T", 2, _gram),),
    "content_loss": (Part("the loss", 1, _content_loss), Part("the gradient dL/dF", 1, _content_grad)),
    "style_layer_loss": (Part("the loss E_l", 2, _style_loss), Part("the gradient dE_l/dF", 2, _style_grad)),
    "tv_loss": (Part("the loss", 1, _tv_loss), Part("the gradient dL/dx", 2, _tv_grad)),
    "relu_backward": (Part("dL/dx", 1, _relu),),
    "max_pool_backward": (Part("dL/dx", 2, _max_pool),),
    "avg_pool_backward": (Part("dL/dx", 1, _avg_pool),),
    "conv2d_backward": (Part("dL/dx", 3, _conv),),
    "make_closure": (
        Part("the loss", 1, _closure_loss),
        Part("the gradient", 2, _closure_grad),
        Part("L-BFGS lowers the loss", 1, _closure_lbfgs),
    ),
    "rgb_to_yiq": (Part("RGB -> YIQ", 1, _rgb_to_yiq),),
    "yiq_to_rgb": (Part("YIQ -> RGB", 1, _yiq_to_rgb),),
    "match_luminance": (Part("L_S'", 2, _match_luminance),),
    "match_color_cholesky": (Part("x' with A = L_C L_S^-1", 2, _match_color("cholesky")),),
    "match_color_pca": (Part("x' with A = Sigma_C^1/2 Sigma_S^-1/2", 2, _match_color("pca")),),
    "guided_gram": (Part("G weighted by T", 2, _guided_gram),),
    "warp": (Part("the warped image", 3, _warp),),
    "consistency_weights": (Part("c", 3, _consistency),),
    "temporal_loss": (Part("the loss", 2, _temporal_loss), Part("the gradient dL/dx", 2, _temporal_grad)),
}
POINTS: dict[str, float] = {name: sum(part.points for part in parts) for name, parts in PARTS.items()}
"""Each exercise's points: what its check cell is worth in the notebook's nbgrader metadata."""


def _problem(part: Part, case: Case, observation: Observation) -> str | None:
    if observation.error is not None:
        if observation.error.startswith("NotImplementedError"):
            return NOT_ANSWERED
        return f"raised {observation.error} (with {case.label})"
    if observation.mutated:
        names = " and ".join(observation.mutated)
        return (
            f"changed its input {names} in place (with `-=`, `+=` or `{observation.mutated[0]}[...] = ...`); "
            f"the caller still needs it: compute a new array instead (with {case.label})"
        )
    try:
        part.diagnose(case, observation.value)
    except Wrong as wrong:
        return f"{wrong} (with {case.label})"
    except Exception as error:  # a value so odd that the diagnosis trips: still a clear no
        return f"returned {_describe(observation.value)}, which could not be checked ({type(error).__name__})"
    return None


def judge(name: str, cases: Sequence[Case], observations: Sequence[Observation] | str) -> list[Verdict]:
    """Every part of exercise ``name``: passed, or the first problem found over the cases.

    ``observations`` holds one :class:`Observation` per case, or a message saying why there are none
    (the function is missing, the sandbox timed out, ...), which then fails every part.
    """
    parts = PARTS[name]
    if isinstance(observations, str):
        return [Verdict(name, part, observations) for part in parts]
    if len(observations) != len(cases):
        return [Verdict(name, part, "the results came back incomplete") for part in parts]
    verdicts = []
    for part in parts:
        problems = (_problem(part, case, o) for case, o in zip(cases, observations))
        verdicts.append(Verdict(name, part, next((p for p in problems if p), None)))
    return verdicts


def check(name: str, fn: Callable[..., Any]) -> None:
    """Run exercise ``name``'s public checks on ``fn`` and print the verdict.

    Where ``$NST_LESSONS_HIDDEN_CASES`` names the instructor's hidden-cases file (nbgrader's
    autograding, say), the hidden cases are checked too, so the check cell passes only if both do.

    Raises:
        CheckFailed: with every failing part and what is wrong with it, chained to the exception
            ``fn`` raised, if any, so the traceback shows where.
    """
    __tracebackhide__ = True  # IPython and pytest hide this frame: the message is what matters
    if name not in PARTS:
        raise ValueError(f"unknown exercise {name!r}; expected one of {', '.join(ALL_EXERCISES)}")
    module = getattr(fn, "__module__", None) or ""
    if not callable(fn):
        raise CheckFailed(f"✗ {name}: expected your function, got {_describe(normalise(fn))}")
    if module.startswith("nst_lessons"):
        raise CheckFailed(f"✗ {name} is {module}.{getattr(fn, '__name__', name)}, the package's own answer; write yours in the answer cell")
    cases = make_cases(name, hidden=False)
    if os.environ.get(HIDDEN_CASES_ENV):
        cases += hidden_cases().cases(name)
    observations = [observe(functools.partial(call, name, fn, case), case.args) for case in cases]
    verdicts = judge(name, cases, observations)
    if all(v.problem is None for v in verdicts):
        print(f"✓ {name}: all checks passed")
        return
    lines = [f"✗ {name}:"]
    lines += [f"  ✓ {v.part.title}" if v.problem is None else f"  ✗ {v.part.title}: {v.problem}" for v in verdicts]
    _fail("\n".join(lines), next((o.exception for o in observations if o.exception is not None), None))


def _fail(message: str, cause: BaseException | None) -> NoReturn:
    # A frame of its own: IPython hides check()'s frame (__tracebackhide__) but always shows the
    # last one, so the traceback ends on these two lines rather than on check()'s body.
    raise CheckFailed(message) from cause


__all__ = ["NOT_ANSWERED", "PARTS", "POINTS", "CheckFailed", "Part", "Verdict", "Wrong", "check", "judge", "objective"]
