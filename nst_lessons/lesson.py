"""What the lesson notebooks share: how big and how long to run, and which network (VGG-19 by default) to use.

Three modes, chosen automatically:

- ``"fast"``: the environment variable ``NST_LESSONS_FAST=1`` is set (the test suite and CI run the
  notebooks this way): tiny images, a handful of iterations, random weights, no network access;
- ``"gpu"``: CUDA is available: the paper's sizes (512 px) and hundreds of L-BFGS iterations;
- ``"cpu"``: otherwise: smaller images and fewer iterations, so a notebook finishes in minutes.

:func:`load_model` tries the real ImageNet weights (downloaded once, about 550 MB) and falls back
to random weights when they cannot be had, saying so in a banner that no one can miss.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass
from html import escape

import torch
from PIL import Image

from nst_lessons.data import CLASSICS, example_path
from nst_lessons.images import ImageError, load_image
from nst_lessons.networks import FeatureNetwork, NetworkSpec, load_network
from nst_lessons.vgg import RandomWeightsWarning, WeightsError, default_device

FAST_ENV = "NST_LESSONS_FAST"
"""Set this environment variable to ``1`` for the fast mode."""

MODES = ("fast", "cpu", "gpu")


def fast_mode() -> bool:
    """True when ``NST_LESSONS_FAST=1``; read on every call, so tests can switch it."""
    return os.environ.get(FAST_ENV) == "1"


@dataclass(frozen=True)
class Settings:
    """Sizes and iteration counts for one mode.

    Attributes:
        mode: ``"fast"``, ``"cpu"`` or ``"gpu"``.
        device: where the network runs.
        size: long side in pixels of a notebook's main images and style transfers.
        iterations: L-BFGS iterations of a main run.
        small_size: long side for runs repeated many times (reconstructions, grids).
        small_iterations: iterations of those runs.
        scratch_size: long side for the pure-numpy network (notebook 06), which is slow.
        scratch_iterations: L-BFGS-B iterations of the numpy style transfer.
    """

    mode: str
    device: torch.device
    size: int
    iterations: int
    small_size: int
    small_iterations: int
    scratch_size: int
    scratch_iterations: int


# Long sides; the example photo is 512x600, so its short side is 85% of these, and images need
# at least 32 px a side (at 32 px relu5_1 is 2x2 and its Gram matrix says little).
_PRESETS: dict[str, dict[str, int]] = {
    "fast": dict(size=64, iterations=8, small_size=48, small_iterations=4, scratch_size=40, scratch_iterations=3),
    "cpu": dict(size=256, iterations=200, small_size=128, small_iterations=100, scratch_size=64, scratch_iterations=60),
    "gpu": dict(
        size=512, iterations=500, small_size=256, small_iterations=300, scratch_size=64, scratch_iterations=100
    ),
}


def settings(device: str | torch.device | None = None) -> Settings:
    """The settings for this machine: fast mode if ``NST_LESSONS_FAST=1``, else GPU or CPU.

    Args:
        device: force a device; ``None`` means CUDA when available, else the CPU. Fast mode
            always runs on the CPU, so that tests behave the same everywhere.
    """
    if fast_mode():
        mode, dev = "fast", torch.device("cpu")
    else:
        dev = default_device(device)
        mode = "gpu" if dev.type == "cuda" else "cpu"
    return Settings(mode=mode, device=dev, **_PRESETS[mode])


def setup(cpu: str, gpu: str, seed: int = 0) -> Settings:
    """A notebook's first call: seed torch, print the mode and how long the notebook takes.

    Args:
        cpu: expected run time on a laptop CPU, e.g. ``"about 10 minutes"``.
        gpu: expected run time on a recent GPU.
        seed: torch's global seed, so reruns give the same pictures.

    Returns:
        The :class:`Settings` of this machine.
    """
    torch.manual_seed(seed)
    s = settings()
    print(f"Expected run time: {cpu} on a CPU, {gpu} on a GPU.")
    if s.mode == "fast":
        print(f"Fast test mode ({FAST_ENV}=1): tiny images, few iterations, random weights; seconds, not minutes.")
    else:
        print(f"Running on {s.device} ({s.mode} mode).")
    print(
        f"Images {s.size} px, {s.iterations} iterations per main run; "
        f"{s.small_size} px, {s.small_iterations} iterations for repeated runs."
    )
    return s


# --------------------------------------------------------------------------- weights

_MODELS: dict[tuple[NetworkSpec, str], tuple[FeatureNetwork, str]] = {}
"""Loaded models by (spec asked for, device), with why their weights are random ("" if not)."""


def load_model(
    pooling: str = "max", weights: str | None = None, device: str | torch.device | None = None, network: str = "vgg19"
) -> FeatureNetwork:
    """A network (default VGG-19) for a notebook: the real weights when they can be had, random ones otherwise.

    In fast mode the weights are random without any network access. Otherwise ``weights``
    (default ``"imagenet"``) is loaded, downloading once; if that fails (offline, say), random
    weights are used. Whenever the weights are random a banner says so in the notebook.
    Models are cached, so calling this in several cells costs nothing.

    Args:
        pooling: ``"max"`` or ``"avg"``.
        weights: ``"imagenet"``, ``"caffe"``, ``"random"`` or a checkpoint path; ``None`` picks
            ``"random"`` in fast mode and ``"imagenet"`` otherwise.
        device: ``None`` takes the device of :func:`settings`.
        network: a name in :data:`nst_lessons.networks.NETWORKS`.
    """
    s = settings(device)
    wanted = NetworkSpec(network, weights or ("random" if s.mode == "fast" else "imagenet"), pooling)
    key = (wanted, str(s.device))
    if key not in _MODELS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RandomWeightsWarning)  # the banner below says it louder
            try:
                model = load_network(wanted, s.device)
                reason = "fast test mode" if s.mode == "fast" else "weights='random' was asked for"
            except WeightsError as error:
                model, reason = load_network(wanted.with_(weights="random"), s.device), str(error)
        _MODELS[key] = (model, reason if is_random(model) else "")
    model, reason = _MODELS[key]
    if is_random(model):
        random_weights_banner(reason, model.title)
    return model


def is_random(model: FeatureNetwork) -> bool:
    """True when ``model`` is a network meant to be trained whose weights are random: what the red
    band warns about. The multi-scale network's filters are random by design (it is what it is
    meant to be, and makes real textures), so it gets no band, only its name under the figure."""
    return model.random and model.name != "multiscale"


def style_model(pooling: str = "max") -> FeatureNetwork:
    """The network for figures whose point is texture or style: VGG-19 with its trained weights
    when they can be had; otherwise (offline, fast mode) the random multi-scale network
    (:mod:`nst_lessons.multiscale`), which makes recognisable textures without any training
    (notebook 12). Says in one line which one it is."""
    s = settings()
    trained = NetworkSpec("vgg19", "imagenet", pooling)
    key = (trained, f"style figures on {s.device}")  # cached apart from load_model's, failures too
    if key not in _MODELS:
        model = None
        if s.mode != "fast":
            with contextlib.suppress(WeightsError):
                model = load_network(trained, s.device)
        _MODELS[key] = (model or load_network("multiscale", s.device), "")
    model = _MODELS[key][0]
    print(f"Texture and style figures use {model.describe()}.")
    return model


def _real_weights_advice() -> str:
    """How to get the real weights from here: fast mode never loads them, whatever the network."""
    if fast_mode():
        return f"Unset {FAST_ENV} and rerun, with internet access the first time, for the real weights."
    return "Rerun with internet access to download the real weights once."


def random_weights_banner(reason: str = "", title: str = "VGG-19") -> None:
    """Show, in red, that the images that follow come from an untrained network (``title``).

    In a notebook this is an HTML box; elsewhere the same words are printed.
    """
    text = (
        f"RANDOM WEIGHTS: this {title} is untrained"
        + (f" ({reason})" if reason else "")
        + ". The images below show the mechanics only and do NOT look like what neural style "
        f"transfer produces. {_real_weights_advice()}"
    )
    try:
        from IPython import get_ipython
        from IPython.display import HTML, display
    except ImportError:  # IPython is a dependency of jupyterlab, but the package can run without it
        print(text)
        return
    if get_ipython() is None:
        print(text)
        return
    display(
        HTML(
            '<div style="border:3px solid #c00;background:#fee;color:#900;padding:8px 12px;'
            f'font-weight:bold;font-size:110%">{escape(text)}</div>'
        )
    )


# --------------------------------------------------------------------------- images


def example(name: str, size: int | None = None) -> Image.Image:
    """An example image by name (see :mod:`nst_lessons.data`), its long side resized to ``size``.

    Raises:
        ImageError: a downloadable classic that cannot be downloaded.
    """
    return load_image(example_path(name, progress=False), size)


def first_example(*names: str, size: int | None = None) -> tuple[str, Image.Image]:
    """The first of ``names`` that can be had, and its name: a downloadable classic is skipped in
    fast mode or when it cannot be downloaded, so end the list with an offline example.

    Raises:
        ImageError: none of them could be had.
    """
    for name in names:
        if name in CLASSICS and fast_mode():
            continue
        try:
            return name, example(name, size)
        except ImageError:
            continue
    raise ImageError(f"none of the examples {', '.join(names)} could be had")


def classics(size: int | None = None) -> dict[str, Image.Image]:
    """The downloadable classics that can be had: none in fast mode or offline.

    Stops at the first failed download (offline, most likely) and says so.
    """
    found: dict[str, Image.Image] = {}
    if fast_mode():
        return found
    for name in CLASSICS:
        try:
            found[name] = example(name, size)
        except ImageError as error:
            print(f"Skipping the downloadable classics: {error}")
            break
    return found


__all__ = [
    "FAST_ENV",
    "MODES",
    "Settings",
    "classics",
    "example",
    "fast_mode",
    "first_example",
    "is_random",
    "load_model",
    "random_weights_banner",
    "settings",
    "setup",
]
