"""Neural style transfer from scratch in numpy: VGG-19's layers, the paper's losses and every
gradient derived by hand, checked against torch autograd in the tests (float64 throughout).

- :mod:`~nst_lessons.scratch.layers`: conv 3x3, ReLU, 2x2 max/avg pooling, forward and backward.
- :mod:`~nst_lessons.scratch.losses`: content, Gram/style, TV and total losses with dL/dF.
- :mod:`~nst_lessons.scratch.vgg`: :class:`NumpyVGG19`, the network with a backward pass.
- :mod:`~nst_lessons.scratch.transfer`: :func:`style_transfer_numpy`, L-BFGS-B with scipy.
"""

import importlib
from typing import Any

from nst_lessons.scratch.losses import (
    INPUT,
    content_loss,
    gram_matrix,
    style_layer_loss,
    style_loss,
    total_loss,
    tv_loss,
)

# The network and the transfer take the layer names from nst_lessons.vgg, which imports torch (2-3 s):
# loaded on first use, so that the losses and layers (the exercises' references) import in numpy alone.
_LAZY = {"NumpyVGG19": "vgg", "LossRecord": "transfer", "NumpyTransferResult": "transfer", "style_transfer_numpy": "transfer"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"nst_lessons.scratch.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "INPUT",
    "LossRecord",
    "NumpyTransferResult",
    "NumpyVGG19",
    "content_loss",
    "gram_matrix",
    "style_layer_loss",
    "style_loss",
    "style_transfer_numpy",
    "total_loss",
    "tv_loss",
]
