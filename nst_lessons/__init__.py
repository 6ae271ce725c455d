"""nst_lessons: neural style transfer (Gatys, Ecker & Bethge, 2015) from first principles.

    from nst_lessons import style_transfer, load_vgg19, load_image

The package's face: those three are imported on first use (``import nst_lessons`` alone stays
light, without torch), from :mod:`nst_lessons.transfer`, :mod:`nst_lessons.vgg` and
:mod:`nst_lessons.images`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_EXPORTS = {"style_transfer": "nst_lessons.transfer", "load_vgg19": "nst_lessons.vgg", "load_image": "nst_lessons.images"}

if TYPE_CHECKING:
    from nst_lessons.images import load_image
    from nst_lessons.transfer import style_transfer
    from nst_lessons.vgg import load_vgg19


def __getattr__(name: str) -> object:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'nst_lessons' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = ["load_image", "load_vgg19", "style_transfer"]
