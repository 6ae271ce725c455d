"""Feature networks as swappable parts: what the objective, the style targets, the masks, the memory
estimate, the style space and the lessons need from a network, and how one is named and built.

A feature network maps an image x (B,3,H,W) in [0,1] to named feature maps F^l (B,N_l,H_l,W_l).
Everything else in the package asks the network about itself instead of assuming VGG-19:

- its layers: :attr:`FeatureNetwork.layers` (every name, in forward order), :meth:`~FeatureNetwork.layer_index`;
- its defaults: :attr:`~FeatureNetwork.content_layers`, :attr:`~FeatureNetwork.style_layers`,
  :attr:`~FeatureNetwork.loss_weights` (α, β, γ: activation scales differ per network and weights);
- the maths: :meth:`~FeatureNetwork.preprocess`, :meth:`~FeatureNetwork.extract` (preprocessing
  included; runs only as deep as the deepest layer asked for);
- its geometry: :meth:`~FeatureNetwork.layer_shapes` (N_l, H_l, W_l, hence M_l = H_l W_l),
  :meth:`~FeatureNetwork.layer_masks` (a region mask carried down to a layer's grid);
- its cost: :meth:`~FeatureNetwork.saved_bytes` (what autograd keeps in the forward pass),
  :meth:`~FeatureNetwork.parameter_count`, :meth:`~FeatureNetwork.multiply_adds`;
- where it came from: :attr:`~FeatureNetwork.spec` (a hashable :class:`NetworkSpec`),
  :attr:`~FeatureNetwork.random` (filters drawn from a seed rather than trained), :meth:`~FeatureNetwork.describe`,
  :attr:`~FeatureNetwork.device`.

Names and specs. ``"vgg19"``, ``"vgg16"``, ``"vgg13"``, ``"vgg11"`` (:mod:`nst_lessons.vgg`) are in
:data:`NETWORKS`, each mapped to the builder that makes it from a :class:`NetworkSpec`; another
module adds its own with :func:`register_network` or an entry ``"name": "module:function"`` in
:data:`NETWORKS` (imported only when that network is asked for; the CLI's ``--network`` offers every
entry). :func:`load_network` takes a name (``"vgg16"``, or ``"vgg16:random"`` with its weights), a
spec or an already built network; :func:`describe_network` builds one on the meta device (shapes,
layer names and defaults without weights or downloads), which is how ``style_transfer`` checks layer
names and masks and estimates memory before anything is loaded.

How the objective uses them (:class:`nst_lessons.transfer.Objective`): content terms read one
network, style terms the same or another; each network runs once per evaluation on the union of the
layers read from it (``Objective.uses``, ``{network: layers}``).

Refinements of INTERFACE.md's starting contract: ``downsample_mask(mask, layer)`` became
:meth:`~FeatureNetwork.layer_masks` ``(mask, layers) -> {layer: mask}`` (one walk for all layers, as
:func:`nst_lessons.masks.layer_masks` did); ``layer_shapes`` returns every layer up to the deepest one
asked for, in forward order (the memory estimate needs the layers in between); the memory hooks are
:meth:`~FeatureNetwork.saved_bytes` and :meth:`~FeatureNetwork.parameter_count` (and
:meth:`~FeatureNetwork.multiply_adds` for the benchmark's FLOP count); ``loss_weights`` is an attribute
set by the builder (it depends on the weights, not only the architecture); added: ``layer_index``,
``deepest``, ``title``, ``describe``, ``device``.
"""

from __future__ import annotations

