"""Style transfer (Gatys, Ecker & Bethge, 2015): optimise the pixels of x so that its features in a
feature network (VGG-19 by default; :mod:`nst_lessons.networks`) match a photo's content and a
painting's style. Content and style may be read from two different networks.

    L_total(p, a, x) = alpha * L_content(p, x) + beta * L_style(a, x) + gamma * L_TV(x)

and, for a video frame, + lambda * L_temporal(x) (Ruder et al. 2016; see ``temporal``).

The optimiser is L-BFGS by default (as in the paper and jcjohnson/neural-style), or Adam.

The pieces: the style targets A_l (one style, a blend of several, or one per masked region) are
:class:`nst_lessons.targets.StyleTargets`, computable once for many runs; masks are carried down
the network by :mod:`nst_lessons.masks`; the photo's colours are kept by :mod:`nst_lessons.color`
around the run (:func:`_color_hooks`); :class:`Objective` evaluates L_total and dL/dx; :class:`Loop`
iterates, reading back only at sync points (progress bar, snapshots, printing, the callback).

Speed: the run keeps everything on the device and reads the loss back only as often as the
progress bar is redrawn (:data:`SYNC_SECONDS`); the L-BFGS is :class:`nst_lessons.lbfgs.LBFGS`,
which needs no host sync. Options trade exactness for speed on a GPU: TF32 or bf16 arithmetic
(``precision``), channels-last feature maps and CUDA graphs; :mod:`nst_lessons.bench` measures
what each buys. Runs too large for the device are refused up front (:mod:`nst_lessons.memory`).
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import itertools
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as nnf
from PIL import Image
from torch import Tensor
from tqdm import tqdm

from nst_lessons import color, losses, memory
from nst_lessons.images import ImageLike, check_output_path, image_size, load_image, resized_size, save_image, to_pil, to_tensor
from nst_lessons.lbfgs import LBFGS
from nst_lessons.networks import FeatureNetwork, NetworkSpec, as_spec, describe_network, load_network
from nst_lessons.targets import Region, StyleTargets, as_list, features, load_styles, normalised_blend_weights, style_layer_weights, style_long_side
from nst_lessons.vgg import CONTENT_LAYERS, LOSS_WEIGHTS, STYLE_LAYERS, default_device  # noqa: F401 (VGG's default layers, here as before)

DEFAULT_LOSS_WEIGHTS: dict[str, tuple[float, float, float]] = LOSS_WEIGHTS
"""(alpha, beta, gamma) per VGG weights option (each network gives its own as
:attr:`~nst_lessons.networks.FeatureNetwork.loss_weights`; these are VGG's), chosen for these networks, not taken from the paper.
The paper's alpha/beta (1e-3, 1e-4; Fig. 3) are for Gatys' normalised VGG-19, whose filters were
rescaled to a mean activation of 1 over ImageNet images (:func:`nst_lessons.vgg.normalize_activations`
builds such a network from any weights); neither the raw Caffe weights nor torchvision's are that
network, so no ratio here "is" the paper's. The Caffe network's activations are roughly 100x
larger than torchvision's (it takes 0-255 input), so its losses are ~1e4x larger at equal alpha,
hence beta = 1e4 for "caffe" against 1e8 for "imagenet". Tuned for a 512-px content image:
L_content grows with the number of positions M while E_l does not, so larger images need a larger
beta for the same look."""

NORMALIZED_LOSS_WEIGHTS: tuple[float, float, float] = (5.0, 100.0, 1e-3)
"""(alpha, beta, gamma) with ``normalize_gradients``: jcjohnson/neural-style's default numbers, but
not his weighting. Each content and style layer contributes a gradient of L1 norm alpha or
beta * w_l whatever its loss, so alpha and beta are of similar size; the TV gradient is not
normalised (as there). Two differences: there every style layer gets the full style weight, here
beta * w_l with w_l = 1/5 for the five default layers, so 5x less style per layer at the same beta
(``style_weight=500``, or ``style_layers={name: 1.0, ...}``, gives each layer his 100); and his TV
term is (gamma/2) sum of squared differences of 0-255 Caffe pixels, where here it is gamma times the
L1 (or with ``tv_squared`` the squared) differences of [0,1] pixels, so the same gamma smooths
differently."""

OPTIMIZERS = ("lbfgs", "adam", "torch-lbfgs")
"""``"lbfgs"`` is :class:`nst_lessons.lbfgs.LBFGS`; ``"torch-lbfgs"`` the same algorithm as
``torch.optim.LBFGS`` runs it (slower on a GPU: it syncs with the host many times per iteration)."""
INITS = ("content", "noise", "style")
PRECISIONS = ("fp32", "tf32", "bf16")

SYNC_SECONDS = 0.1
"""The losses are read back (for the progress bar and the finiteness check) at most this often, and
after the last iteration; with a callback, after every iteration. Each read waits for the device to
finish its queue, so a GPU run at 1-2 ms per iteration reads once every ~50 iterations. A
non-finite loss is still reported at the iteration where it first appeared."""


@dataclass
class TransferResult:
    """What :func:`style_transfer` returns.

    Attributes:
        image: the best image seen (lowest total loss), RGB PIL image; with
            ``normalize_gradients``, the last image evaluated (whose loss is ``history[-1]``), as in
            jcjohnson/neural-style: L-BFGS then follows the normalised gradients, which are not the
            gradient of the recorded total, so that total need not fall and its minimum is
            often the starting image.
        tensor: the same, (1,3,H,W) in [0,1], on the CPU.
        history: one dict per objective evaluation: ``total``, ``content``, ``style``, ``tv``,
            ``temporal`` (each already multiplied by its weight alpha, beta, gamma, lambda; 0 for a
            term not in use) and ``seconds`` since start.
        iterations: optimiser iterations completed.
        seconds: wall time of the optimisation (targets and model loading excluded).
        stopped: ``None`` if all iterations ran, else why the run stopped early.
        settings: the resolved arguments, for reproducibility.
        raw: the image as optimised, before the colour post-processing of ``preserve_color``
            (``"yuv"``, ``"luminance"``: the chroma put back), (1,3,H,W) in [0,1] on the CPU;
            ``tensor`` itself without it. A pyramid starts its next level from this.
    """

    image: Image.Image
    tensor: Tensor
    history: list[dict[str, float]]
    iterations: int
    seconds: float
    stopped: str | None = None
    settings: dict[str, object] = field(default_factory=dict)
    raw: Tensor | None = None

    @property
    def best_loss(self) -> float:
        """The total loss of ``image``: the lowest recorded, or with ``normalize_gradients`` the last
        finite one (the image kept then is the last)."""
        totals = [h["total"] for h in self.history]
        if self.settings.get("normalize_gradients"):
            return next((t for t in reversed(totals) if math.isfinite(t)), math.inf)
        return min(totals, default=math.inf)


@dataclass
class TransferState:
    """Passed to ``callback`` after each iteration; return ``True`` from the callback to stop."""

    iteration: int
    loss: float
    image: Tensor
    history: list[dict[str, float]]


def _tensors(network: FeatureNetwork) -> Iterator[Tensor]:
    """The network's parameters, then its buffers (a network of fixed random filters may keep them
    as buffers)."""
    return itertools.chain(network.parameters(), network.buffers())


def _is_channels_last(network: FeatureNetwork) -> bool:
    """Whether the network's convolution weights (its 4-D tensors) are channels-last already."""
    return all(t.is_contiguous(memory_format=torch.channels_last) for t in _tensors(network) if t.dim() == 4)


