"""Neural style transfer from scratch in numpy: VGG-19's layers, the paper's losses and every
gradient derived by hand, checked against torch autograd in the tests (float64 throughout).

- :mod:`~nst_lessons.scratch.layers`: conv 3x3, ReLU, 2x2 max/avg pooling, forward and backward.
- :mod:`~nst_lessons.scratch.losses`: content, Gram/style, TV and total losses with dL/dF.
- :mod:`~nst_lessons.scratch.vgg`: :class:`NumpyVGG19`, the network with a backward pass.
- :mod:`~nst_lessons.scratch.transfer`: :func:`style_transfer_numpy`, L-BFGS-B with scipy.
"""

from nst_lessons.scratch.losses import (
    INPUT,
    content_loss,
    gram_matrix,
    style_layer_loss,
    style_loss,
    total_loss,
    tv_loss,
)
from nst_lessons.scratch.transfer import LossRecord, NumpyTransferResult, style_transfer_numpy
from nst_lessons.scratch.vgg import NumpyVGG19

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
