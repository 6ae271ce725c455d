"""The inputs each exercise is tested on, and how its function is called on them.

Public cases are what ``check(...)`` runs in the notebook; hidden cases, with other shapes and a
seed of the grader's choosing, are what ``nst-lessons grade`` runs.  This module also runs in the
sandbox beside the student's code, where the grader trusts nothing: it only builds inputs and
calls functions.  The reference answers and the judging live in :mod:`nst_lessons.grading.checks`.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import Bounds, OptimizeResult, minimize

EXERCISES: tuple[str, ...] = (
    "gram_matrix",
    "content_loss",
    "style_layer_loss",
    "tv_loss",
    "relu_backward",
    "max_pool_backward",
    "avg_pool_backward",
    "conv2d_backward",
    "make_closure",
)
"""The exercises, in notebook order; each is a function of this name defined in an answer cell."""

PUBLIC_SEED = 0
HIDDEN_SEED = 2015
LBFGS_ITERATIONS = 10

# The closure's loss weights: neither is 1, so that leaving one out shows.
ALPHA = 0.5
BETA = 1e4


@dataclass(frozen=True)
class Case:
    """One test input.

    Attributes:
        args: the function's arguments in order, by the names the notebook gives them.
        label: how messages name this case, e.g. "F of shape (3, 4, 5)".
        extra: what the caller needs besides the arguments (the closure's evaluation points).
    """

    args: dict[str, Any]
    label: str
    extra: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- inputs


def _gram(rng: np.random.Generator, shape: tuple[int, int, int]) -> Case:
    return Case({"F": rng.standard_normal(shape)}, f"F of shape {shape}")


def _content(rng: np.random.Generator, shape: tuple[int, int, int]) -> Case:
    return Case({"F": rng.standard_normal(shape), "P": rng.standard_normal(shape)}, f"F and P of shape {shape}")


def _style(rng: np.random.Generator, shape: tuple[int, int, int]) -> Case:
    N = shape[0]
    style_features = rng.standard_normal((N, shape[1] * shape[2]))
    A = style_features @ style_features.T  # a Gram matrix, as the style image would give
    return Case({"F": rng.standard_normal(shape), "A": A}, f"F of shape {shape} and A of shape {A.shape}")


def _tv(rng: np.random.Generator, shape: tuple[int, int, int]) -> Case:
    return Case({"x": rng.uniform(size=shape)}, f"x of shape {shape}")


def _relu(rng: np.random.Generator, shape: tuple[int, int, int]) -> Case:
    return Case({"dy": rng.standard_normal(shape), "x": rng.standard_normal(shape)}, f"dy and x of shape {shape}")


def _pool(rng: np.random.Generator, shape: tuple[int, int, int]) -> Case:
    C, H, W = shape
    pooled = (C, H // 2, W // 2)
    return Case(
        {"dy": rng.standard_normal(pooled), "x": rng.standard_normal(shape)},
        f"x of shape {shape} and dy of shape {pooled}",
    )


def _conv(rng: np.random.Generator, shape: tuple[int, int, int, int]) -> Case:
    K, C, H, W = shape
    args = {
        "dy": rng.standard_normal((K, H, W)),
        "x": rng.standard_normal((C, H, W)),
        "w": rng.standard_normal((K, C, 3, 3)),
    }
    return Case(args, f"dy of shape {(K, H, W)}, x of shape {(C, H, W)} and w of shape {(K, C, 3, 3)}")


def tiny_vgg(rng: np.random.Generator) -> Any:
    """VGG-19's layers with 4 to 8 channels and He-initialised random weights: a
    :class:`~nst_lessons.scratch.vgg.NumpyVGG19` small enough to evaluate in a millisecond."""
    from nst_lessons.scratch.vgg import NumpyVGG19
    from nst_lessons.vgg import LAYERS

    widths = {1: 4, 2: 6, 3: 8, 4: 8, 5: 8}  # channels of each block's convolutions
    state, c_in = {}, 3
    for i, name in enumerate(LAYERS):
        if name.startswith("conv"):
            c_out = widths[int(name[4])]
            state[f"features.{i}.weight"] = rng.standard_normal((c_out, c_in, 3, 3)) * np.sqrt(2 / (9 * c_in))
            state[f"features.{i}.bias"] = 0.1 * rng.standard_normal(c_out)
            c_in = c_out
    return NumpyVGG19(state)


def _closure(rng: np.random.Generator, spec: tuple[int, int, tuple[str, ...], tuple[str, ...]]) -> Case:
    from nst_lessons.scratch.losses import gram_matrix

    H, W, content_layers, style_layers = spec
    shape = (3, H, W)
    net = tiny_vgg(rng)
    photo, painting, x0 = (rng.uniform(size=shape) for _ in range(3))
    P = net.forward(photo, content_layers)
    A = {name: gram_matrix(F) for name, F in net.forward(painting, style_layers).items()}
    x1 = np.clip(x0 + 0.1 * rng.standard_normal(shape), 0.0, 1.0)
    args = {"net": net, "shape": shape, "content_targets": P, "style_targets": A, "alpha": ALPHA, "beta": BETA}
    label = f"a {H}x{W} image on a tiny random VGG (content {', '.join(P)}; style {', '.join(A)})"
    return Case(args, label, extra={"points": (x0, x1)})


# name: (make a case from an rng and a shape, public shapes, hidden shapes).  The hidden shapes
# are deliberately unlike the public ones: non-square, N > M, a single channel, K != C.
_MAKERS: dict[str, tuple[Callable[[np.random.Generator, Any], Case], list[Any], list[Any]]] = {
    "gram_matrix": (_gram, [(3, 4, 5)], [(5, 2, 3), (4, 6, 6), (1, 3, 7)]),
    "content_loss": (_content, [(3, 4, 5)], [(2, 3, 3), (5, 4, 2)]),
    "style_layer_loss": (_style, [(3, 4, 5)], [(4, 3, 2), (2, 5, 3), (6, 2, 4)]),
    "tv_loss": (_tv, [(3, 4, 5)], [(1, 6, 4), (3, 5, 7)]),
    "relu_backward": (_relu, [(2, 3, 4)], [(4, 5, 6), (1, 2, 2)]),
    "max_pool_backward": (_pool, [(2, 4, 4)], [(3, 6, 4), (1, 2, 8)]),
    "avg_pool_backward": (_pool, [(2, 4, 4)], [(3, 6, 4), (1, 2, 8)]),
    "conv2d_backward": (_conv, [(3, 2, 4, 5)], [(2, 3, 5, 4), (4, 1, 3, 6)]),
    "make_closure": (
        _closure,
        [(16, 16, ("relu2_1",), ("relu1_1", "relu2_1"))],
        [(12, 20, ("relu1_2",), ("relu1_1", "relu1_2", "pool1")), (8, 8, ("relu2_2",), ("relu2_1",))],
    ),
}


def make_cases(name: str, hidden: bool, seed: int = HIDDEN_SEED) -> list[Case]:
    """The public (``hidden=False``) or hidden cases of exercise ``name``; hidden ones depend on ``seed``."""
    if name not in _MAKERS:
        raise ValueError(f"unknown exercise {name!r}; expected one of {', '.join(EXERCISES)}")
    make, public, secret = _MAKERS[name]
    rng = np.random.default_rng(seed if hidden else PUBLIC_SEED)
    return [make(rng, shape) for shape in (secret if hidden else public)]


# --------------------------------------------------------------------------- calls


def run_lbfgs(closure: Callable[[np.ndarray], Any], x0: np.ndarray, iterations: int = LBFGS_ITERATIONS) -> OptimizeResult:
    """scipy's L-BFGS-B on ``closure`` from ``x0``, pixels bounded to [0, 1]."""
    x0 = np.ravel(x0)
    bounds = Bounds(np.zeros(x0.size), np.ones(x0.size))
    return minimize(closure, x0, jac=True, method="L-BFGS-B", bounds=bounds, options={"maxiter": iterations})


def with_reference_losses(make_closure: Callable[..., Any]) -> Callable[..., Any]:
    """``make_closure`` with the loss exercises' names bound to the reference implementations, so
    the closure is judged on its own: a slip in an earlier exercise costs marks once, not twice."""
    if not isinstance(make_closure, types.FunctionType):
        return make_closure
    from nst_lessons.scratch import losses

    names = {name: getattr(losses, name) for name in ("gram_matrix", "content_loss", "style_layer_loss", "tv_loss")}
    swapped = types.FunctionType(
        make_closure.__code__,
        {**make_closure.__globals__, **names},
        make_closure.__name__,
        make_closure.__defaults__,
        make_closure.__closure__,
    )
    swapped.__kwdefaults__ = make_closure.__kwdefaults__
    return swapped


def call(name: str, fn: Callable[..., Any], case: Case) -> Any:
    """Call exercise ``name``'s function on one case; what comes back is what gets judged.

    The closure exercise returns a function, so it is driven further: evaluated at each of the
    case's points, then run through :func:`run_lbfgs`; its "value" is ``{"evaluations":
    [(loss, grad), ...], "final": x or the error L-BFGS-B raised}``.
    """
    if name != "make_closure":
        return fn(*case.args.values())
    closure = with_reference_losses(fn)(*case.args.values())
    if not callable(closure):
        return closure
    evaluations = [closure(x.ravel().copy()) for x in case.extra["points"]]
    try:
        final: Any = run_lbfgs(closure, case.extra["points"][0]).x
    except Exception as error:  # reported in the L-BFGS part only
        final = f"{type(error).__name__}: {error}"
    return {"evaluations": evaluations, "final": final}


__all__ = [
    "ALPHA",
    "BETA",
    "Case",
    "EXERCISES",
    "HIDDEN_SEED",
    "LBFGS_ITERATIONS",
    "PUBLIC_SEED",
    "call",
    "make_cases",
    "run_lbfgs",
    "tiny_vgg",
    "with_reference_losses",
]