class Objective:
    """L_total for one content image and the style targets, and its gradient with respect to x.

    Built once per run: the content targets P_l are computed here without gradient tracking, the
    style targets A_l too when ``style`` is an image, or taken from precomputed
    :class:`~nst_lessons.targets.StyleTargets` (several styles, masked regions).

    Content and style may come from two networks (``style_network``): each network runs once per
    evaluation, on the union of the layers read from it (:attr:`uses`, ``{network: layers}``).

    Args:
        model: the :class:`~nst_lessons.networks.FeatureNetwork` of the content terms, and of the
            style terms unless ``style_network`` is given.
        content: (1,3,H,W) in [0,1].
        style: (1,3,H',W') in [0,1], or :class:`~nst_lessons.targets.StyleTargets` (moved to this
            H x W with :meth:`~nst_lessons.targets.StyleTargets.at`).
        content_layers: names; their L_content terms are summed.
        style_layers: ``{name: w_l}``.
        alpha, beta, gamma: the weights of content, style and TV.
        tv_squared: use the squared TV instead of the L1 form.
        gradients: ``"autograd"``, or ``"manual"``: dL/dF_l from the hand-derived formulas
            (:func:`losses.content_grad`, :func:`losses.style_layer_grad`), fed to the network's
            backward as Caffe did.
        precision: ``"bf16"`` runs the network(s) under bf16 autocast; the feature maps are then
            cast back to the image's dtype, so Grams and losses stay in float32. ``"fp32"`` and
            ``"tf32"`` differ only in backend flags (see :func:`backend_flags`).
        channels_last: run the network(s) on channels-last (NHWC) feature maps, with a channels-last
            copy of the model (the caller's model is left as it is; one already channels-last is used).
        temporal: for a video frame, ``(warped, c)``: the previous stylised frame warped to this
            one (1,3,H,W) and the per-pixel weights c (1,1,H,W) of :func:`losses.temporal_loss`.
        temporal_weight: lambda, the weight of L_temporal (used only with ``temporal``).
        normalize_gradients: jcjohnson/neural-style's ``-normalize_gradients``: each term's dL/dF_l
            (every content layer, every style layer of every region) is divided by its L1 norm
            (+1e-8) before alpha or beta w_l multiplies it, so alpha and beta weigh unit-size
            gradient directions rather than losses of very different magnitudes (uses the
            hand-derived gradients; the recorded losses are unchanged).
        style_network: the network of the style terms; ``None`` (or ``model`` itself): ``model``.
            Precomputed style targets must come from a network with the same
            :attr:`~nst_lessons.networks.FeatureNetwork.spec`.
    """

    def __init__(
        self,
        model: FeatureNetwork,
        content: Tensor,
        style: Tensor | StyleTargets,
        content_layers: Sequence[str],
        style_layers: Mapping[str, float],
        alpha: float,
        beta: float,
        gamma: float,
        tv_squared: bool = False,
        gradients: str = "autograd",
        precision: str = "fp32",
        channels_last: bool = False,
        temporal: tuple[Tensor, Tensor] | None = None,
        temporal_weight: float = 0.0,
        normalize_gradients: bool = False,
        style_network: FeatureNetwork | None = None,
    ) -> None:
        if gradients not in ("autograd", "manual"):
            raise ValueError(f"unknown gradients {gradients!r}; expected 'autograd' or 'manual'")
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; expected {', '.join(PRECISIONS)}")
        dtype = next(_tensors(model)).dtype
        self.model = _run_model(model, dtype, channels_last)
        style_network = model if style_network is None else style_network
        self.style_network = self.model if style_network is model else _run_model(style_network, dtype, channels_last)
        self.content_layers = tuple(content_layers)
        self.style_layers = dict(style_layers)
        self.symmetric_gram = style_network.symmetric_gram
        """Whether the style loss takes the Gram's one-product backward (the style network's choice)."""
        self.uses = memory.network_uses(self.content_layers, tuple(self.style_layers), self.model, self.style_network)
        """``{network: layers}``: what :meth:`extract` runs, once per network."""
        self.layers = tuple(dict.fromkeys((*self.content_layers, *self.style_layers)))
        """Every layer name read (for one network, the layers it runs to)."""
        self.alpha, self.beta, self.gamma = alpha, beta, gamma
        self.tv_squared = tv_squared
        self.gradients = gradients
        self.precision = precision
        self.channels_last = channels_last
        self.temporal = None if temporal is None or not temporal_weight else tuple(t.detach() for t in temporal)
        self.temporal_weight = temporal_weight
        self.normalize_gradients = normalize_gradients
        size = tuple(content.shape[-2:])  # the generated image's H x W
        with torch.no_grad():
            self.P = self.features(content, self.content_layers)
            if isinstance(style, StyleTargets):
                if style.network is not None and style.network.spec != self.style_network.spec:
                    raise ValueError(
                        f"the style targets come from {style.network.describe()}, the style network is "
                        f"{self.style_network.describe()}: compute them with the style network"
                    )
                targets = style.at(size)
                missing = [n for n in self.style_layers if n not in targets.layers]
                if missing:
                    raise ValueError(f"the style targets have no {missing[0]}; compute them with these style_layers")
            else:
                targets = StyleTargets.from_tensors(
                    style_network, [style], style_layers=self.style_layers, size=size, precision=precision,
                    channels_last=channels_last,
                )  # fmt: skip
        self.A = {n: A.to(content) for n, A in targets.A.items()}
        self.regions = (
            None
            if targets.regions is None
            else [Region({n: A.to(content) for n, A in r.A.items()}, {n: T.to(content) for n, T in r.weights.items()}) for r in targets.regions]
        )  # fmt: skip

    def features(self, image: Tensor, layers: Sequence[str], network: FeatureNetwork | None = None) -> dict[str, Tensor]:
        """:func:`nst_lessons.targets.features` of ``network`` (default the content network) in this
        objective's precision and memory format. Image: (B,3,H,W) in [0,1]."""
        return features(self.model if network is None else network, image, layers, self.precision, self.channels_last)

    def extract(self, x: Tensor) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """The feature maps the content terms read and those the style terms read, ``{name: F}``
        each, F (1,N_l,H_l,W_l): each network of :attr:`uses` runs once, on all of its layers (one
        network: both dicts are the same)."""
        out = {net: self.features(x, layers, net) for net, layers in self.uses.items()}
        return out.get(self.model, {}), out.get(self.style_network, {})

    def style(self, features: Mapping[str, Tensor], zero: Tensor) -> Tensor:
        """L_style = sum_l w_l E_l, or with regions sum_r sum_l w_l E_l,r on the masked features
        (:mod:`nst_lessons.masks`), as a 0-dim tensor."""
        if self.regions is None:
            return losses.style_loss(features, self.A, self.style_layers, self.symmetric_gram) if self.style_layers else zero
        return sum(
            (w * losses.style_layer_loss(features[n] * r.weights[n], r.A[n], self.symmetric_gram) for r in self.regions for n, w in self.style_layers.items()),
            zero,
        )  # fmt: skip

    def terms(
        self, features: Mapping[str, Tensor], x: Tensor, style_features: Mapping[str, Tensor] | None = None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """alpha * L_content, beta * L_style, gamma * L_TV, lambda * L_temporal as 0-dim tensors, from
        the content network's ``features`` and the style network's (default: the same)."""
        zero = x.new_zeros(())
        content = sum((losses.content_loss(features[n], self.P[n]) for n in self.content_layers), zero)
        style = self.style(features if style_features is None else style_features, zero)
        tv = losses.tv_loss(x, squared=self.tv_squared) if self.gamma else zero
        temporal = losses.temporal_loss(x, *self.temporal) if self.temporal is not None else zero
        return self.alpha * content, self.beta * style, self.gamma * tv, self.temporal_weight * temporal

    def _scaled(self, grad: Tensor) -> Tensor:
        return grad / (grad.abs().sum() + 1e-8) if self.normalize_gradients else grad

    def feature_grads(self, features: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """The hand-derived dL/dF_l at every layer of one network, (B,N_l,H_l,W_l) each (each term
        L1-normalised with ``normalize_gradients``). A region's term, E(F ∘ W_r) with W_r its
        :func:`~nst_lessons.masks.area_weights`, has the gradient W_r ∘ dE/dF' (chain rule)."""
        grads = {n: torch.zeros_like(features[n]) for n in self.layers}
        self._content_grads(grads, features)
        self._style_grads(grads, features)
        return grads

    def _content_grads(self, grads: dict[str, Tensor], features: Mapping[str, Tensor]) -> None:
        for n in self.content_layers:
            grads[n] += self.alpha * self._scaled(losses.content_grad(features[n], self.P[n]))

    def _style_grads(self, grads: dict[str, Tensor], features: Mapping[str, Tensor]) -> None:
        for n, w in self.style_layers.items():
            if self.regions is None:
                grads[n] += self.beta * w * self._scaled(losses.style_layer_grad(features[n], self.A[n]))
                continue
            for r in self.regions:
                T = r.weights[n]
                grads[n] += self.beta * w * self._scaled(T * losses.style_layer_grad(features[n] * T, r.A[n]))

    def __call__(self, x: Tensor) -> Tensor:
        """Evaluate at x (1,3,H,W), setting ``x.grad`` to dL/dx (contiguous). Returns the stacked
        ``[total, content, style, tv, temporal]`` (weighted), detached, on x's device: no host sync, and
        nothing that a CUDA graph could not capture."""
        F_content, F_style = self.extract(x)
        if self.gradients == "autograd" and not self.normalize_gradients:
            content, style, tv, temporal = self.terms(F_content, x, F_style)
            (grad,) = torch.autograd.grad(content + style + tv + temporal, x)
        else:
            with torch.no_grad():
                content, style, tv, temporal = self.terms(F_content, x, F_style)
                if self.style_network is self.model:
                    pairs = [(F_content, self.feature_grads(F_content))]
                else:  # the two networks' feature maps each get their own terms' gradients
                    content_grads = {n: torch.zeros_like(F_content[n]) for n in self.content_layers}
                    style_grads = {n: torch.zeros_like(F_style[n]) for n in self.style_layers}
                    self._content_grads(content_grads, F_content)
                    self._style_grads(style_grads, F_style)
                    pairs = [(F_content, content_grads), (F_style, style_grads)]
            outputs = [(F[n], grads[n]) for F, grads in pairs for n in grads]
            (grad,) = torch.autograd.grad([F for F, _ in outputs], x, [g for _, g in outputs])
            if self.gamma:
                grad = grad + self.gamma * losses.tv_grad(x.detach(), squared=self.tv_squared)
            if self.temporal is not None:
                grad = grad + self.temporal_weight * losses.temporal_grad(x.detach(), *self.temporal)
        x.grad = grad.contiguous()  # channels-last feature maps hand back a channels-last gradient
        total = content + style + tv + temporal
        return torch.stack([total, content, style, tv, temporal]).detach()


def _check_weight(name: str, value: float) -> None:
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")


def _initial_image(init: str | ImageLike, content: Tensor, style: Tensor, seed: int | None) -> Tensor:
    h, w = content.shape[-2:]
    if isinstance(init, str) and init == "content":
        return content.clone(memory_format=torch.contiguous_format)
    if isinstance(init, str) and init == "noise":
        generator = torch.Generator().manual_seed(0 if seed is None else seed)
        return torch.rand(content.shape, generator=generator).to(content)
    if isinstance(init, str) and init == "style":
        return to_tensor(to_pil(style).resize((w, h), Image.Resampling.LANCZOS)).to(content)
    if isinstance(init, Tensor):  # e.g. a pyramid level's result: resized in float, not rounded to 8 bits
        if init.dim() not in (3, 4) or init.shape[-3] != 3:
            raise ValueError(f"expected an init image of shape (3,H,W) or (1,3,H,W), got {tuple(init.shape)}")
        image = init.detach().reshape(1, 3, *init.shape[-2:]).to(content)
        if image.shape[-2:] != (h, w):
            image = nnf.interpolate(image, size=(h, w), mode="bicubic", align_corners=False, antialias=True)
        return image.clamp(0, 1).contiguous()
    if isinstance(init, str) and not os.path.exists(init):
        raise ValueError(f"unknown init {init!r}; expected content, noise, style or an image path")
    return to_tensor(load_image(init).resize((w, h), Image.Resampling.LANCZOS)).to(content)


def _temporal_target(temporal: tuple[ImageLike, Tensor], content: Tensor) -> tuple[Tensor, Tensor]:
    """``(warped, c)`` as (1,3,H,W) and (1,1,H,W) tensors on the content's device, checked against
    the output's size H x W."""
    warped, c = temporal
    h, w = content.shape[-2:]
    warped = warped.detach() if isinstance(warped, Tensor) else to_tensor(load_image(warped))
    warped = warped[None] if warped.dim() == 3 else warped
    c = torch.as_tensor(c).detach()
    c = c[None, None] if c.dim() == 2 else c
    if tuple(warped.shape) != (1, 3, h, w) or tuple(c.shape) != (1, 1, h, w):
        raise ValueError(
            f"temporal: expected a warped frame of shape (1,3,{h},{w}) and weights (1,1,{h},{w}), "
            f"got {tuple(warped.shape)} and {tuple(c.shape)}"
        )
    return warped.to(content), c.to(content)


@contextlib.contextmanager
def backend_flags(precision: str, device: torch.device, autotune: bool = True) -> Iterator[None]:
    """cuDNN and cuBLAS settings for a run on CUDA, restored afterwards; nothing to do on the CPU.

    ``"fp32"`` turns TF32 off (PyTorch's default lets cuDNN convolutions use it); ``"tf32"`` and
    ``"bf16"`` turn it on for convolutions and matmuls (bf16 feature maps are exact in TF32, so
    their float32 Grams lose nothing to it). ``autotune``: cuDNN benchmarks its algorithms for each
    new shape, which pays because the sizes stay fixed during a run.
    """
    if device.type != "cuda":
        yield
        return
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    saved = cudnn.allow_tf32, matmul.allow_tf32, cudnn.benchmark
    cudnn.allow_tf32 = matmul.allow_tf32 = precision != "fp32"
    cudnn.benchmark = autotune or cudnn.benchmark
    try:
        yield
    finally:
        cudnn.allow_tf32, matmul.allow_tf32, cudnn.benchmark = saved


class Tracker:
    """Every evaluation's ``[total, content, style, tv, temporal]`` and the image to return, kept on the
    device and updated in place (so a CUDA graph can do it): reading them is the only host sync.

    ``best_x`` is the image with the lowest total so far, or with ``keep_last`` the last image whose
    total was finite (for ``normalize_gradients``, where the optimiser does not reduce the total)."""

    def __init__(self, x: Tensor, evaluations: int, keep_last: bool = False) -> None:
        self.keep_last = keep_last
        self.records = x.detach().new_zeros(evaluations, 5)
        self.count = torch.zeros(1, dtype=torch.long, device=x.device)
        self.best_loss = torch.full((), math.inf, dtype=x.dtype, device=x.device)
        self.best_x = x.detach().clone()

    @torch.no_grad()
    def add(self, record: Tensor, x: Tensor) -> None:
        self.records.index_copy_(0, self.count, record.unsqueeze(0))
        self.count += 1
        better = torch.isfinite(record[0]) if self.keep_last else record[0] < self.best_loss  # NaN never compares smaller
        self.best_loss.copy_(torch.where(better, record[0], self.best_loss))
        self.best_x.copy_(torch.where(better, x, self.best_x))


def iteration(
    objective: Objective,
    x: Tensor,
    tracker: Tracker,
    optimizer: str = "lbfgs",
    history_size: int = 100,
    learning_rate: float = 0.02,
) -> Callable[[], None]:
    """One optimiser iteration (one evaluation of ``objective`` at x, recorded in ``tracker``, then
    the update of x in place) as a function of no arguments. For ``"lbfgs"`` it never syncs with the
    host and can be captured in a CUDA graph (:class:`CudaGraph`)."""
    if optimizer == "lbfgs":
        lbfgs = LBFGS(x.numel(), history_size, device=x.device, dtype=x.dtype)
        flat = x.detach().view(-1)

        def iterate() -> None:
            tracker.add(objective(x), x)
            lbfgs.step(flat, x.grad.view(-1))

        return iterate
    if optimizer == "torch-lbfgs":
        # max_iter=1 per step(): the same algorithm as one long step, with control between iterations.
        # Tolerances of -1 never stop early (as in neural-style): ``iterations`` is what runs.
        opt: torch.optim.Optimizer = torch.optim.LBFGS(
            [x], lr=1, max_iter=1, history_size=history_size, tolerance_grad=-1, tolerance_change=-1
        )
    else:
        opt = torch.optim.Adam([x], lr=learning_rate)

    def closure() -> Tensor:
        record = objective(x)
        tracker.add(record, x)
        return record[0]

    return lambda: opt.step(closure)


class CudaGraph:
    """``fn`` run eagerly ``warmup`` times on a side stream (cuDNN autotuning and lazy
    initialisations happen there), then captured in a CUDA graph at the next call and replayed
    from then on: one launch per call instead of hundreds. Every call does ``fn``'s work once.

    ``fn`` must sync nothing and keep its state in tensors it updates in place.
    """

    def __init__(self, fn: Callable[[], None], warmup: int = 3) -> None:
        self.fn, self.warmup = fn, warmup
        self.side = torch.cuda.Stream()
        self.graph: torch.cuda.CUDAGraph | None = None

    def __call__(self) -> None:
        if self.graph is None and self.warmup > 0:
            self.warmup -= 1
            self.side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(self.side):
                self.fn()
            torch.cuda.current_stream().wait_stream(self.side)
            return
        if self.graph is None:
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):  # records, runs nothing
                self.fn()
        self.graph.replay()


def snapshot_path(path: str | os.PathLike[str], iteration: int) -> Path:
    """``OUT.png`` -> ``OUT_<iteration>.png``: where ``save_every`` writes its snapshots."""
    path = Path(path)
    return path.with_name(f"{path.stem}_{iteration}{path.suffix}")


class Loop:
    """Runs ``iterate`` (one optimiser iteration, issued to the device) up to ``iterations`` times and
    reads the losses back only at sync points: where ``sync_at(i)`` is true, every
    :data:`SYNC_SECONDS`, and after the last iteration. A non-finite loss or Ctrl-C ends it early.

    At each sync point, once the losses read back are checked, ``on_sync(i, loss)`` runs (snapshots,
    printing, the callback: between iterations, outside any CUDA graph); it returns why to stop, or
    ``None``. A tqdm progress bar on stderr follows the sync points.
    """

    def __init__(self, iterate: Callable[[], None], tracker: Tracker, iterations: int, progress: bool = True) -> None:
        self.iterate, self.tracker, self.iterations, self.progress = iterate, tracker, iterations, progress
        self.stamps: list[float] = []  # host time after each iteration was issued
        self.done = 0  # iterations completed with finite losses
        self.seconds = 0.0  # wall time of the run

    def history(self) -> list[dict[str, float]]:
        """One dict per iteration done: the weighted terms and ``seconds`` since the start."""
        values = self.tracker.records[: len(self.stamps)].tolist()
        return [
            {"total": v[0], "content": v[1], "style": v[2], "tv": v[3], "temporal": v[4], "seconds": s}
            for v, s in zip(values, self.stamps)
        ]

    def run(
        self, sync_at: Callable[[int], bool], on_sync: Callable[[int, float], str | None], reraise_interrupt: bool = False
    ) -> str | None:
        """Iterate; returns ``None`` if every iteration ran, else why the run stopped. Ctrl-C stops
        the run with a warning, or with ``reraise_interrupt`` raises KeyboardInterrupt again (for a
        caller that keeps nothing half-done)."""
        bar = tqdm(total=self.iterations, disable=not self.progress, file=sys.stderr, unit="it", mininterval=SYNC_SECONDS)
        stopped: str | None = None
        start = last_read = time.perf_counter()
        try:
            for i in range(1, self.iterations + 1):
                self.iterate()
                now = time.perf_counter()
                self.stamps.append(now - start)
                if i < self.iterations and not sync_at(i) and now - last_read < SYNC_SECONDS:
                    continue
                last_read = now
                totals = self.tracker.records[self.done : i, 0].tolist()  # waits for the device
                bad = next((k for k, v in enumerate(totals) if not math.isfinite(v)), None)
                if bad is not None:
                    del self.stamps[self.done + bad + 1 :]  # the history ends with the first non-finite loss
                    stopped = f"the loss became {totals[bad]} at iteration {self.done + bad + 1}"
                    self.done += bad
                    warnings.warn(f"{stopped}; returning the best image so far", RuntimeWarning, stacklevel=3)
                    break
                self.done = i
                bar.update(i - bar.n)
                bar.set_postfix_str(f"loss {totals[-1]:.4g}", refresh=False)
                stopped = on_sync(i, totals[-1])
                if stopped is not None:
                    break
        except KeyboardInterrupt:
            if reraise_interrupt:
                bar.close()
                raise
            self.done = len(self.stamps)
            stopped = f"interrupted after {self.done} iterations"
            warnings.warn(f"{stopped}; returning the best image so far", RuntimeWarning, stacklevel=3)
        self.seconds = time.perf_counter() - start
        kept = "last" if self.tracker.keep_last else "best"
        bar.set_postfix_str(f"{kept} loss {float(self.tracker.best_loss):.4g}", refresh=False)
        bar.close()
        return stopped


Network = str | NetworkSpec | FeatureNetwork
"""A network as ``style_transfer`` takes it: a name in :data:`nst_lessons.networks.NETWORKS` (with
the imagenet weights, max pooling, and ``seed`` for random filters), a
:class:`~nst_lessons.networks.NetworkSpec`, or a network already built (used as it is)."""


@dataclass(frozen=True)
class Speed:
    """The switches that trade exactness for speed on a GPU (:mod:`nst_lessons.bench` measures
    them); the default is exact IEEE float32 with none of them.

    Attributes:
        precision: ``"fp32"``, ``"tf32"`` or ``"bf16"`` (see :func:`style_transfer`).
        channels_last: channels-last (NHWC) feature maps, which tensor-core convolutions prefer.
        cuda_graphs: capture one whole iteration in a CUDA graph and replay it (``optimizer="lbfgs"``).
    """

    precision: str = "fp32"
    channels_last: bool = False
    cuda_graphs: bool = False

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; expected {', '.join(PRECISIONS)}")


FASTEST = Speed("bf16", channels_last=True, cuda_graphs=True)
"""The fastest settings on a GPU (about 11-20% higher final loss than fp32; see :func:`style_transfer`)."""

_SPEED_KEYWORDS = ("precision", "channels_last", "cuda_graphs")
_NETWORK_KEYWORDS = ("weights", "pooling")


def legacy_arguments(
    network: Network,
    speed: Speed,
    seed: int | None,
    legacy: Mapping[str, object],
    caller: str = "style_transfer",
    stacklevel: int = 3,
) -> tuple[Network, Speed]:
    """``network`` and ``speed`` with the keywords of earlier versions folded in: ``weights``
    (a name, a path or a loaded network) and ``pooling`` into the network's spec, ``precision``,
    ``channels_last`` and ``cuda_graphs`` into ``speed``. Each use warns with a DeprecationWarning;
    any other keyword is a ``TypeError``, as Python would make it."""
    unknown = [k for k in legacy if k not in (*_NETWORK_KEYWORDS, *_SPEED_KEYWORDS)]
    if unknown:
        raise TypeError(f"{caller}() got an unexpected keyword argument {unknown[0]!r}")
    if not legacy:
        return network, speed
    warnings.warn(
        f"{caller}({', '.join(f'{k}=' for k in legacy)}) is deprecated: give network=NetworkSpec(arch, weights, "
        "pooling) (or a loaded network) and speed=Speed(precision, channels_last, cuda_graphs)",
        DeprecationWarning,
        stacklevel=stacklevel,
    )
    weights = legacy.get("weights")
    if isinstance(weights, FeatureNetwork):
        network = weights
    elif weights is not None or "pooling" in legacy:
        if isinstance(network, FeatureNetwork):
            raise ValueError("give the weights and pooling of a network as network=NetworkSpec(...), not beside a loaded one")
        fields = {k: os.fspath(legacy[k]) if k == "weights" else legacy[k] for k in _NETWORK_KEYWORDS if legacy.get(k) is not None}
        network = network_spec(network, seed).with_(**fields)
    return network, replace(speed, **{k: legacy[k] for k in _SPEED_KEYWORDS if k in legacy})


def pop_legacy(
    options: dict[str, object], network: Network, seed: int | None, caller: str
) -> tuple[Network, Speed]:
    """For a function that passes ``options`` on to :func:`style_transfer`: the earlier keywords
    taken out of ``options`` and folded into ``network`` and ``options["speed"]``
    (:func:`legacy_arguments`), which is returned too."""
    legacy = {k: options.pop(k) for k in (*_NETWORK_KEYWORDS, *_SPEED_KEYWORDS) if k in options}
    network, speed = legacy_arguments(network, options.get("speed", Speed()), seed, legacy, caller, stacklevel=4)  # type: ignore[arg-type]
    options["speed"] = speed
    return network, speed


def network_spec(network: str | NetworkSpec, seed: int | None = None) -> NetworkSpec:
    """The spec of a network given by name (its seed ``seed``, default 0) or by spec (as it is)."""
    return as_spec(network, seed=0 if seed is None else seed)


def described(network: Network, seed: int | None = None) -> FeatureNetwork:
    """The network's shapes, layer names and defaults without loading anything (a loaded network
    is its own description)."""
    return network if isinstance(network, FeatureNetwork) else describe_network(network_spec(network, seed))


def _load_model(network: Network, device: str | torch.device | None, seed: int | None) -> tuple[FeatureNetwork, torch.device]:
    """The network and its device (a loaded network is used as it is, on its own device)."""
    if isinstance(network, FeatureNetwork):
        return network, network.device
    device = default_device(device)
    return load_network(network_spec(network, seed), device), device


def other_style_network(network: Network, style_network: Network | None, seed: int | None = None) -> Network | None:
    """``style_network``, or ``None`` when it is the content network: the same object, or the same
    spec given by name or spec (then one network is loaded and runs once per evaluation)."""
    if style_network is None or style_network is network:
        return None
    if isinstance(network, FeatureNetwork) or isinstance(style_network, FeatureNetwork):
        return style_network  # a loaded network may have been changed in place (normalize_activations)
    return None if network_spec(style_network, seed) == network_spec(network, seed) else style_network


def load_networks(
    network: Network, style_network: Network | None, device: str | torch.device | None = None, seed: int | None = None
) -> tuple[FeatureNetwork, FeatureNetwork | None]:
    """Both networks of a run loaded once (for many runs: a batch, a pyramid, a video), the style
    network on the content network's device; ``None`` for a style network that is the same
    (:func:`other_style_network`)."""
    model, device = _load_model(network, device, seed)
    style_network = other_style_network(network, style_network, seed)
    return model, None if style_network is None else _load_model(style_network, device, seed)[0]


def _run_model(model: FeatureNetwork, dtype: torch.dtype, channels_last: bool) -> FeatureNetwork:
    """The model in the run's dtype and memory format: one copy if either differs, never the caller's
    model changed in place."""
    if next(_tensors(model)).dtype == dtype and (not channels_last or _is_channels_last(model)):
        return model
    model = copy.deepcopy(model).to(dtype)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def _loss_weights(
    network: FeatureNetwork,
    style_network: FeatureNetwork,
    normalize_gradients: bool,
    given: tuple[float | None, float | None, float | None],
) -> tuple[float, float, float]:
    """(alpha, beta, gamma): those given, the rest the networks' own
    (:attr:`~nst_lessons.networks.FeatureNetwork.loss_weights`: alpha and gamma from the content
    network, beta from the style network), or :data:`NORMALIZED_LOSS_WEIGHTS` with
    ``normalize_gradients``."""
    if normalize_gradients:
        defaults = NORMALIZED_LOSS_WEIGHTS
    else:
        (alpha, _, gamma), (_, beta, _) = network.loss_weights, style_network.loss_weights
        defaults = (alpha, beta, gamma)
    alpha, beta, gamma = (d if v is None else float(v) for v, d in zip(given, defaults))
    return alpha, beta, gamma


def _color_hooks(
    preserve_color: str | None, content: Tensor, styles: list[Tensor]
) -> tuple[Tensor, list[Tensor], Callable[[Tensor], Tensor]]:
    """Colour pre- and post-processing (:mod:`nst_lessons.color`): the content and styles the run
    uses, and the function that turns a result (1,3,H,W) into the output (``content``'s chroma put
    back for ``"yuv"`` and ``"luminance"``)."""
    if preserve_color is None:
        return content, styles, lambda result: result
    content_run, styles_run = color.prepare(preserve_color, content, styles)
    return content_run, list(styles_run), lambda result: color.finish(preserve_color, result, content)


def _print_terms(i: int, iterations: int, record: list[float]) -> None:
    total, content, style, tv, temporal = record
    line = f"iteration {i}/{iterations}: total {total:.4g} = content {content:.4g} + style {style:.4g} + tv {tv:.4g}"
    tqdm.write(line + (f" + temporal {temporal:.4g}" if temporal else ""))


def _check_every(name: str, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")


def style_transfer(
    content: ImageLike,
    style: ImageLike | Sequence[ImageLike],
    *,
    size: int | None = 512,
    style_size: int | None = None,
    style_scale: float | None = None,
    style_blend_weights: Sequence[float] | None = None,
    masks: Sequence[tuple[ImageLike, ImageLike]] | None = None,
    preserve_color: str | None = None,
    style_targets: StyleTargets | None = None,
    iterations: int = 500,
    optimizer: str = "lbfgs",
    content_layers: Sequence[str] | None = None,
    style_layers: Sequence[str] | Mapping[str, float] | None = None,
    content_weight: float | None = None,
    style_weight: float | None = None,
    tv_weight: float | None = None,
    tv_squared: bool = False,
    normalize_gradients: bool = False,
    init: str | ImageLike = "content",
    network: Network = "vgg19",
    style_network: Network | None = None,
    device: str | torch.device | None = None,
    seed: int | None = None,
    learning_rate: float = 0.02,
    history_size: int = 100,
    gradients: str = "autograd",
    dtype: torch.dtype = torch.float32,
    speed: Speed = Speed(),
    check_memory: bool = True,
    temporal: tuple[ImageLike, Tensor] | None = None,
    temporal_weight: float = 0.0,
    save_every: int | None = None,
    save_path: str | os.PathLike[str] | None = None,
    print_every: int | None = None,
    callback: Callable[[TransferState], bool | None] | None = None,
    progress: bool = True,
    **legacy: object,
) -> TransferResult:
    """Render ``content`` in the style of ``style`` (one image, or several blended or one per region).

    The options come in groups, in this order: the images and their sizes (``size`` ...
    ``style_targets``); the optimisation (``iterations``, ``optimizer``); the loss (layers, weights,
    TV, ``normalize_gradients``, ``init``); the network(s) (``network``, ``style_network``,
    ``device``, ``seed``); the numerics (``learning_rate`` ... ``speed``); video frames
    (``temporal``); and what the run reports (``save_every`` ... ``progress``).

    Args:
        content: a path, PIL image, tensor (3,H,W)/(1,3,H,W) in [0,1]. style: the same, or a list
            of them; sizes may differ.
        size: long side of the output in pixels (``None``: the content image's own size).
        style_size: long side every style image is resized to (default: the output's long side).
        style_scale: instead, the styles' long side as a multiple of the output's (jcjohnson's
            ``-style_scale``): below 1 the painting's strokes come out smaller, above 1 larger.
        style_blend_weights: several styles: the target Grams are their weighted mean, weights
            normalised to sum 1 (default equal); see :mod:`nst_lessons.targets`.
        masks: spatial control, one ``(content_mask, style_mask)`` pair per region, region r in
            the style of ``style[r]``; see :mod:`nst_lessons.masks`.
        preserve_color: keep the photo's colours: ``"yuv"`` (the result's luminance, the photo's
            chroma), ``"luminance"`` (transfer on luminance only) or ``"histogram"`` (the styles'
            colours matched to the photo's first); see :mod:`nst_lessons.color`.
        style_targets: precomputed :class:`~nst_lessons.targets.StyleTargets` (e.g. for many
            photos or frames); ``style`` then serves only ``init="style"`` and the memory
            estimate, and ``style_size``, ``style_scale``, ``style_blend_weights`` and ``masks``
            must not be given. With ``"luminance"`` or ``"histogram"`` colours, compute the targets
            from the styles as :func:`nst_lessons.color.prepare` turns them.
        iterations: optimiser iterations (one objective evaluation each).
        optimizer: ``"lbfgs"`` (:class:`nst_lessons.lbfgs.LBFGS`, history ``history_size``, step 1,
            no line search), ``"torch-lbfgs"`` (the same with ``torch.optim.LBFGS``) or ``"adam"``
            (``learning_rate`` in units of [0,1] pixels).
        content_layers: layer names of the content network for L_content (``None``: its default,
            relu4_2 for VGG).
        style_layers: names of the style network (weighted 1/|L| each) or ``{name: w_l}``
            (``None``: its default, relu1_1 ... relu5_1 for VGG).
        content_weight, style_weight, tv_weight: alpha, beta, gamma; ``None`` takes the networks'
            own (:attr:`~nst_lessons.networks.FeatureNetwork.loss_weights`, for VGG
            :data:`DEFAULT_LOSS_WEIGHTS` by weights; alpha and gamma from the content network, beta
            from the style network), or :data:`NORMALIZED_LOSS_WEIGHTS` with ``normalize_gradients``.
        tv_squared: squared TV instead of the L1 form.
        normalize_gradients: jcjohnson's ``-normalize_gradients``: each content and style layer's
            dL/dF is scaled to unit L1 norm before alpha or beta w_l multiplies it (see
            :class:`Objective`). alpha and beta then set the *directions'* mix, not the losses',
            so their useful ratio is near 1 rather than 1e-8. The defaults are jcjohnson's numbers,
            not his scale (:data:`NORMALIZED_LOSS_WEIGHTS`: 5x less style per layer, another TV).
        init: ``"content"``, ``"noise"`` (uniform, from ``seed``), ``"style"`` (the first style)
            or an image (a tensor is resized in float, not rounded to 8 bits).
        network: the feature network (:data:`Network`): a name (``"vgg19"``, ``"vgg16"``, ``"vgg13"``,
            ``"vgg11"``, any in :data:`nst_lessons.networks.NETWORKS`) with its imagenet weights; a
            :class:`~nst_lessons.networks.NetworkSpec` for other weights or pooling, e.g.
            ``NetworkSpec("vgg19", weights="random", pooling="avg")`` (weights ``"imagenet"``,
            ``"caffe"``, ``"random"`` or a checkpoint path); or a loaded network, used as it is.
        style_network: the network of the style terms, the same kinds; ``None``: ``network``.
            Content then comes from one network and style from another; each runs once per
            evaluation, and ``settings`` records both.
        device: ``None`` means CUDA when available (a loaded network stays on its own device).
        seed: seeds the noise init, and the random filters of a network given by name; ``None`` means 0.
        gradients: ``"autograd"`` or ``"manual"`` (hand-derived dL/dF, see :class:`Objective`).
        dtype: ``torch.float64`` runs the whole optimisation in double precision (for checks:
            L-BFGS amplifies float32 rounding, so two float32 runs that differ only in rounding
            part ways after a few iterations).
        speed: a :class:`Speed`, the switches that trade exactness for speed (:data:`FASTEST` is
            all of them). ``precision``: the network's arithmetic on a GPU. ``"fp32"`` (default):
            IEEE float32 throughout.
            ``"tf32"``: TF32 tensor cores for convolutions and matmuls (10-bit mantissa products,
            float32 sums). ``"bf16"``: the network under bf16 autocast, Grams and losses in float32;
            the fastest. Both cost some of the loss L-BFGS reaches: on the CPU (128 px, random
            weights, 500 iterations) bf16 ended 11-20% above fp32 and TF32 (emulated) 1.7%, where
            two fp32 runs differ by under 0.5%; ``python -m nst_lessons.bench`` measures it on a
            GPU. On the CPU ``"tf32"`` is the same as ``"fp32"``, and ``"bf16"`` runs (1.6-1.9x
            faster than fp32 where the CPU has native bf16, else slowly).
            ``channels_last``: channels-last (NHWC) feature maps, which tensor-core convolutions prefer.
            ``cuda_graphs``: capture one whole iteration (evaluation and L-BFGS update) in a CUDA graph
            after 3 warm-up iterations and replay it: removes the per-kernel launch cost, which
            dominates below about 1024 px. Needs ``optimizer="lbfgs"``; no effect on the CPU.
        check_memory: estimate the memory the run needs first (:mod:`nst_lessons.memory`) and
            refuse with :class:`~nst_lessons.memory.InsufficientMemoryError` (a ``ValueError``
            naming the largest size that fits) rather than fail half-way; planned from the image
            headers, before anything is decoded at ``size`` or the model is loaded (:func:`check_fits`).
        temporal: for a video frame, ``(warped, c)``: the previous stylised frame carried to this
            frame along the optical flow (an image of the output's size, or a tensor (3,H,W)/(1,3,H,W)
            in [0,1]) and the per-pixel weights c, (H,W) or (1,1,H,W) in [0,1] (0 at occlusions and
            motion boundaries). Adds lambda * L_temporal (:func:`losses.temporal_loss`);
            :mod:`nst_lessons.video` builds both.
        temporal_weight: lambda, the weight of L_temporal.
        save_every: write the current image (colours preserved as for the output) every this many
            iterations to ``save_path`` with ``_<iteration>`` before its suffix
            (:func:`snapshot_path`). Each snapshot is a sync point, between iterations (a CUDA
            graph replays whole iterations, so it is unaffected).
        save_path: the output path the snapshots are named after; needed with ``save_every``.
        print_every: print the weighted loss terms every this many iterations (also a sync point).
        callback: called with a :class:`TransferState` after each iteration; returning ``True`` stops.
        progress: draw a tqdm progress bar on stderr.
        legacy: the keywords of earlier versions, still accepted with a DeprecationWarning
            (:func:`legacy_arguments`): ``weights``, ``pooling`` (now ``network``) and
            ``precision``, ``channels_last``, ``cuda_graphs`` (now ``speed``).

    Returns:
        A :class:`TransferResult` holding the best image seen (with ``normalize_gradients``, the last
        one evaluated). A non-finite loss or Ctrl-C ends the run early with a warning, still
        returning the best (or last finite) image so far.
    """
    network, speed = legacy_arguments(network, speed, seed, legacy)
    precision, channels_last, cuda_graphs = speed.precision, speed.channels_last, speed.cuda_graphs
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; expected {', '.join(OPTIMIZERS)}")
    if iterations < 1:
        raise ValueError(f"iterations must be at least 1, got {iterations}")
    if isinstance(init, str) and init not in INITS and not os.path.exists(init):
        raise ValueError(f"unknown init {init!r}; expected content, noise, style or an image path")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected {', '.join(PRECISIONS)}")
    if cuda_graphs and optimizer != "lbfgs":
        raise ValueError(f"cuda_graphs needs optimizer='lbfgs', not {optimizer!r}")
    color.check_mode(preserve_color)
    _check_every("save_every", save_every)
    _check_every("print_every", print_every)
    if save_every is not None and save_path is None:
        raise ValueError("save_every needs save_path, the output the snapshots are named after")
    if save_path is not None:
        check_output_path(save_path)
    if style_targets is not None and (style_size, style_scale, style_blend_weights, masks) != (None,) * 4:
        raise ValueError("with style_targets, give no style_size, style_scale, style_blend_weights or masks")
    style_network = other_style_network(network, style_network, seed)
    content_described = described(network, seed)  # layer names and shapes: nothing loaded yet
    style_described = content_described if style_network is None else described(style_network, seed)
    content_layers = content_described.content_layers if content_layers is None else tuple(content_layers)
    for name in content_layers:
        content_described.layer_index(name)
    layer_weights = style_layer_weights(style_layers, style_described)
    if not content_layers and not layer_weights:
        raise ValueError("no content or style layers: nothing to optimise")

    styles = as_list(style)
    if style_targets is None and masks is None:
        normalised_blend_weights(style_blend_weights, len(styles))  # checked before any work
    if check_memory:  # from the image headers: before anything is decoded at this size or the model loaded
        check_fits(
            content, styles, size=size, style_size=style_size, style_scale=style_scale, content_layers=content_layers,
            style_layers=layer_weights, network=content_described,
            style_network=None if style_network is None else style_described, device=_run_device(network, device),
            precision=precision, optimizer=optimizer, history_size=history_size, tv_weight=tv_weight,
        )  # fmt: skip
    content_image = load_image(content, size)
    output_size = (content_image.height, content_image.width)
    style_images, mask_pairs = load_styles(  # masks checked before the model is loaded
        styles, output_size, style_size, style_scale, masks, style_blend_weights, layer_weights, style_described
    )
    model, device = _load_model(network, device, seed)
    style_model = model if style_network is None else _load_model(style_network, device, seed)[0]
    alpha, beta, gamma = _loss_weights(model, style_model, normalize_gradients, (content_weight, style_weight, tv_weight))
    for name, value in (("content_weight", alpha), ("style_weight", beta), ("tv_weight", gamma),
                        ("temporal_weight", temporal_weight)):
        _check_weight(name, value)

    run_model = _run_model(model, dtype, channels_last)
    run_style_model = run_model if style_model is model else _run_model(style_model, dtype, channels_last)
    with backend_flags(precision, device):
        photo = to_tensor(content_image, device, dtype)
        p, style_tensors, finish = _color_hooks(preserve_color, photo, [to_tensor(im, device, dtype) for im in style_images])
        targets = style_targets or StyleTargets.from_tensors(
            run_style_model, style_tensors, style_layers=layer_weights, size=output_size, blend_weights=style_blend_weights,
            masks=mask_pairs,  # moved to the features' device and dtype there
            precision=precision, channels_last=channels_last,
        )  # fmt: skip
        frame = _temporal_target(temporal, p) if temporal is not None and temporal_weight else None
        objective = Objective(
            run_model, p, targets, content_layers, layer_weights, alpha, beta, gamma, tv_squared, gradients, precision, channels_last,
            temporal=frame, temporal_weight=temporal_weight, normalize_gradients=normalize_gradients,
            style_network=run_style_model,
        )  # fmt: skip
        x = _initial_image(init, p, style_tensors[0], seed).requires_grad_(True)
        tracker = Tracker(x, iterations, keep_last=normalize_gradients)
        iterate = iteration(objective, x, tracker, optimizer, history_size, learning_rate)
        if cuda_graphs and device.type == "cuda":
            iterate = CudaGraph(iterate)
        loop = Loop(iterate, tracker, iterations, progress)
        every = [n for n in (save_every, print_every) if n is not None]

        def on_sync(i: int, loss: float) -> str | None:
            if print_every is not None and i % print_every == 0:
                _print_terms(i, iterations, tracker.records[i - 1].tolist())
            if save_every is not None and i % save_every == 0:
                save_image(finish(x.detach().clamp(0, 1)), snapshot_path(save_path, i))
            if callback is not None and callback(TransferState(i, loss, x.detach(), loop.history())):
                return f"stopped by the callback at iteration {i}"
            return None

        stopped = loop.run(lambda i: callback is not None or any(i % n == 0 for n in every), on_sync)
        raw = tracker.best_x.clamp(0, 1)
        best = finish(raw).cpu()
    settings = {
        "size": size, "iterations": iterations, "optimizer": optimizer, "content_layers": list(content_layers),
        "style_layers": layer_weights, "content_weight": alpha, "style_weight": beta, "tv_weight": gamma,
        "tv_squared": tv_squared, "init": init if isinstance(init, str) else "image", "weights": model.spec.weights,
        "pooling": model.spec.pooling, "content_network": asdict(model.spec), "style_network": asdict(style_model.spec),
        "device": str(device), "seed": seed, "gradients": gradients,
        "history_size": history_size, "precision": precision, "channels_last": channels_last,
        "cuda_graphs": cuda_graphs and device.type == "cuda", "temporal_weight": temporal_weight if temporal is not None else 0.0,
        "styles": len(styles), "style_size": style_size, "style_scale": style_scale,
        "style_blend_weights": None if style_blend_weights is None else list(style_blend_weights),
        "regions": 0 if masks is None else len(masks), "preserve_color": preserve_color,
        "normalize_gradients": normalize_gradients, "style_targets": "given" if style_targets is not None else "computed",
    }  # fmt: skip
    return TransferResult(to_pil(best), best, loop.history(), loop.done, loop.seconds, stopped, settings, raw.cpu())


def _run_device(network: Network, device: str | torch.device | None) -> torch.device:
    """The device a run will use: a loaded network's, else ``device`` (``None``: CUDA when available)."""
    return network.device if isinstance(network, FeatureNetwork) else default_device(device)


def check_fits(
    content: ImageLike,
    styles: Sequence[ImageLike],
    *,
    size: int | None,
    style_size: int | None,
    style_scale: float | None,
    content_layers: Sequence[str],
    style_layers: Mapping[str, float],
    network: FeatureNetwork,
    style_network: FeatureNetwork | None,
    device: torch.device,
    precision: str,
    optimizer: str,
    history_size: int,
    tv_weight: float | None,
) -> memory.MemoryEstimate:
    """Refuse a run that would not fit on ``device`` (:func:`nst_lessons.memory.check_fits`), planned
    from the images' headers (:func:`~nst_lessons.images.image_size`) and the networks' descriptions
    (:func:`described`): nothing is decoded, let alone resized to ``size``, and no network loaded,
    before the refusal. Arguments as for :func:`style_transfer`, with ``style_layers`` as
    ``{name: w_l}`` and the networks described."""
    output = image_size(content) if size is None else resized_size(image_size(content), size)
    long_side = style_long_side((output[1], output[0]), style_size, style_scale)
    style = max((resized_size(image_size(s), long_side) for s in styles), key=lambda wh: wh[0] * wh[1])
    estimate_at = memory_model(
        output, style, content_layers, style_layers, network=network, style_network=style_network, precision=precision,
        optimizer=optimizer, history_size=history_size, tv=tv_weight != 0,
    )  # fmt: skip
    return memory.check_fits(estimate_at, max(output), device)


def check_run_fits(
    content: ImageLike,
    style: ImageLike | Sequence[ImageLike],
    options: Mapping[str, object],
    *,
    network: Network,
    style_network: Network | None,
    seed: int | None,
    device: str | torch.device | None,
    speed: Speed,
) -> memory.MemoryEstimate:
    """:func:`check_fits` for the run ``style_transfer(content, style, network=network, ...,
    **options)`` (its defaults for what ``options`` does not give), for callers that hold the
    options as a mapping (a batch, a pyramid)."""
    given = _DEFAULTS | dict(options)
    style_network = other_style_network(network, style_network, seed)
    content_described = described(network, seed)
    style_described = content_described if style_network is None else described(style_network, seed)
    content_layers = content_described.content_layers if given["content_layers"] is None else tuple(given["content_layers"])  # type: ignore[arg-type]
    return check_fits(
        content, as_list(style), size=given["size"], style_size=given["style_size"], style_scale=given["style_scale"],  # type: ignore[arg-type]
        content_layers=content_layers, style_layers=style_layer_weights(given["style_layers"], style_described),  # type: ignore[arg-type]
        network=content_described, style_network=None if style_network is None else style_described,
        device=_run_device(network, device), precision=speed.precision, optimizer=given["optimizer"],  # type: ignore[arg-type]
        history_size=given["history_size"], tv_weight=given["tv_weight"],  # type: ignore[arg-type]
    )  # fmt: skip


def memory_model(
    content_size: tuple[int, int],
    style_size: tuple[int, int],
    content_layers: Sequence[str],
    style_layers: Iterable[str],
    **settings: object,
) -> Callable[[int], memory.MemoryEstimate]:
    """The memory a run needs as a function of the output's long side, at the aspect ratios of the
    content and style images (PIL sizes, width x height) and the run's ``settings`` (keyword
    arguments of :func:`nst_lessons.memory.estimate`)."""
    (w, h), (sw, sh) = content_size, style_size

    def at(long_side: int) -> memory.MemoryEstimate:
        scale = long_side / max(w, h)
        return memory.estimate(
            max(1, round(h * scale)), max(1, round(w * scale)), list(content_layers), list(style_layers),
            style_height=max(1, round(sh * scale)), style_width=max(1, round(sw * scale)), **settings,
        )  # fmt: skip

    return at


_DEFAULTS = {name: p.default for name, p in inspect.signature(style_transfer).parameters.items()}
