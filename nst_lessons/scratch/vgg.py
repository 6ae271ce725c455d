"""VGG-19 in numpy, forward and backward, with the torch model's weights, float64.

The forward pass keeps exactly what the backward pass needs: a ReLU needs its input (the sign
mask), a max pooling its input (which element won each window); a convolution needs nothing but
its filters, because dL/dx of a convolution does not depend on x, and an average pooling only
its input's shape.  :meth:`NumpyVGG19.backward` then walks the layers from the deepest injected
gradient down to the image, adding each injected dL/dF_l as it passes layer l: that sum is the
chain rule for a loss built from several layers.

Layer names, the preprocessing constants and the state-dict layout are those of
:mod:`nst_lessons.vgg`, so a torch model converts with :meth:`NumpyVGG19.from_torch`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from nst_lessons.scratch.layers import (
    Array,
    avg_pool,
    avg_pool_backward,
    conv2d,
    conv2d_backward_input,
    max_pool,
    max_pool_backward,
    relu,
    relu_backward,
)
from nst_lessons.scratch.losses import INPUT
from nst_lessons.vgg import (
    CAFFE_MEAN_BGR,
    IMAGENET_MEAN,
    IMAGENET_STD,
    LAYERS,
    POOLING,
    PREPROCESSING,
    resolve_layer,
)


class NumpyVGG19:
    """The 37 layers of VGG-19's convolutional part, for one image (3, H, W).

    Attributes:
        params: ``{index in LAYERS: (w (K, C, 3, 3), b (K,))}`` for the 16 convolutions, float64.
        pooling: ``"max"`` or ``"avg"``.
        preprocessing: ``"imagenet"`` or ``"caffe"`` (see :meth:`preprocess`).
    """

    def __init__(
        self, state: Mapping[str, Array], pooling: str = "max", preprocessing: str = "imagenet"
    ) -> None:
        """Build from a state dict of numpy arrays in torchvision's layout (``features.N.weight``,
        ``features.N.bias``), as :meth:`nst_lessons.vgg.VGG19.state_dict` names them."""
        if pooling not in POOLING:
            raise ValueError(f"unknown pooling {pooling!r}; expected 'max' or 'avg'")
        if preprocessing not in PREPROCESSING:
            raise ValueError(f"unknown preprocessing {preprocessing!r}; expected 'imagenet' or 'caffe'")
        self.pooling = pooling
        self.preprocessing = preprocessing
        self.params: dict[int, tuple[Array, Array]] = {}
        for i, name in enumerate(LAYERS):
            if name.startswith("conv"):
                try:
                    w, b = state[f"features.{i}.weight"], state[f"features.{i}.bias"]
                except KeyError as missing:
                    raise ValueError(f"state dict has no {missing.args[0]} (layer {name})") from None
                self.params[i] = (np.asarray(w, dtype=np.float64), np.asarray(b, dtype=np.float64))
        self._saved: dict[int, Array] = {}  # forward inputs the backward pass needs, by layer index
        self._shapes: list[tuple[int, ...]] = []  # output shape of each layer run, by index
        self._input_shape: tuple[int, ...] = ()

    @classmethod
    def from_torch(cls, model: Any) -> NumpyVGG19:
        """Copy a :class:`nst_lessons.vgg.VGG19`'s weights, pooling and preprocessing (any device)."""
        state = {k: v.detach().cpu().double().numpy() for k, v in model.state_dict().items()}
        return cls(state, pooling=model.pooling, preprocessing=model.preprocessing)

    # ----------------------------------------------------------------- preprocessing

    def preprocess(self, x: Array) -> Array:
        """RGB in [0,1], (3, H, W) -> the network's input: (x - mean) / std for "imagenet",
        BGR * 255 - mean for "caffe"."""
        if self.preprocessing == "imagenet":
            return (x - np.reshape(IMAGENET_MEAN, (3, 1, 1))) / np.reshape(IMAGENET_STD, (3, 1, 1))
        return x[::-1] * 255.0 - np.reshape(CAFFE_MEAN_BGR, (3, 1, 1))

    def preprocess_backward(self, dh: Array) -> Array:
        """dL/dx from dL/dh through the preprocessing: an affine map per channel, so its Jacobian
        is diagonal (1/std, or 255 with the channel order reversed back to RGB)."""
        if self.preprocessing == "imagenet":
            return dh / np.reshape(IMAGENET_STD, (3, 1, 1))
        return dh[::-1] * 255.0

    # ----------------------------------------------------------------- passes

    def forward(self, x: Array, layers: Iterable[str]) -> dict[str, Array]:
        """Feature maps of the image x at the named layers.

        Args:
            x: RGB in [0,1], shape (3, H, W); preprocessing is applied here.
            layers: names from :data:`nst_lessons.vgg.LAYERS`, any order, repeats allowed.

        Returns:
            ``{name: F}`` with F of shape (N_l, H_l, W_l).  The network runs only as deep as the
            deepest requested layer, and remembers what :meth:`backward` needs.
        """
        wanted = {resolve_layer(name): name for name in layers}
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 3 or x.shape[0] != 3:
            raise ValueError(f"expected an RGB image of shape (3,H,W), got {x.shape}")
        self._saved, self._shapes = {}, []
        out: dict[str, Array] = {}
        h = self.preprocess(x)
        for i in range(max(wanted, default=-1) + 1):
            kind = LAYERS[i][:4]
            if kind == "conv":
                h = conv2d(h, *self.params[i])
            elif kind == "relu":
                self._saved[i] = h
                h = relu(h)
            elif self.pooling == "max":
                self._saved[i] = h
                h = max_pool(h)
            else:
                self._saved[i] = np.broadcast_to(0.0, h.shape)  # only the shape matters: no memory
                h = avg_pool(h)
            self._shapes.append(h.shape)
            if i in wanted:
                out[wanted[i]] = h
        self._input_shape = x.shape
        return out

    def backward(self, grads: Mapping[str, Array]) -> Array:
        """dL/dx for the image of the last :meth:`forward`, given dL/dF_l at some of its layers.

        Args:
            grads: ``{name: dF_l}``, each of that layer's output shape (N_l, H_l, W_l): for a
                ``conv*`` name the pre-activation, ``relu*`` the rectified map, ``pool*`` the
                pooled map.  Names must be no deeper than the last forward pass went.  The key
                :data:`nst_lessons.scratch.losses.INPUT` may carry a gradient with respect to the
                image itself (3, H, W), e.g. a TV term's; it is added at the end.

        Returns:
            dL/dx, shape (3, H, W), with respect to the RGB image in [0,1].
        """
        injected: dict[int, Array] = {}
        for name, dF in grads.items():
            if name == INPUT:
                continue
            i = resolve_layer(name)
            if i >= len(self._shapes):
                raise ValueError(f"no forward pass reached {name}: run forward with it first")
            if np.shape(dF) != self._shapes[i]:
                raise ValueError(f"gradient for {name} has shape {np.shape(dF)}, expected {self._shapes[i]}")
            injected[i] = np.asarray(dF, dtype=np.float64)
        if not injected:
            raise ValueError("backward needs a gradient at one layer at least")
        top = max(injected)
        d = np.zeros(self._shapes[top])
        for i in range(top, -1, -1):
            if i in injected:
                d = d + injected[i]
            d = self._layer_backward(i, d)
        dx = self.preprocess_backward(d)
        if INPUT in grads:
            if np.shape(grads[INPUT]) != self._input_shape:
                raise ValueError(
                    f"gradient for {INPUT!r} has shape {np.shape(grads[INPUT])}, expected {self._input_shape}"
                )
            dx = dx + grads[INPUT]
        return dx

    def _layer_backward(self, i: int, d: Array) -> Array:
        """dL/d(input of layer i) from dL/d(output of layer i)."""
        kind = LAYERS[i][:4]
        if kind == "conv":
            return conv2d_backward_input(d, self.params[i][0])
        if kind == "relu":
            return relu_backward(d, self._saved[i])
        if self.pooling == "max":
            return max_pool_backward(d, self._saved[i])
        return avg_pool_backward(d, self._saved[i])


__all__ = ["NumpyVGG19"]
