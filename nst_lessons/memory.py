"""How much memory a style-transfer run needs, worked out before it starts, and a refusal with the
largest size that fits instead of an out-of-memory traceback half-way through.

The estimate is analytic, from VGG-19's layer shapes up to the deepest layer used:

- activations: what autograd keeps for the backward pass. Each convolution keeps its input and
  weight, each ReLU its output, each max pooling its input and int64 indices; the loss keeps the
  features it reads (as float32 copies under bf16), the content difference F - P and G - A per
  style layer. Storage shared between layers (a ReLU's output is the next layer's input) is
  counted once. The tests check this count against the tensors autograd actually saves.
- transient: the gradients in flight at the backward pass's peak, taken as two feature maps of
  the largest layer in the activations' dtype plus one in float32.
- optimizer: the L-BFGS history, 2 m n values for n = 3 H W pixels, and a dozen n-vectors of
  working space (Adam: its two moments instead of the history).
- model: the parameters up to the deepest layer.
- images: x, its gradient, the best image, the content and style images, and the targets.

Not counted: the CUDA context, cuDNN's workspace and the allocator's fragmentation, hence the
headroom in :func:`check_fits`; and the one-off no-gradient pass that computes the style targets.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from nst_lessons.vgg import _CONFIG, LAYERS, resolve_layer

_BYTES = {"fp32": 4, "tf32": 4, "bf16": 2}
FLOAT, INDEX = 4, 8


def layer_shapes(height: int, width: int, deepest: str) -> list[tuple[str, int, int, int]]:
    """``(name, channels, height, width)`` of every layer's output from conv1_1 to ``deepest``.

    3x3 convolutions with padding 1 keep the size; 2x2 pooling halves it, rounding down.
    """
    channels = [c for c, n_convs in _CONFIG for _ in range(n_convs)]
    shapes, c, h, w = [], 3, height, width
    for name in LAYERS[: resolve_layer(deepest) + 1]:
        if name.startswith("conv"):
            c = channels.pop(0)
        elif name.startswith("pool"):
            h, w = h // 2, w // 2
        shapes.append((name, c, h, w))
    return shapes


def conv_parameters(deepest: str) -> list[tuple[int, int]]:
    """``(c_in, c_out)`` of each 3x3 convolution up to ``deepest``."""
    shapes = layer_shapes(1, 1, deepest)
    c_in, out = 3, []
    for name, c, _, _ in shapes:
        if name.startswith("conv"):
            out.append((c_in, c))
            c_in = c
    return out


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a run needs at one image size, by what holds them (see the module docstring)."""

    height: int
    width: int
    activations: int
    transient: int
    optimizer: int
    model: int
    images: int

    @property
    def total(self) -> int:
        return self.activations + self.transient + self.optimizer + self.model + self.images

    def describe(self) -> str:
        gib = 2.0**30
        return (
            f"{self.total / gib:.1f} GiB (activations {self.activations / gib:.1f}, gradients in flight "
            f"{self.transient / gib:.1f}, optimizer {self.optimizer / gib:.1f}, model and images "
            f"{(self.model + self.images) / gib:.1f})"
        )


def saved_activation_bytes(
    height: int,
    width: int,
    content_layers: Sequence[str],
    style_layers: Sequence[str],
    precision: str = "fp32",
    pooling: str = "max",
    tv: bool = True,
) -> int:
    """Bytes of the tensors autograd keeps between one evaluation's forward and backward pass."""
    act = _BYTES[precision]
    shapes = layer_shapes(height, width, max([*content_layers, *style_layers], key=resolve_layer))
    saved: dict[str, int] = {}  # keyed by the tensor kept, so that shared storage counts once
    for (name, c, h, w), (previous, c_in, h_in, w_in) in zip(shapes, [("input", 3, height, width), *shapes]):
        if name.startswith(("conv", "pool")):  # both keep their input (the cast image for conv1_1)
            saved[previous] = c_in * h_in * w_in * act
        if name.startswith("conv") and act != FLOAT:  # autocast casts the weight afresh at each call
            saved[name + ".weight"] = 9 * c_in * c * act
        if name.startswith("relu"):
            saved[name] = c * h * w * act
        if name.startswith("pool") and pooling == "max":
            saved[name + ".indices"] = c * h * w * INDEX
    size = {name: (c, c * h * w) for name, c, h, w in shapes}
    for name in style_layers:  # the Gram's matmul keeps F (a float32 copy under bf16) and pow keeps G - A
        saved[name if act == FLOAT else name + ".float"] = size[name][1] * FLOAT
        saved[name + ".gram_diff"] = size[name][0] ** 2 * FLOAT
    for name in content_layers:  # pow keeps F - P
        saved[name + ".diff"] = size[name][1] * FLOAT
    if tv:  # abs keeps the differences
        saved["tv"] = 3 * (height * (width - 1) + (height - 1) * width) * FLOAT
    return sum(saved.values())


