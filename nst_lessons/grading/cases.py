"""The inputs each exercise is tested on, and how its function is called on them.

Public cases are what ``check(...)`` runs in the notebook; hidden cases, with other shapes and
seeds of the grader's choosing, are what ``nst-lessons grade`` runs.  The package ships one set of
hidden cases (:data:`SHIPPED`), which anyone with the package can run; an instructor keeps the real
ones in a file of their own (:func:`load_hidden_cases`), named by ``--hidden-cases`` or
``$NST_LESSONS_HIDDEN_CASES``.  This module also runs in the
sandbox beside the student's code, where the grader trusts nothing: it only builds inputs and
calls functions.  The reference answers and the judging live in :mod:`nst_lessons.grading.checks`.
"""

from __future__ import annotations

import json
import os
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
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
"""The exercises of ``nst_gradients``, in notebook order; each is a function of this name defined in
an answer cell."""

CONTROLS_EXERCISES: tuple[str, ...] = (
    "rgb_to_yiq",
    "yiq_to_rgb",
    "match_luminance",
    "match_color_cholesky",
    "match_color_pca",
    "guided_gram",
)
VIDEO_EXERCISES: tuple[str, ...] = ("warp", "consistency_weights", "temporal_loss")

ASSIGNMENTS: dict[str, tuple[str, ...]] = {
    "nst_gradients": EXERCISES,
    "nst_controls": CONTROLS_EXERCISES,
    "nst_video": VIDEO_EXERCISES,
}
"""Each assignment (its folder under ``source/`` and ``release/``) and its exercises, in notebook
order. An exercise's name belongs to one assignment only."""

DEFAULT_ASSIGNMENT = "nst_gradients"
ALL_EXERCISES: tuple[str, ...] = tuple(name for names in ASSIGNMENTS.values() for name in names)

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


# --------------------------------------------------------------------------- nst_controls inputs


def _rgb(rng: np.random.Generator, shape: tuple[int, int]) -> Case:
    H, W = shape
    return Case({"x": rng.uniform(size=(3, H, W))}, f"an RGB image x of shape {(3, H, W)}")


def _yiq(rng: np.random.Generator, shape: tuple[int, int]) -> Case:
    H, W = shape
    # Y in [0, 1], I and Q in about the range RGB colours give them
    yiq = rng.uniform(size=(3, H, W)) * np.array([1.0, 1.2, 1.0])[:, None, None] - np.array([0.0, 0.6, 0.5])[:, None, None]
    return Case({"x": yiq}, f"a YIQ image x of shape {(3, H, W)}")


def _luminances(rng: np.random.Generator, shape: tuple[int, int, int, int]) -> Case:
    H_S, W_S, H_C, W_C = shape
    L_S = rng.uniform(size=(H_S, W_S)) ** 2  # a dark painting
    L_C = 0.3 + 0.5 * rng.uniform(size=(H_C, W_C))
    return Case({"L_S": L_S, "L_C": L_C}, f"L_S of shape {(H_S, W_S)} and L_C of shape {(H_C, W_C)}")


def _colourful(rng: np.random.Generator, H: int, W: int) -> np.ndarray:
    """An image (3, H, W) whose colours are correlated, as a painting's or a photo's are."""
    mix = np.eye(3) + 0.6 * rng.standard_normal((3, 3))
    pixels = mix @ rng.standard_normal((3, H * W))
    return (0.5 + 0.15 * pixels + 0.1 * rng.uniform(size=(3, 1))).reshape(3, H, W)


def _color_pair(rng: np.random.Generator, shape: tuple[int, int, int, int]) -> Case:
    H_S, W_S, H_C, W_C = shape
    source, target = _colourful(rng, H_S, W_S), _colourful(rng, H_C, W_C)
    return Case({"source": source, "target": target}, f"source of shape {(3, H_S, W_S)} and target of shape {(3, H_C, W_C)}")


