"""Style transfer (Gatys, Ecker & Bethge, 2015): optimise the pixels of x so that its VGG-19
features match a photo's content and a painting's style.

    L_total(p, a, x) = alpha * L_content(p, x) + beta * L_style(a, x) + gamma * L_TV(x)

The optimiser is L-BFGS by default (as in the paper and jcjohnson/neural-style), or Adam.
"""

from __future__ import annotations

import copy
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from PIL import Image
from torch import Tensor

from nst_lessons import losses
from nst_lessons.images import ImageLike, load_image, to_pil, to_tensor
from nst_lessons.vgg import VGG19, default_device, load_vgg19, resolve_layer

CONTENT_LAYERS: tuple[str, ...] = ("relu4_2",)
"""The paper's content layer "conv4_2", read after its ReLU (see :mod:`nst_lessons.vgg`)."""

STYLE_LAYERS: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
"""The paper's style layers "conv1_1" ... "conv5_1", read after their ReLUs, weighted 1/5 each."""

DEFAULT_LOSS_WEIGHTS: dict[str, tuple[float, float, float]] = {
    "imagenet": (1.0, 1e8, 1.0),
    "caffe": (1.0, 1e4, 1e4),
    "random": (1.0, 1e8, 1.0),
}
"""(alpha, beta, gamma) per weights option. The Caffe network's activations are roughly 100x
larger than torchvision's (it takes 0-255 input), so its losses are ~1e4x larger at equal alpha:
alpha/beta = 1e-4 for "caffe" (within the paper's range, Fig. 3) corresponds to 1e-8 for
"imagenet". Tuned for a 512-px content image: L_content grows with the number of positions M
while E_l does not, so larger images need a larger beta for the same look."""

OPTIMIZERS = ("lbfgs", "adam")
INITS = ("content", "noise", "style")


@dataclass
class TransferResult:
    """What :func:`style_transfer` returns.

    Attributes:
        image: the best image seen (lowest total loss), RGB PIL image.
        tensor: the same, (1,3,H,W) in [0,1], on the CPU.
        history: one dict per objective evaluation: ``total``, ``content``, ``style``, ``tv``
            (each already multiplied by its weight alpha, beta, gamma) and ``seconds`` since start.
        iterations: optimiser iterations completed.
        seconds: wall time of the optimisation (targets and model loading excluded).
        stopped: ``None`` if all iterations ran, else why the run stopped early.
        settings: the resolved arguments, for reproducibility.
    """

    image: Image.Image
    tensor: Tensor
    history: list[dict[str, float]]
    iterations: int
    seconds: float
    stopped: str | None = None
    settings: dict[str, object] = field(default_factory=dict)

    @property
    def best_loss(self) -> float:
        return min((h["total"] for h in self.history), default=math.inf)


@dataclass
class TransferState:
    """Passed to ``callback`` after each iteration; return ``True`` from the callback to stop."""

    iteration: int
    loss: float
    image: Tensor
    history: list[dict[str, float]]


