"""Argument types and option groups shared by the ``nst-lessons`` subcommands.

Each type parses one command-line value or raises :class:`argparse.ArgumentTypeError`, which the
command reports as one line. The groups add the options that ``transfer``, ``video`` and
``style-space`` have in common, with one spelling and one help text.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path

import torch

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


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def non_negative(text: str) -> float:
    value = _number(text)
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def positive(text: str) -> float:
    value = _number(text)
    if not (value > 0 and math.isfinite(value)):  # one message for 0, -1 and nan alike
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
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


def add_network_arguments(p: argparse.ArgumentParser, seed_help: str | None = None) -> None:
    """``--weights``, ``--pooling``, ``--device`` and, given its help text, ``--seed``."""
    p.add_argument(
        "--weights",
        type=weights,
        default="imagenet",
        help="VGG-19 weights: imagenet, caffe, random (offline; not the paper's look) or a checkpoint file (default imagenet)",
    )
    p.add_argument("--pooling", choices=POOLING, default="max", help="default max; the paper uses avg")
    p.add_argument("--device", type=device, help="cpu, cuda or cuda:N (default: cuda when available)")
    if seed_help is not None:
        p.add_argument("--seed", type=seed, help=seed_help)


def add_loss_weight_arguments(p: argparse.ArgumentParser) -> None:
    """``--content-weight``, ``--style-weight`` and ``--tv-weight``: α, β and γ."""
    p.add_argument("--content-weight", type=non_negative, help="alpha (default depends on --weights)")
    p.add_argument("--style-weight", type=non_negative, help="beta (default depends on --weights)")
    p.add_argument("--tv-weight", type=non_negative, help="gamma, total variation (default depends on --weights)")
