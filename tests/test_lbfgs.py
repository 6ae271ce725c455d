"""The device-resident L-BFGS against torch.optim.LBFGS, and the sync-free iteration built on it."""

from __future__ import annotations

import math

import pytest
import torch

from nst_lessons import transfer
from nst_lessons.data import example_path
from nst_lessons.lbfgs import LBFGS
from nst_lessons.transfer import CONTENT_LAYERS, STYLE_LAYERS, Objective, Tracker, iteration, style_transfer
from nst_lessons.vgg import VGG19

pytestmark = [pytest.mark.filterwarnings("ignore::nst_lessons.vgg.RandomWeightsWarning"), pytest.mark.usefixtures("one_thread")]


def torch_iterates(f, x0: torch.Tensor, m: int, steps: int) -> tuple[list[torch.Tensor], list[int]]:  # noqa: ANN001
    """x after each step of torch.optim.LBFGS as style_transfer used to run it, and its history length."""
    x = x0.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([x], lr=1, max_iter=1, history_size=m, tolerance_grad=-1, tolerance_change=-1)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = f(x)
        loss.backward()
        return loss

    xs, lengths = [], []
    for _ in range(steps):
        opt.step(closure)
        xs.append(x.detach().clone())
        lengths.append(len(opt.state[x].get("old_dirs", [])))
    return xs, lengths


def device_iterates(f, x0: torch.Tensor, m: int, steps: int) -> tuple[list[torch.Tensor], list[int]]:  # noqa: ANN001
    x = x0.clone().requires_grad_(True)
    opt = LBFGS(x.numel(), m, dtype=x.dtype)
    xs, lengths = [], []
    for _ in range(steps):
        (g,) = torch.autograd.grad(f(x), x)
        opt.step(x.detach(), g)
        xs.append(x.detach().clone())
        lengths.append(int(opt.count))
    return xs, lengths


N = 40
_g = torch.Generator().manual_seed(0)
_Q = torch.randn(N, N, generator=_g, dtype=torch.float64)
A = _Q @ _Q.T / N + 0.1 * torch.eye(N, dtype=torch.float64)
B = torch.randn(N, generator=_g, dtype=torch.float64)
X0 = torch.randn(N, generator=_g, dtype=torch.float64)


def quadratic(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x @ A @ x - B @ x


def concave_start(x: torch.Tensor) -> torch.Tensor:
    """Non-convex, and concave near 0.3 * X0: early steps fail the curvature test s.y > 1e-10."""
    return torch.cos(x).sum() + 0.05 * x.pow(4).sum()


@pytest.mark.parametrize("f, x0", [(quadratic, X0), (concave_start, 0.3 * X0)], ids=["quadratic", "non-convex"])
@pytest.mark.parametrize("m", [3, 10])
def test_iterates_match_torch(f, x0: torch.Tensor, m: int) -> None:  # noqa: ANN001
    expected, torch_lengths = torch_iterates(f, x0, m, 20)
    got, lengths = device_iterates(f, x0, m, 20)
    assert lengths == torch_lengths and max(lengths) == m  # the ring buffer fills and wraps
    for e, g in zip(expected, got):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-12)
    if f is concave_start:  # pairs were dropped, at the same steps as torch dropped them
        assert any(b == a < m for a, b in zip(lengths, lengths[1:]))


def test_iterates_match_torch_on_style_transfer() -> None:
    """In float64 the two runs agree to rounding; float32 runs part ways after a few iterations
    (L-BFGS amplifies rounding), so they are compared only at the start."""
    content, style = example_path("strokes"), example_path("waves")
    options = dict(size=32, network="vgg19:random", device="cpu", progress=False, history_size=3)
    ours = style_transfer(content, style, iterations=6, dtype=torch.float64, **options)
    torchs = style_transfer(content, style, iterations=6, dtype=torch.float64, optimizer="torch-lbfgs", **options)
    torch.testing.assert_close(ours.tensor, torchs.tensor, rtol=0, atol=1e-9)
    ours = style_transfer(content, style, iterations=3, **options)
    torchs = style_transfer(content, style, iterations=3, optimizer="torch-lbfgs", **options)
    assert [h["total"] for h in ours.history] == pytest.approx([h["total"] for h in torchs.history], rel=1e-4)


def test_state_is_updated_in_place() -> None:
    """A CUDA graph replays the memory it captured: every state tensor must stay the same tensor."""
    opt = LBFGS(N, 3, dtype=torch.float64)
    x = X0.clone()
    before = {k: (v, v.data_ptr()) for k, v in vars(opt).items() if isinstance(v, torch.Tensor)}
    for _ in range(6):
        opt.step(x, A @ x - B)
    after = {k: v for k, v in vars(opt).items() if isinstance(v, torch.Tensor)}
    assert after.keys() == before.keys()
    for name, (tensor, pointer) in before.items():
        assert after[name] is tensor and tensor.data_ptr() == pointer, name
    assert int(opt.iteration) == 6 and int(opt.count) == 3


def test_an_iteration_never_reads_a_value_back() -> None:
    """On the meta device tensors hold no values, so any host sync (item(), a tensor in an if,
    indexing with a 0-dim tensor) raises. One whole iteration must run there."""
    model = VGG19().to("meta")
    image = torch.rand(1, 3, 32, 32, device="meta")
    objective = Objective(model, image, image, CONTENT_LAYERS, {n: 0.2 for n in STYLE_LAYERS}, 1.0, 1e8, 1.0, channels_last=True)
    x = image.clone().requires_grad_(True)
    iterate = iteration(objective, x, Tracker(x, 3), "lbfgs", history_size=2)
    iterate()
    iterate()
    with pytest.raises(RuntimeError, match="meta"):  # torch.optim.LBFGS reads the loss back
        iteration(objective, x, Tracker(x, 3), "torch-lbfgs")()


def test_history_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="history_size"):
        LBFGS(4, 0)


def test_a_late_read_still_names_the_first_non_finite_iteration(monkeypatch: pytest.MonkeyPatch) -> None:
    """Losses are read back only now and then (on a GPU); a NaN is still reported where it began."""
    monkeypatch.setattr(transfer, "SYNC_SECONDS", math.inf)  # read only after the last iteration
    calls = {"n": 0}
    evaluate = Objective.__call__

    def poisoned(self, x):  # noqa: ANN001, ANN202
        calls["n"] += 1
        record = evaluate(self, x)
        return record * float("nan") if calls["n"] >= 4 else record

    monkeypatch.setattr(Objective, "__call__", poisoned)
    with pytest.warns(RuntimeWarning, match="the loss became nan at iteration 4"):
        result = style_transfer(
            example_path("strokes"), example_path("waves"), size=32, iterations=6, network="vgg19:random",
            device="cpu", progress=False,
        )  # fmt: skip
    assert calls["n"] == 6 and result.iterations == 3 and len(result.history) == 4
    assert math.isfinite(result.best_loss) and torch.isfinite(result.tensor).all()
