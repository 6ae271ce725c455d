"""Argument types and option groups shared by the ``nst-lessons`` subcommands.

Each type parses one command-line value or raises :class:`argparse.ArgumentTypeError`, which the
command reports as one line. The groups add the options that ``transfer``, ``video`` and
``style-space`` have in common, with one spelling and one help text; :func:`network_spec` and
:func:`style_network_spec` turn the network options into :class:`~nst_lessons.networks.NetworkSpec`.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path

import torch

from nst_lessons.networks import NETWORKS, NetworkSpec
from nst_lessons.vgg import POOLING, WEIGHTS


def int_at_least(minimum: int) -> Callable[[str], int]:
    """A parser of whole numbers >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def positive(text: str) -> float:
    value = non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


def seed(text: str) -> int:
    value = int_at_least(0)(text)
    if value >= 2**63:
        raise argparse.ArgumentTypeError(f"must be below 2**63, got {text}")
    return value


def weights(text: str) -> str:
    if text in WEIGHTS or Path(text).is_file():
        return text
    raise argparse.ArgumentTypeError(f"unknown weights {text!r}; expected {', '.join(WEIGHTS)} or a checkpoint file")


def device(text: str) -> torch.device:
    try:
        parsed = torch.device(text)
    except RuntimeError:
        parsed = torch.device("meta")
    if parsed.type not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"unknown device {text!r}; expected cpu, cuda or cuda:N")
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError("CUDA was asked for but no CUDA GPU is available to torch")
    if parsed.type == "cuda" and (parsed.index or 0) >= torch.cuda.device_count():
        raise argparse.ArgumentTypeError(f"there is no {text}: torch sees {torch.cuda.device_count()} GPU(s)")
    return parsed


def style_network_option(text: str) -> tuple[str, str | None]:
    """``NAME`` or ``NAME:WEIGHTS`` (``vgg16``, ``vgg16:random``, ``vgg19:/path/vgg19.pth``)."""
    name, _, given = text.partition(":")
    if name not in NETWORKS:
        raise argparse.ArgumentTypeError(f"unknown network {name!r}; expected one of {', '.join(NETWORKS)}")
    return name, weights(given) if given else None


def add_network_arguments(p: argparse.ArgumentParser, seed_help: str | None = None, style_network: bool = True) -> None:
    """``--network``, ``--style-network`` (unless ``style_network`` is false), ``--weights``,
    ``--pooling``, ``--device`` and, given its help text, ``--seed``. Networks registered
    (:func:`nst_lessons.networks.register_network`) before the parser is built are offered."""
    p.add_argument(
        "--network",
        choices=tuple(NETWORKS),
        default="vgg19",
        help="the feature network: " + ", ".join(NETWORKS) + " (default vgg19); its default layers and weights "
        "alpha, beta, gamma come with it (see the README's weights table)",
    )
    if style_network:
        p.add_argument(
            "--style-network",
            type=style_network_option,
            metavar="NAME[:WEIGHTS]",
            help="read the style from another network than the content, e.g. vgg16 or vgg16:random "
            "(its weights default to --weights when that is a name, else imagenet)",
        )
    p.add_argument(
        "--weights",
        type=weights,
        default="imagenet",
        help="the network's weights: imagenet, caffe (vgg16, vgg19), random (offline; not the paper's look) "
        "or a checkpoint file in torchvision's layout (default imagenet)",
    )
    p.add_argument("--pooling", choices=POOLING, default="max", help="default max; the paper uses avg")
    p.add_argument("--device", type=device, help="cpu, cuda or cuda:N (default: cuda when available)")
    if seed_help is not None:
        p.add_argument("--seed", type=seed, help=seed_help)


def network_spec(args: argparse.Namespace) -> NetworkSpec:
    """The content network of the parsed options: ``--network``, ``--weights``, ``--pooling``, ``--seed``."""
    return NetworkSpec(args.network, args.weights, args.pooling, getattr(args, "seed", None) or 0)


def style_network_spec(args: argparse.Namespace) -> NetworkSpec | None:
    """The style network of ``--style-network NAME[:WEIGHTS]`` (``--pooling`` and ``--seed`` as for
    the content network), or ``None`` for the same network."""
    if getattr(args, "style_network", None) is None:
        return None
    name, given = args.style_network
    default = args.weights if args.weights in WEIGHTS else "imagenet"
    return NetworkSpec(name, given or default, args.pooling, getattr(args, "seed", None) or 0)


def add_loss_weight_arguments(p: argparse.ArgumentParser) -> None:
    """``--content-weight``, ``--style-weight`` and ``--tv-weight``: α, β and γ."""
    p.add_argument("--content-weight", type=non_negative, help="alpha (default depends on --network and --weights)")
    p.add_argument("--style-weight", type=non_negative, help="beta (default depends on the style network and its weights)")
    p.add_argument("--tv-weight", type=non_negative, help="gamma, total variation (default depends on --network and --weights)")