import functools
import importlib
import itertools
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class NetworkSpec:
    """What a network is: architecture, weights, pooling and the seed of random filters. Hashable,
    so it serves as a cache key and goes into a run's settings record as it is.

    Attributes:
        arch: a name in :data:`NETWORKS` (``"vgg19"``, ``"vgg16"``, ...).
        weights: what the builder loads: for VGG ``"imagenet"``, ``"caffe"``, ``"random"`` or a
            checkpoint path; a random-by-design network ignores it.
        pooling: ``"max"`` or ``"avg"`` (a network without pooling ignores it).
        seed: the seed of random filters (``weights="random"``, or a random-by-design network).
    """

    arch: str = "vgg19"
    weights: str = "imagenet"
    pooling: str = "max"
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "weights", os.fspath(self.weights))

    @classmethod
    def parse(cls, text: str, **fields: object) -> NetworkSpec:
        """A spec from ``"NAME"`` or ``"NAME:WEIGHTS"`` (``"vgg16:random"``, ``"vgg19:/path/vgg19.pth"``),
        with any other fields given: ``parse("vgg16", weights="random")``; weights in the text win."""
        name, colon, weights = text.partition(":")
        if name not in NETWORKS:
            raise ValueError(f"unknown network {name!r}; expected one of {', '.join(NETWORKS)}")
        return cls(arch=name, **{**fields, **({"weights": weights} if colon else {})})  # type: ignore[arg-type]

    def with_(self, **fields: object) -> NetworkSpec:
        """A copy with some fields changed."""
        return replace(self, **fields)  # type: ignore[arg-type]


class FeatureNetwork(nn.Module):
    """The interface of a feature network (see the module docstring). Subclasses set the attributes
    in ``__init__`` and implement the methods that raise ``NotImplementedError`` here.

    Attributes:
        name: the architecture's name, ``spec.arch``.
        layers: every layer name in forward order.
        content_layers, style_layers: this network's default layers.
        loss_weights: the default (α, β, γ) for this network and its weights.
        random: True when the filters are drawn from a seed, not trained.
        spec: the :class:`NetworkSpec` it was built from.
        symmetric_gram: the style loss on this network takes the Gram's one-product backward
            (:func:`nst_lessons.losses.gram_matrix`); False keeps autograd's numbers bitwise.
    """

    name: str
    layers: tuple[str, ...]
    content_layers: tuple[str, ...]
    style_layers: tuple[str, ...]
    loss_weights: tuple[float, float, float]
    random: bool
    spec: NetworkSpec
    symmetric_gram: bool = False

    # ----------------------------------------------------------------- layers

    def layer_index(self, name: str) -> int:
        """Position of ``name`` in :attr:`layers`; a one-line ``ValueError`` naming the network for
        an unknown name."""
        try:
            return self.layers.index(name)
        except ValueError:
            raise ValueError(
                f"unknown {self.title} layer {name!r}; expected one of {', '.join(self.layers[:3])}, ..., {self.layers[-1]}"
            ) from None

    def deepest(self, layers: Iterable[str]) -> str:
        """The layer of ``layers`` furthest along the forward pass (``ValueError`` if none)."""
        names = list(layers)
        if not names:
            raise ValueError("no layers given")
        return max(names, key=self.layer_index)

    @property
    def device(self) -> torch.device:
        """Where the network's tensors are: its first parameter's device (or buffer's, for a network
        that keeps fixed filters as buffers)."""
        return next(itertools.chain(self.parameters(), self.buffers())).device

    @property
    def title(self) -> str:
        """The architecture as written in prose, e.g. ``"VGG-19"``."""
        return self.name

    def describe(self) -> str:
        """One line for figures and settings records: architecture, weights, pooling."""
        return f"{self.title} ({self.spec.weights} weights, {self.spec.pooling} pooling)"

    # ----------------------------------------------------------------- the maths

    def preprocess(self, image: Tensor) -> Tensor:
        """(B,3,H,W) RGB in [0,1] -> the network's input (B,3,H,W)."""
        raise NotImplementedError

    def extract(self, image: Tensor, layers: Iterable[str]) -> dict[str, Tensor]:
        """``{name: F}``, F (B,N_l,H_l,W_l), for ``image`` (B,3,H,W) in [0,1], preprocessing
        included; names in any order, repeats allowed; runs only as deep as needed."""
        raise NotImplementedError

    # ----------------------------------------------------------------- geometry and cost

    def layer_shapes(self, height: int, width: int, layers: Iterable[str]) -> dict[str, tuple[int, int, int]]:
        """``{name: (N_l, H_l, W_l)}`` of every layer from the first to the deepest of ``layers``,
        in forward order, for an input of height x width pixels."""
        raise NotImplementedError

    def layer_masks(self, mask: Tensor, layers: Iterable[str]) -> dict[str, Tensor]:
        """A region mask (B,1,H,W) carried down to each named layer's grid: ``{name: (B,1,H_l,W_l)}``,
        so that regions partitioning the image still partition every layer's positions."""
        raise NotImplementedError

    def saved_bytes(self, height: int, width: int, layers: Iterable[str], bytes_per_value: int) -> dict[str, int]:
        """Bytes of the tensors autograd keeps from the forward pass up to the deepest of ``layers``
        (feature maps stored ``bytes_per_value`` wide: 4 for float32, 2 under bf16 autocast), keyed
        by the tensor kept so that callers can add their own without counting one twice: a layer's
        name is its output."""
        raise NotImplementedError

    def parameter_count(self, layers: Iterable[str]) -> int:
        """Parameters of the layers up to the deepest of ``layers``."""
        raise NotImplementedError

    def multiply_adds(self, height: int, width: int, layers: Iterable[str]) -> int:
        """Multiply-adds of the forward pass up to the deepest of ``layers`` on one image of
        height x width (element-wise work not counted)."""
        raise NotImplementedError


