"""How much memory a style-transfer run needs, worked out before it starts, and a refusal with the
largest size that fits instead of an out-of-memory traceback half-way through.

The estimate is analytic, from the layer shapes of the network(s) in use up to the deepest layer
each is read at (:class:`nst_lessons.networks.FeatureNetwork` describes itself; content and style
may come from two networks, and both are counted):

- activations: what autograd keeps for the backward pass. The network reports what its forward
  pass keeps (:meth:`~nst_lessons.networks.FeatureNetwork.saved_bytes`: for VGG each convolution
  its input and weight, each ReLU its output, each max pooling its input and int64 indices); the
  loss keeps the features it reads (as float32 copies under bf16), the content difference F - P
  and G - A per style layer. Storage shared between layers (a ReLU's output is the next layer's
  input) is counted once. The tests check this count against the tensors autograd actually saves.
- transient: the gradients in flight at the backward pass's peak, taken as two feature maps of
  the largest layer in the activations' dtype plus one in float32.
- optimizer: the L-BFGS history, 2 m n values for n = 3 H W pixels, and a dozen n-vectors of
  working space (Adam: its two moments instead of the history).
- model: the parameters up to the deepest layer of each network.
- images: x, its gradient, the best image, the content and style images, and the targets.

Not counted: the CUDA context, cuDNN's workspace and the allocator's fragmentation, hence the
headroom in :func:`check_fits`; and the one-off no-gradient pass that computes the style targets.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from nst_lessons.networks import FeatureNetwork, describe_network

_BYTES = {"fp32": 4, "tf32": 4, "bf16": 2}
FLOAT = 4


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


def network_uses(
    content_layers: Sequence[str],
    style_layers: Sequence[str],
    network: FeatureNetwork | None = None,
    style_network: FeatureNetwork | None = None,
) -> dict[FeatureNetwork, tuple[str, ...]]:
    """``{network: the layers read from it}``: one entry when content and style share a network
    (``style_network=None``), else two. ``network=None`` describes VGG-19 with max pooling."""
    network = describe_network("vgg19") if network is None else network
    style_network = network if style_network is None else style_network
    uses: dict[FeatureNetwork, tuple[str, ...]] = {}
    for net, layers in ((network, content_layers), (style_network, style_layers)):
        uses[net] = tuple(dict.fromkeys((*uses.get(net, ()), *layers)))
    return {net: layers for net, layers in uses.items() if layers}


def saved_activation_bytes(
    height: int,
    width: int,
    content_layers: Sequence[str],
    style_layers: Sequence[str],
    precision: str = "fp32",
    tv: bool = True,
    *,
    network: FeatureNetwork | None = None,
    style_network: FeatureNetwork | None = None,
) -> int:
    """Bytes of the tensors autograd keeps between one evaluation's forward and backward pass."""
    act = _BYTES[precision]
    network = describe_network("vgg19") if network is None else network
    style_network = network if style_network is None else style_network
    saved: dict[tuple[int, str], int] = {}  # keyed by (network, tensor kept): shared storage counts once
    for net, layers in network_uses(content_layers, style_layers, network, style_network).items():
        saved.update({(id(net), k): v for k, v in net.saved_bytes(height, width, layers, act).items()})
    content_shapes = _shapes(network, height, width, content_layers)
    style_shapes = _shapes(style_network, height, width, style_layers)
    for name in style_layers:  # the Gram's matmul keeps F (a float32 copy under bf16) and pow keeps G - A
        c, h, w = style_shapes[name]
        saved[id(style_network), name if act == FLOAT else name + ".float"] = c * h * w * FLOAT
        saved[id(style_network), name + ".gram_diff"] = c * c * FLOAT
    for name in content_layers:  # pow keeps F - P
        saved[id(network), name + ".diff"] = math.prod(content_shapes[name]) * FLOAT
    if tv:  # abs keeps the differences
        saved[0, "tv"] = 3 * (height * (width - 1) + (height - 1) * width) * FLOAT
    return sum(saved.values())


def _shapes(network: FeatureNetwork, height: int, width: int, layers: Sequence[str]) -> dict[str, tuple[int, int, int]]:
    return network.layer_shapes(height, width, layers) if layers else {}


def estimate(
    height: int,
    width: int,
    content_layers: Sequence[str],
    style_layers: Sequence[str],
    *,
    network: FeatureNetwork | None = None,
    style_network: FeatureNetwork | None = None,
    style_height: int | None = None,
    style_width: int | None = None,
    precision: str = "fp32",
    optimizer: str = "lbfgs",
    history_size: int = 100,
    tv: bool = True,
) -> MemoryEstimate:
    """The memory a :func:`~nst_lessons.transfer.style_transfer` run needs at a content size H x W,
    with content read from ``network`` and style from ``style_network`` (``None``: the same;
    ``network=None``: VGG-19 with max pooling; :func:`nst_lessons.networks.describe_network` gives
    a weightless description to pass before anything is loaded)."""
    if precision not in _BYTES:
        raise ValueError(f"unknown precision {precision!r}; expected one of {', '.join(_BYTES)}")
    network = describe_network("vgg19") if network is None else network
    act = _BYTES[precision]
    uses = network_uses(content_layers, style_layers, network, style_network)
    largest = max(math.prod(shape) for net, layers in uses.items() for shape in net.layer_shapes(height, width, layers).values())
    n = 3 * height * width
    history = 2 * history_size * n if optimizer.endswith("lbfgs") else 2 * n
    parameters = sum(net.parameter_count(layers) for net, layers in uses.items())
    content_shapes = _shapes(network, height, width, content_layers)
    style_shapes = _shapes(style_network or network, height, width, style_layers)
    targets = sum(math.prod(content_shapes[name]) for name in content_layers) + sum(style_shapes[name][0] ** 2 for name in style_layers)
    style_pixels = 3 * (style_height or height) * (style_width or width)
    return MemoryEstimate(
        height=height,
        width=width,
        activations=saved_activation_bytes(
            height, width, content_layers, style_layers, precision, tv, network=network, style_network=style_network
        ),
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
    "estimate",
    "largest_fitting",
    "network_uses",
    "saved_activation_bytes",
]
