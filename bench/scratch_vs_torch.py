"""Time VGG-19 forward + backward to the image, numpy (nst_lessons.scratch) against torch, on the CPU
in float64.

The pass runs from the image to relu5_1, the deepest layer the default style transfer reads, and
back: dL/dx for L = sum(relu5_1 * R) with a fixed random R, the same gradient for both.  Weights
are random (the timing does not depend on their values).  Run:  python bench/scratch_vs_torch.py
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch

from nst_lessons.gradcheck import rel_error
from nst_lessons.scratch.vgg import NumpyVGG19
from nst_lessons.vgg import RandomWeightsWarning, load_vgg19

LAYER = "relu5_1"


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``repeats`` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomWeightsWarning)
        model = load_vgg19("random", device="cpu").double()
    net = NumpyVGG19.from_torch(model)
    rng = np.random.default_rng(0)
    print(
        f"VGG-19 forward + backward to the image, deepest layer {LAYER}, float64, CPU, "
        f"torch {torch.__version__} with {torch.get_num_threads()} threads, median of {args.repeats}"
    )
    print(f"{'size':>6} {'numpy (s)':>10} {'torch (s)':>10} {'numpy/torch':>12} {'dL/dx rel err':>14}")
    for size in args.sizes:
        x = rng.uniform(0.0, 1.0, (3, size, size))
        R = rng.standard_normal((512, size // 16, size // 16))

        def numpy_pass() -> np.ndarray:
            net.forward(x, [LAYER])
            return net.backward({LAYER: R})

        x_t = torch.from_numpy(x)[None].requires_grad_(True)
        R_t = torch.from_numpy(R)[None]

        def torch_pass() -> torch.Tensor:
            x_t.grad = None
            (model.extract(x_t, [LAYER])[LAYER] * R_t).sum().backward()
            return x_t.grad

        error = rel_error(numpy_pass(), torch_pass()[0].numpy())  # timing two different sums is no use
        np_s = median_seconds(numpy_pass, args.repeats)
        torch_s = median_seconds(torch_pass, args.repeats)
        print(f"{size:>6} {np_s:>10.3f} {torch_s:>10.3f} {np_s / torch_s:>12.2f} {error:>14.1e}")


if __name__ == "__main__":
    main()