Builder = Callable[..., FeatureNetwork]
"""``builder(spec, device=None, progress=True) -> FeatureNetwork``; ``device=torch.device("meta")``
builds the network's description only (shapes, no weights, nothing downloaded)."""

NETWORKS: dict[str, Builder | str] = {
    "vgg19": "nst_lessons.vgg:build",
    "vgg16": "nst_lessons.vgg:build",
    "vgg13": "nst_lessons.vgg:build",
    "vgg11": "nst_lessons.vgg:build",
    "multiscale": "nst_lessons.multiscale:build",
}
"""Every network by name: a builder, or ``"module:function"`` naming one (imported on first use)."""


def register_network(name: str, builder: Builder | str) -> None:
    """Make ``name`` a network that :func:`load_network`, ``style_transfer(network=...)`` and (if
    registered before the parser is built) the CLI's ``--network`` accept."""
    NETWORKS[name] = builder


def _builder(arch: str) -> Builder:
    if arch not in NETWORKS:
        raise ValueError(f"unknown network {arch!r}; expected one of {', '.join(NETWORKS)}")
    builder = NETWORKS[arch]
    if isinstance(builder, str):
        module, _, function = builder.partition(":")
        builder = NETWORKS[arch] = getattr(importlib.import_module(module), function)
    return builder


def as_spec(network: str | NetworkSpec, **fields: object) -> NetworkSpec:
    """A :class:`NetworkSpec` from ``"NAME[:WEIGHTS]"`` (with ``fields``) or a spec (``fields`` ignored)."""
    return network if isinstance(network, NetworkSpec) else NetworkSpec.parse(network, **fields)


def load_network(
    network: str | NetworkSpec | FeatureNetwork = "vgg19",
    device: str | torch.device | None = None,
    *,
    progress: bool = True,
    **fields: object,
) -> FeatureNetwork:
    """A network, built and with its weights: from a name (``fields`` fill the rest of its
    :class:`NetworkSpec`: ``weights``, ``pooling``, ``seed``), a spec, or one already built (returned
    as it is). ``device=None`` means CUDA when available; ``"meta"`` gives a weightless description
    (for the memory estimate before anything is loaded)."""
    if isinstance(network, FeatureNetwork):
        return network
    spec = as_spec(network, **fields)
    return _builder(spec.arch)(spec, device=device, progress=progress)


def describe_network(network: str | NetworkSpec | FeatureNetwork, **fields: object) -> FeatureNetwork:
    """The network's shapes and costs without its weights (on the meta device): cheap, offline, and
    made once per spec."""
    if isinstance(network, FeatureNetwork):
        return network
    return _described(as_spec(network, **fields))


@functools.lru_cache(maxsize=32)
def _described(spec: NetworkSpec) -> FeatureNetwork:
    return load_network(spec, torch.device("meta"), progress=False)


__all__ = [
    "NETWORKS",
    "FeatureNetwork",
    "NetworkSpec",
    "as_spec",
    "describe_network",
    "load_network",
    "register_network",
]