class Objective:
    """L_total for one content and one style image, and its gradient with respect to x.

    Built once per run: the targets P_l (content features) and A_l (style Grams) are computed
    here without gradient tracking.

    Args:
        model: a :class:`VGG19`.
        content: (1,3,H,W) in [0,1]. style: (1,3,H',W') in [0,1].
        content_layers: names; their L_content terms are summed.
        style_layers: ``{name: w_l}``.
        alpha, beta, gamma: the weights of content, style and TV.
        tv_squared: use the squared TV instead of the L1 form.
        gradients: ``"autograd"``, or ``"manual"``: dL/dF_l from the hand-derived formulas
            (:func:`losses.content_grad`, :func:`losses.style_layer_grad`), fed to the network's
            backward with ``torch.autograd.backward(features, grad_tensors)`` as Caffe did.
    """

    def __init__(
        self,
        model: VGG19,
        content: Tensor,
        style: Tensor,
        content_layers: Sequence[str],
        style_layers: Mapping[str, float],
        alpha: float,
        beta: float,
        gamma: float,
        tv_squared: bool = False,
        gradients: str = "autograd",
    ) -> None:
        if gradients not in ("autograd", "manual"):
            raise ValueError(f"unknown gradients {gradients!r}; expected 'autograd' or 'manual'")
        self.model = model
        self.content_layers = tuple(content_layers)
        self.style_layers = dict(style_layers)
        self.layers = tuple(dict.fromkeys((*self.content_layers, *self.style_layers)))
        self.alpha, self.beta, self.gamma = alpha, beta, gamma
        self.tv_squared = tv_squared
        self.gradients = gradients
        with torch.no_grad():
            self.P = {k: v.detach() for k, v in model.extract(content, self.content_layers).items()}
            self.A = losses.gram_targets(model.extract(style, self.style_layers), list(self.style_layers))

    def terms(self, features: Mapping[str, Tensor], x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """alpha * L_content, beta * L_style, gamma * L_TV as 0-dim tensors."""
        content = sum(losses.content_loss(features[n], self.P[n]) for n in self.content_layers)
        style = losses.style_loss(features, self.A, self.style_layers)
        tv = losses.tv_loss(x, squared=self.tv_squared) if self.gamma else x.new_zeros(())
        return self.alpha * content, self.beta * style, self.gamma * tv

    def __call__(self, x: Tensor) -> Tensor:
        """Evaluate at x (1,3,H,W), leaving dL/dx in ``x.grad``. Returns the stacked
        ``[total, content, style, tv]`` (weighted), detached, on x's device: no host sync."""
        if x.grad is not None:
            x.grad = None
        if self.gradients == "autograd":
            features = self.model.extract(x, self.layers)
            content, style, tv = self.terms(features, x)
            total = content + style + tv
            total.backward()
            return torch.stack([total, content, style, tv]).detach()
        features = self.model.extract(x, self.layers)
        with torch.no_grad():
            content, style, tv = self.terms(features, x)
            grads = {n: torch.zeros_like(features[n]) for n in self.layers}
            for n in self.content_layers:
                grads[n] += self.alpha * losses.content_grad(features[n], self.P[n])
            for n, w in self.style_layers.items():
                grads[n] += self.beta * w * losses.style_layer_grad(features[n], self.A[n])
        torch.autograd.backward([features[n] for n in self.layers], [grads[n] for n in self.layers])
        if self.gamma:
            with torch.no_grad():
                x.grad += self.gamma * losses.tv_grad(x, squared=self.tv_squared)
        total = content + style + tv
        return torch.stack([total, content, style, tv])


def _style_layer_weights(style_layers: Sequence[str] | Mapping[str, float]) -> dict[str, float]:
    if isinstance(style_layers, Mapping):
        weights = {str(k): float(v) for k, v in style_layers.items()}
    else:
        weights = {name: 1.0 / len(style_layers) for name in style_layers} if style_layers else {}
    for name, w in weights.items():
        resolve_layer(name)
        if not (w >= 0 and math.isfinite(w)):
            raise ValueError(f"style layer weight for {name} must be a finite number >= 0, got {w}")
    return weights


def _check_weight(name: str, value: float) -> None:
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")


def _initial_image(init: str | ImageLike, content: Tensor, style_image: Image.Image, seed: int | None) -> Tensor:
    h, w = content.shape[-2:]
    if isinstance(init, str) and init == "content":
        return content.clone(memory_format=torch.contiguous_format)
    if isinstance(init, str) and init == "noise":
        generator = torch.Generator().manual_seed(0 if seed is None else seed)
        return torch.rand(content.shape, generator=generator).to(content)
    if isinstance(init, str) and init == "style":
        return to_tensor(style_image.resize((w, h), Image.Resampling.LANCZOS)).to(content)
    if isinstance(init, str) and not os.path.exists(init):
        raise ValueError(f"unknown init {init!r}; expected content, noise, style or an image path")
    return to_tensor(load_image(init).resize((w, h), Image.Resampling.LANCZOS)).to(content)


class _Progress:
    """A one-line progress bar on stderr, redrawn at most ten times a second."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled, self.last = total, enabled, 0.0

    def update(self, done: int, loss: float, force: bool = False) -> None:
        now = time.perf_counter()
        if not self.enabled or (now - self.last < 0.1 and not force):
            return
        self.last = now
        filled = round(30 * done / max(self.total, 1))
        print(f"\r[{'#' * filled}{'.' * (30 - filled)}] {done}/{self.total}  loss {loss:.4g}", end="", file=sys.stderr)
        if force:
            print(file=sys.stderr)


def style_transfer(
    content: ImageLike,
    style: ImageLike,
    *,
    size: int | None = 512,
    style_size: int | None = None,
    iterations: int = 500,
    optimizer: str = "lbfgs",
    content_layers: Sequence[str] = CONTENT_LAYERS,
    style_layers: Sequence[str] | Mapping[str, float] = STYLE_LAYERS,
    content_weight: float | None = None,
    style_weight: float | None = None,
    tv_weight: float | None = None,
    tv_squared: bool = False,
    init: str | ImageLike = "content",
    weights: str | os.PathLike[str] | VGG19 = "imagenet",
    pooling: str = "max",
    device: str | torch.device | None = None,
    seed: int | None = None,
    learning_rate: float = 0.02,
    history_size: int = 100,
    gradients: str = "autograd",
    dtype: torch.dtype = torch.float32,
    callback: Callable[[TransferState], bool | None] | None = None,
    progress: bool = True,
) -> TransferResult:
    """Render ``content`` in the style of ``style``.

    Args:
        content, style: paths, PIL images, tensors (3,H,W)/(1,3,H,W) in [0,1]; sizes may differ.
        size: long side of the output in pixels (``None``: the content image's own size).
        style_size: long side the style image is resized to (default: ``size``).
        iterations: optimiser iterations (L-BFGS: about 1 objective evaluation each).
        optimizer: ``"lbfgs"`` (torch.optim.LBFGS, history ``history_size``) or ``"adam"``
            (``learning_rate`` in units of [0,1] pixels).
        content_layers: layer names for L_content (default relu4_2).
        style_layers: names (weighted 1/|L| each) or ``{name: w_l}`` (default relu1_1 ... relu5_1).
        content_weight, style_weight, tv_weight: alpha, beta, gamma; ``None`` takes
            :data:`DEFAULT_LOSS_WEIGHTS` for the weights in use.
        tv_squared: squared TV instead of the L1 form.
        init: ``"content"``, ``"noise"`` (uniform, from ``seed``), ``"style"`` or an image.
        weights: ``"imagenet"``, ``"caffe"``, ``"random"``, a checkpoint path, or a loaded :class:`VGG19`.
        pooling: ``"max"`` or ``"avg"`` (ignored when ``weights`` is a loaded model).
        device: ``None`` means CUDA when available.
        seed: seeds the noise init and ``"random"`` weights; ``None`` means 0.
        gradients: ``"autograd"`` or ``"manual"`` (hand-derived dL/dF, see :class:`Objective`).
        dtype: ``torch.float64`` runs the whole optimisation in double precision (for checks:
            L-BFGS amplifies float32 rounding, so two float32 runs that differ only in rounding
            part ways after a few iterations).
        callback: called with a :class:`TransferState` after each iteration; returning ``True`` stops.
        progress: draw a progress bar on stderr.

    Returns:
        A :class:`TransferResult` holding the best image seen. A non-finite loss or Ctrl-C ends the
        run early with a warning, still returning the best image so far.
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; expected 'lbfgs' or 'adam'")
    if iterations < 1:
        raise ValueError(f"iterations must be at least 1, got {iterations}")
    if isinstance(init, str) and init not in INITS and not os.path.exists(init):
        raise ValueError(f"unknown init {init!r}; expected content, noise, style or an image path")
    for name in content_layers:
        resolve_layer(name)
    layer_weights = _style_layer_weights(style_layers)
    if not content_layers and not layer_weights:
        raise ValueError("no content or style layers: nothing to optimise")

    content_image = load_image(content, size)
    style_image = load_image(style, style_size or size or max(content_image.size))
    if isinstance(weights, VGG19):
        model = weights
        device = next(model.parameters()).device
        weights_name = model.weights
    else:
        device = default_device(device)
        model = load_vgg19(weights, pooling=pooling, device=device, seed=0 if seed is None else seed)
        weights_name = os.fspath(weights)
    defaults = DEFAULT_LOSS_WEIGHTS.get(weights_name, DEFAULT_LOSS_WEIGHTS["caffe" if model.preprocessing == "caffe" else "imagenet"])
    alpha, beta, gamma = (d if v is None else float(v) for v, d in zip((content_weight, style_weight, tv_weight), defaults))
    for name, value in (("content_weight", alpha), ("style_weight", beta), ("tv_weight", gamma)):
        _check_weight(name, value)

    if next(model.parameters()).dtype != dtype:
        model = copy.deepcopy(model).to(dtype)  # never change a caller's model in place
    p = to_tensor(content_image, device, dtype)
    a = to_tensor(style_image, device, dtype)
    objective = Objective(model, p, a, content_layers, layer_weights, alpha, beta, gamma, tv_squared, gradients)
    x = _initial_image(init, p, style_image, seed).requires_grad_(True)

    if optimizer == "lbfgs":
        # max_iter=1 per step(): the same algorithm as one long step, with control between iterations.
        # Tolerances of -1 never stop early (as in neural-style): ``iterations`` is what runs.
        opt: torch.optim.Optimizer = torch.optim.LBFGS(
            [x], lr=1, max_iter=1, history_size=history_size, tolerance_grad=-1, tolerance_change=-1
        )
    else:
        opt = torch.optim.Adam([x], lr=learning_rate)

    records: list[Tensor] = []
    stamps: list[float] = []
    best_loss = torch.full((), math.inf, device=device, dtype=dtype)
    best_x = x.detach().clone()
    start = time.perf_counter()

    def closure() -> Tensor:
        nonlocal best_loss, best_x
        record = objective(x)
        records.append(record)
        stamps.append(time.perf_counter() - start)
        # Keep the best candidate on the device, without a host sync: NaN never compares smaller.
        better = record[0] < best_loss
        best_loss = torch.where(better, record[0], best_loss)
        best_x = torch.where(better, x.detach(), best_x)
        return record[0]

    def history() -> list[dict[str, float]]:
        values = torch.stack(records).tolist() if records else []
        return [
            {"total": v[0], "content": v[1], "style": v[2], "tv": v[3], "seconds": s}
            for v, s in zip(values, stamps)
        ]

    bar = _Progress(iterations, progress)
    stopped: str | None = None
    done = 0
    try:
        for i in range(1, iterations + 1):
            opt.step(closure)
            loss = float(records[-1][0])  # one sync per iteration: progress and the finiteness check
            if not math.isfinite(loss):
                stopped = f"the loss became {loss} at iteration {i}"
                warnings.warn(f"{stopped}; returning the best image so far", RuntimeWarning, stacklevel=2)
                break
            done = i
            bar.update(done, loss)
            if callback is not None and callback(TransferState(done, loss, x.detach(), history())):
                stopped = f"stopped by the callback at iteration {done}"
                break
    except KeyboardInterrupt:
        stopped = f"interrupted after {done} iterations"
        warnings.warn(f"{stopped}; returning the best image so far", RuntimeWarning, stacklevel=2)
    seconds = time.perf_counter() - start
    bar.update(done, float(best_loss), force=True)
    best = best_x.clamp(0, 1).cpu()
    settings = {
        "size": size, "iterations": iterations, "optimizer": optimizer, "content_layers": list(content_layers),
        "style_layers": layer_weights, "content_weight": alpha, "style_weight": beta, "tv_weight": gamma,
        "tv_squared": tv_squared, "init": init if isinstance(init, str) else "image", "weights": weights_name,
        "pooling": model.pooling, "device": str(device), "seed": seed, "gradients": gradients,
    }
    return TransferResult(to_pil(best), best, history(), done, seconds, stopped, settings)