def _guided(rng: np.random.Generator, shape: tuple[int, int, int]) -> Case:
    N, H, W = shape
    T = rng.uniform(size=(H, W))
    T[0, 0] = 1.0  # never all but empty
    return Case({"F": rng.standard_normal(shape), "T": T}, f"F of shape {shape} and a soft mask T of shape {(H, W)}")


# --------------------------------------------------------------------------- nst_video inputs


def smooth_flow(rng: np.random.Generator, H: int, W: int, shift: float = 1.5, wave: float = 1.5, cycles: float = 2.0) -> np.ndarray:
    """A smooth random flow (H, W, 2) in pixels: a translation of up to ``shift`` pixels plus a wave
    of amplitude ``wave`` pixels and up to ``cycles`` periods across the image."""
    y, x = np.mgrid[0:H, 0:W] / max(H, W)
    flow = np.empty((H, W, 2))
    for axis in range(2):
        phase, freq = rng.uniform(0, 2 * np.pi, size=2), rng.uniform(cycles / 2, cycles, size=2)
        wavy = np.sin(2 * np.pi * freq[0] * x + phase[0]) * np.cos(2 * np.pi * freq[1] * y + phase[1])
        flow[..., axis] = rng.uniform(-shift, shift) + wave * wavy
    return flow


def _warp_case(rng: np.random.Generator, shape: tuple[int, int, int]) -> Case:
    H, W, C = shape
    image = 0.05 + 0.95 * rng.uniform(size=(H, W, C))  # no zeros: a pixel left at 0 is a hole
    return Case({"image": image, "flow": smooth_flow(rng, H, W)}, f"an image of shape {shape} and a flow of shape {(H, W, 2)}")