def estimate(
    height: int,
    width: int,
    content_layers: Sequence[str],
    style_layers: Sequence[str],
    *,
    style_height: int | None = None,
    style_width: int | None = None,
    precision: str = "fp32",
    pooling: str = "max",
    optimizer: str = "lbfgs",
    history_size: int = 100,
    tv: bool = True,
) -> MemoryEstimate:
    """The memory a :func:`~nst_lessons.transfer.style_transfer` run needs at a content size H x W."""
    if precision not in _BYTES:
        raise ValueError(f"unknown precision {precision!r}; expected one of {', '.join(_BYTES)}")
    act = _BYTES[precision]
    deepest = max([*content_layers, *style_layers], key=resolve_layer)
    shapes = {name: (c, h, w) for name, c, h, w in layer_shapes(height, width, deepest)}
    largest = max(c * h * w for c, h, w in shapes.values())
    n = 3 * height * width
    history = 2 * history_size * n if optimizer.endswith("lbfgs") else 2 * n
    parameters = sum(9 * c_in * c_out + c_out for c_in, c_out in conv_parameters(deepest))
    targets = sum(math.prod(shapes[name]) for name in content_layers) + sum(shapes[name][0] ** 2 for name in style_layers)
    style_pixels = 3 * (style_height or height) * (style_width or width)
    return MemoryEstimate(
        height=height,
        width=width,
        activations=saved_activation_bytes(height, width, content_layers, style_layers, precision, pooling, tv),
        transient=largest * (2 * act + FLOAT),
        optimizer=(history + 12 * n) * FLOAT,
        model=parameters * FLOAT,
        images=(6 * n + style_pixels + targets) * FLOAT,
    )


class InsufficientMemoryError(MemoryError, ValueError):
    """A run would not fit in the device's free memory. The message is one line and names the
    largest size that would fit at the same settings."""


def available_bytes(device: torch.device) -> int | None:
    """Memory free for a run: on CUDA the driver's free memory plus what PyTorch's allocator has
    cached but not used; on the CPU ``MemAvailable`` from /proc/meminfo; ``None`` if unknown."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    try:
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None


def largest_fitting(estimate_at: Callable[[int], MemoryEstimate], budget: float, upper: int) -> int | None:
    """The largest long side L <= ``upper`` with ``estimate_at(L).total <= budget`` (None if not even 32 px)."""
    lo, hi = 32, upper
    if estimate_at(lo).total > budget:
        return None
    while lo < hi:  # the estimate grows with L
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if estimate_at(mid).total <= budget else (lo, mid - 1)
    return lo


def check_fits(
    estimate_at: Callable[[int], MemoryEstimate],
    long_side: int,
    device: torch.device,
    *,
    headroom: float = 0.9,
    available: int | None = None,
    remedies: str = "lower history_size, use precision='bf16', or a pyramid",
) -> MemoryEstimate:
    """Raise :class:`InsufficientMemoryError` unless a run at ``long_side`` fits in ``headroom`` of
    the device's free memory (``available``, default :func:`available_bytes`). Returns the estimate.

    Args:
        estimate_at: the estimate for a long side L at the run's settings and aspect ratio.
        remedies: what else the caller's user can change, in the caller's words (the default names
            :func:`nst_lessons.transfer.style_transfer`'s options); the message ends "(or <remedies>)".
    """
    needed = estimate_at(long_side)
    free = available_bytes(device) if available is None else available
    if free is None or needed.total <= headroom * free:
        return needed
    largest = largest_fitting(estimate_at, headroom * free, long_side)
    advice = f"the largest size that fits at these settings is {largest} px" if largest else "not even 32 px fits"
    raise InsufficientMemoryError(
        f"a {needed.width}x{needed.height} run needs about {needed.describe()} but {free / 2**30:.1f} GiB "
        f"are free on {device}; {advice} (or {remedies})"
    )


__all__ = [
    "InsufficientMemoryError",
    "MemoryEstimate",
    "available_bytes",
    "check_fits",
    "conv_parameters",
    "estimate",
    "largest_fitting",
    "layer_shapes",
    "saved_activation_bytes",
]