def _flow_pair(rng: np.random.Generator, shape: tuple[int, int]) -> Case:
    """Forward and backward flows that agree on a smooth background and disagree where an object
    moved: a block with its own motion (motion boundaries), a region the forward flow does not
    explain (a disocclusion), and a flow that leaves the frame near its border."""
    H, W = shape
    backward = smooth_flow(rng, H, W, shift=2.0, wave=0.1, cycles=0.5)  # smooth enough to pass the boundary test
    top, left = rng.integers(0, H // 2), rng.integers(0, W // 2)
    backward[top : top + H // 3, left : left + W // 3] += rng.uniform(2, 4, size=2)
    forward = -backward + 0.05 * rng.standard_normal((H, W, 2))
    r, c = rng.integers(0, H - H // 4), rng.integers(0, W - W // 4)
    forward[r : r + H // 4, c : c + W // 4] += rng.uniform(3, 6, size=2)
    return Case({"forward": forward, "backward": backward}, f"forward and backward flows of shape {(H, W, 2)}")


def _temporal(rng: np.random.Generator, shape: tuple[int, int]) -> Case:
    H, W = shape
    c = np.clip(1.4 * rng.uniform(size=(H, W)) - 0.2, 0.0, 1.0)  # soft weights, some exactly 0 or 1
    args = {"x": rng.uniform(size=(H, W, 3)), "warped": rng.uniform(size=(H, W, 3)), "c": c}
    return Case(args, f"x and warped of shape {(H, W, 3)} and c of shape {(H, W)}")


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
    "rgb_to_yiq": (_rgb, [(4, 5)], [(3, 7), (1, 6)]),
    "yiq_to_rgb": (_yiq, [(4, 5)], [(6, 3), (2, 2)]),
    "match_luminance": (_luminances, [(6, 5, 4, 7)], [(5, 8, 5, 8), (9, 3, 4, 4)]),
    "match_color_cholesky": (_color_pair, [(6, 5, 4, 7)], [(8, 6, 5, 5), (4, 9, 7, 3)]),
    "match_color_pca": (_color_pair, [(6, 5, 4, 7)], [(8, 6, 5, 5), (4, 9, 7, 3)]),
    "guided_gram": (_guided, [(3, 4, 5)], [(5, 2, 3), (2, 6, 6), (4, 1, 7)]),
    "warp": (_warp_case, [(12, 16, 3)], [(9, 20, 3), (16, 11, 1)]),
    "consistency_weights": (_flow_pair, [(24, 32)], [(20, 28), (32, 24)]),
    "temporal_loss": (_temporal, [(4, 5)], [(6, 3), (2, 7)]),
}
_RANKS = {
    "rgb_to_yiq": 2, "yiq_to_rgb": 2, "match_luminance": 4, "match_color_cholesky": 4, "match_color_pca": 4,
    "warp": 3, "consistency_weights": 2, "temporal_loss": 2, "conv2d_backward": 4,
}  # fmt: skip
"""The number of sizes in an extra shape, where it is not 3 (see :class:`HiddenCases`)."""
_MIN_EXTENT = {"warp": 2, "consistency_weights": 8}  # bilinear needs two pixels; the flows' regions need room


def make_cases(name: str, hidden: bool, seed: int = HIDDEN_SEED) -> list[Case]:
    """The public (``hidden=False``) or hidden cases of exercise ``name``; hidden ones depend on ``seed``."""
    if name not in _MAKERS:
        raise ValueError(f"unknown exercise {name!r}; expected one of {', '.join(ALL_EXERCISES)}")
    if hidden:
        return HiddenCases(seeds=(seed,)).cases(name)
    make, public, _ = _MAKERS[name]
    rng = np.random.default_rng(PUBLIC_SEED)
    return [make(rng, shape) for shape in public]


# --------------------------------------------------------------------------- the instructor's hidden cases

HIDDEN_CASES_ENV = "NST_LESSONS_HIDDEN_CASES"
"""The environment variable naming the instructor's hidden-cases file (see :func:`load_hidden_cases`)."""

MAX_EXTENT = 64
"""The largest extent an extra case may have along any axis (grading must stay fast)."""

MAX_SEEDS = 10


@dataclass(frozen=True)
class HiddenCases:
    """Which hidden cases the grader runs: for each seed, the shipped hidden shapes of each exercise
    followed by the extra ones, all drawn from ``numpy.random.default_rng(seed)``.

    Attributes:
        seeds: one or more non-negative integers.
        extra: exercise name -> extra shapes, in the form of the shipped ones (``(C, H, W)``;
            ``(K, C, H, W)`` for ``conv2d_backward``; ``(H, W, content layers, style layers)`` for
            ``make_closure``; ``(H, W)`` for ``rgb_to_yiq``, ``yiq_to_rgb``, ``consistency_weights``
            and ``temporal_loss``; ``(H_S, W_S, H_C, W_C)`` for ``match_luminance`` and the two
            ``match_color_*``; ``(N, H, W)`` for ``guided_gram``; ``(H, W, C)`` for ``warp``).
    """

    seeds: tuple[int, ...] = (HIDDEN_SEED,)
    extra: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)

    def cases(self, name: str) -> list[Case]:
        """Exercise ``name``'s hidden cases."""
        if name not in _MAKERS:
            raise ValueError(f"unknown exercise {name!r}; expected one of {', '.join(ALL_EXERCISES)}")
        make, _, secret = _MAKERS[name]
        shapes = [*secret, *self.extra.get(name, ())]
        cases = []
        for seed in self.seeds:
            rng = np.random.default_rng(seed)
            cases += [make(rng, shape) for shape in shapes]
        return cases

    def to_json(self) -> dict[str, Any]:
        """The file's content; :func:`hidden_cases_from_json` reads it back."""
        return {"seeds": list(self.seeds), "extra": {name: [_jsonable(s) for s in shapes] for name, shapes in self.extra.items()}}


SHIPPED = HiddenCases()
"""The hidden cases that ship with the package: the default, and no secret."""


def _jsonable(shape: tuple[Any, ...]) -> list[Any]:
    return [list(part) if isinstance(part, tuple) else part for part in shape]


def _count(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_EXTENT:
        raise ValueError(f"{what} must be an integer from 1 to {MAX_EXTENT}, got {value!r}")
    return value


def _extra_shape(name: str, shape: Any) -> tuple[Any, ...]:
    """One extra shape of exercise ``name``, checked, as a tuple like the shipped ones."""
    where = f"extra case {shape!r} of {name}"
    if not isinstance(shape, list):
        raise ValueError(f"{where}: expected a list")
    if name == "make_closure":
        from nst_lessons.vgg import LAYERS

        if len(shape) != 4 or not all(isinstance(part, list) and part for part in shape[2:]):
            raise ValueError(f"{where}: expected [H, W, [content layers], [style layers]]")
        H, W = (_count(v, f"{where}: H and W") for v in shape[:2])
        layers = [*shape[2], *shape[3]]
        unknown = [layer for layer in layers if layer not in LAYERS]
        if unknown:
            raise ValueError(f"{where}: unknown layer {unknown[0]!r}")
        pools = max(sum(n.startswith("pool") for n in LAYERS[: LAYERS.index(layer) + 1]) for layer in layers)
        if min(H, W) < 2**pools:  # each pooling halves the size on the way to the deepest layer
            raise ValueError(f"{where}: a {H}x{W} image is too small for layer {max(layers, key=LAYERS.index)}")
        return (H, W, tuple(shape[2]), tuple(shape[3]))
    rank = _RANKS.get(name, 3)
    if len(shape) != rank:
        raise ValueError(f"{where}: expected {rank} sizes")
    sizes = tuple(_count(v, where) for v in shape)
    if name in ("max_pool_backward", "avg_pool_backward") and (sizes[1] % 2 or sizes[2] % 2):
        raise ValueError(f"{where}: H and W must be even for 2x2 pooling")
    if name in _MIN_EXTENT and min(sizes[:2]) < _MIN_EXTENT[name]:
        raise ValueError(f"{where}: H and W must be at least {_MIN_EXTENT[name]}")
    return sizes


def hidden_cases_from_json(data: Any, source: str) -> HiddenCases:
    """Hidden cases from a file's parsed JSON, ``{"seeds": [int, ...], "extra": {exercise: [shape, ...]}}``
    (``extra`` optional); ``source`` names the file in messages.

    Raises:
        ValueError: one line saying what is wrong.
    """
    try:
        if not isinstance(data, dict) or set(data) - {"seeds", "extra"} or "seeds" not in data:
            raise ValueError('expected an object with "seeds" and, optionally, "extra"')
        seeds = data["seeds"]
        if not isinstance(seeds, list) or not 1 <= len(seeds) <= MAX_SEEDS:
            raise ValueError(f'"seeds" must be a list of 1 to {MAX_SEEDS} integers')
        if any(isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 2**63 for v in seeds):
            raise ValueError(f'"seeds" must be integers from 0 to 2**63 - 1, got {seeds!r}')
        extra = data.get("extra", {})
        if not isinstance(extra, dict):
            raise ValueError('"extra" must map exercise names to lists of shapes')
        unknown = [name for name in extra if name not in _MAKERS]
        if unknown:
            raise ValueError(f"unknown exercise {unknown[0]!r} in \"extra\"; expected one of {', '.join(ALL_EXERCISES)}")
        shapes = {}
        for name, listed in extra.items():
            if not isinstance(listed, list):
                raise ValueError(f'"extra" of {name} must be a list of shapes')
            shapes[name] = tuple(_extra_shape(name, shape) for shape in listed)
    except ValueError as error:
        raise ValueError(f"hidden cases {source}: {error}") from None
    return HiddenCases(tuple(seeds), shapes)


def load_hidden_cases(path: str | os.PathLike[str]) -> HiddenCases:
    """The hidden cases in the JSON file at ``path``, e.g. ``{"seeds": [8191, 65537], "extra":
    {"gram_matrix": [[7, 3, 9]], "make_closure": [[10, 14, ["relu1_2"], ["relu1_1", "pool1"]]]}}``.

    Raises:
        ValueError: the file is missing, unreadable, not JSON, or not of that form (one line).
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read the hidden cases {path}: {getattr(error, 'strerror', None) or error}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"hidden cases {path}: not JSON ({error})") from None
    return hidden_cases_from_json(data, str(path))


def hidden_cases(path: str | os.PathLike[str] | None = None) -> HiddenCases:
    """The hidden cases to grade with: the file at ``path``, else the one ``$NST_LESSONS_HIDDEN_CASES``
    names, else :data:`SHIPPED`."""
    path = path or os.environ.get(HIDDEN_CASES_ENV) or None
    return SHIPPED if path is None else load_hidden_cases(path)


# --------------------------------------------------------------------------- calls


def run_lbfgs(closure: Callable[[np.ndarray], Any], x0: np.ndarray, iterations: int = LBFGS_ITERATIONS) -> OptimizeResult:
    """scipy's L-BFGS-B on ``closure`` from ``x0``, pixels bounded to [0, 1]."""
    x0 = np.ravel(x0)
    bounds = Bounds(np.zeros(x0.size), np.ones(x0.size))
    return minimize(closure, x0, jac=True, method="L-BFGS-B", bounds=bounds, options={"maxiter": iterations})


def with_references(fn: Callable[..., Any], names: Mapping[str, Any]) -> Callable[..., Any]:
    """``fn`` with the global ``names`` bound to the given functions (a copy; ``fn`` is unchanged)."""
    if not isinstance(fn, types.FunctionType):
        return fn
    swapped = types.FunctionType(fn.__code__, {**fn.__globals__, **names}, fn.__name__, fn.__defaults__, fn.__closure__)
    swapped.__kwdefaults__ = fn.__kwdefaults__
    return swapped


def with_reference_losses(make_closure: Callable[..., Any]) -> Callable[..., Any]:
    """``make_closure`` with the loss exercises' names bound to the reference implementations, so
    the closure is judged on its own: a slip in an earlier exercise costs marks once, not twice."""
    from nst_lessons.scratch import losses

    names = ("gram_matrix", "content_loss", "style_layer_loss", "tv_loss")
    return with_references(make_closure, {name: getattr(losses, name) for name in names})


def with_reference_warp(consistency_weights: Callable[..., Any]) -> Callable[..., Any]:
    """``consistency_weights`` with ``warp`` bound to the exact reference warp, so that a slip in
    the warp exercise costs its marks once, not again here."""
    from nst_lessons.scratch.warping import warp

    return with_references(consistency_weights, {"warp": warp})


def call(name: str, fn: Callable[..., Any], case: Case) -> Any:
    """Call exercise ``name``'s function on one case; what comes back is what gets judged.

    The closure exercise returns a function, so it is driven further: evaluated at each of the
    case's points, then run through :func:`run_lbfgs`; its "value" is ``{"evaluations":
    [(loss, grad), ...], "final": x or the error L-BFGS-B raised}``.
    """
    if name == "consistency_weights":
        return with_reference_warp(fn)(*case.args.values())
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
    "ALL_EXERCISES",
    "ALPHA",
    "ASSIGNMENTS",
    "BETA",
    "CONTROLS_EXERCISES",
    "Case",
    "DEFAULT_ASSIGNMENT",
    "EXERCISES",
    "VIDEO_EXERCISES",
    "HIDDEN_CASES_ENV",
    "HIDDEN_SEED",
    "HiddenCases",
    "LBFGS_ITERATIONS",
    "PUBLIC_SEED",
    "SHIPPED",
    "call",
    "hidden_cases",
    "hidden_cases_from_json",
    "load_hidden_cases",
    "make_cases",
    "run_lbfgs",
    "smooth_flow",
    "tiny_vgg",
    "with_reference_losses",
    "with_reference_warp",
    "with_references",
]
