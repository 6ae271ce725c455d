"""style_transfer end to end on CPU with random weights."""

from __future__ import annotations

import warnings

import pytest
import torch
from PIL import Image

from nst_lessons import transfer
from nst_lessons.data import example_path
from nst_lessons.images import load_image, to_tensor
from nst_lessons.transfer import TransferState, style_transfer
from nst_lessons.vgg import load_vgg19

pytestmark = pytest.mark.filterwarnings("ignore::nst_lessons.vgg.RandomWeightsWarning")


@pytest.fixture(scope="module")
def content() -> Image.Image:
    return load_image(example_path("grace_hopper"), size=64)


@pytest.fixture(scope="module")
def style() -> Image.Image:
    return load_image(example_path("strokes"), size=96)


def run(content, style, **kwargs):  # noqa: ANN001, ANN003, ANN201
    options = dict(size=64, iterations=10, network="vgg19:random", device="cpu", progress=False)
    return style_transfer(content, style, **{**options, **kwargs})


def test_lbfgs_lowers_the_loss_and_keeps_the_best_image(content, style) -> None:  # noqa: ANN001
    result = run(content, style, iterations=20)
    totals = [h["total"] for h in result.history]
    assert result.iterations == 20 and result.stopped is None
    assert totals[-1] < 0.2 * totals[0]
    assert result.best_loss == min(totals)
    assert result.image.size == content.size and result.tensor.shape == (1, 3, 64, 55)
    for h in result.history:
        assert h["total"] == pytest.approx(h["content"] + h["style"] + h["tv"], rel=1e-5)
    assert [h["seconds"] for h in result.history] == sorted(h["seconds"] for h in result.history)
    assert result.settings["weights"] == "random" and result.settings["style_weight"] == 1e8


def test_returned_image_is_the_best_candidate(content, style) -> None:  # noqa: ANN001
    result = run(content, style, iterations=5, tv_weight=0.0)
    model = load_vgg19("random", device="cpu")
    p, a = to_tensor(content), to_tensor(load_image(style, 64))
    objective = transfer.Objective(model, p, a, transfer.CONTENT_LAYERS, {n: 0.2 for n in transfer.STYLE_LAYERS}, 1.0, 1e8, 0.0)
    x = result.tensor.clone().requires_grad_(True)
    # The clamped best image scores about the best recorded loss (8-bit rounding aside).
    assert objective(x)[0].item() == pytest.approx(result.best_loss, rel=0.05)


def test_adam_and_inits(content, style) -> None:  # noqa: ANN001
    adam = run(content, style, optimizer="adam", iterations=5)
    assert len(adam.history) == 5
    a = run(content, style, init="noise", seed=1, iterations=1)
    b = run(content, style, init="noise", seed=1, iterations=1)
    c = run(content, style, init="noise", seed=2, iterations=1)
    assert a.history[0]["total"] == b.history[0]["total"] != c.history[0]["total"]
    from_style = run(content, style, init="style", iterations=1)
    from_image = run(content, style, init=load_image(style, 64), iterations=1)
    assert from_style.history[0]["total"] == pytest.approx(from_image.history[0]["total"], rel=1e-6)
    content_init = run(content, style, iterations=1, content_weight=1.0)
    assert content_init.history[0]["content"] == 0  # starting at the photo, L_content is zero


def test_inputs_as_paths_tensors_and_images(content, style) -> None:  # noqa: ANN001
    path = run(example_path("grace_hopper"), example_path("strokes"), iterations=2)
    pil = [load_image(example_path(name)) for name in ("grace_hopper", "strokes")]
    tensor = run(*(to_tensor(im) for im in pil), iterations=2)
    for other in (run(*pil, iterations=2), tensor):
        assert [h["total"] for h in other.history] == pytest.approx([h["total"] for h in path.history], rel=1e-6)


def test_manual_gradients_reproduce_autograd(content, style) -> None:  # noqa: ANN001
    # In float64: L-BFGS amplifies rounding differences, so float32 runs would part ways by chance.
    auto = run(content, style, iterations=12, tv_weight=1.0, dtype=torch.float64)
    manual = run(content, style, iterations=12, tv_weight=1.0, gradients="manual", dtype=torch.float64)
    assert auto.tensor.dtype == torch.float64
    torch.testing.assert_close(manual.tensor, auto.tensor, atol=1e-7, rtol=0)
    assert manual.best_loss == pytest.approx(auto.best_loss, rel=1e-9)
    assert auto.best_loss < 0.5 * auto.history[0]["total"]


def test_temporal_term_pulls_towards_the_warped_frame_where_c_is_one(content, style) -> None:  # noqa: ANN001
    warped = torch.rand(1, 3, 64, 55, generator=torch.Generator().manual_seed(0))
    c = torch.zeros(64, 55)
    c[:, :27] = 1.0  # the left half is "visible in the previous frame", the right half occluded
    plain = run(content, style, iterations=8)
    pulled = run(content, style, iterations=8, temporal=(warped, c), temporal_weight=1e9)

    def distance(result, half: slice) -> float:  # noqa: ANN001
        return (result.tensor - warped)[..., half].pow(2).mean().item()

    assert distance(pulled, slice(0, 27)) < 0.5 * distance(plain, slice(0, 27))
    assert distance(pulled, slice(27, None)) > 0.8 * distance(plain, slice(27, None))  # c = 0: left alone
    assert pulled.history[0]["temporal"] > 0 and all(h["temporal"] == 0 for h in plain.history)
    for h in pulled.history:
        assert h["total"] == pytest.approx(h["content"] + h["style"] + h["tv"] + h["temporal"], rel=1e-5)
    auto = run(content, style, iterations=6, temporal=(warped, c), temporal_weight=1e9, dtype=torch.float64)
    manual = run(content, style, iterations=6, temporal=(warped, c), temporal_weight=1e9, dtype=torch.float64, gradients="manual")
    torch.testing.assert_close(manual.tensor, auto.tensor, atol=1e-7, rtol=0)
    with pytest.raises(ValueError, match="temporal: expected a warped frame of shape"):
        run(content, style, temporal=(warped[..., :50], c), temporal_weight=1.0)


def test_callback_sees_every_iteration_and_can_stop(content, style) -> None:  # noqa: ANN001
    seen: list[int] = []

    def callback(state: TransferState) -> bool:
        seen.append(state.iteration)
        assert len(state.history) >= state.iteration and state.image.shape == (1, 3, 64, 55)
        return state.iteration == 3

    result = run(content, style, callback=callback)
    assert seen == [1, 2, 3] and result.iterations == 3 and "callback" in result.stopped


def test_keyboard_interrupt_returns_the_best_so_far(content, style) -> None:  # noqa: ANN001
    def callback(state: TransferState) -> None:
        if state.iteration == 4:
            raise KeyboardInterrupt

    with pytest.warns(RuntimeWarning, match="interrupted after 4 iterations"):
        result = run(content, style, callback=callback)
    assert result.stopped.startswith("interrupted") and result.best_loss < result.history[0]["total"]


def test_non_finite_loss_stops_with_a_warning(content, style, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    calls = {"n": 0}
    evaluate = transfer.Objective.__call__

    def poisoned(self, x):  # noqa: ANN001, ANN202
        calls["n"] += 1
        record = evaluate(self, x)
        return record * float("nan") if calls["n"] >= 4 else record

    monkeypatch.setattr(transfer.Objective, "__call__", poisoned)
    with pytest.warns(RuntimeWarning, match="the loss became nan"):
        result = run(content, style)
    assert result.stopped.startswith("the loss became nan")
    assert torch.isfinite(result.tensor).all() and result.best_loss < result.history[0]["total"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"optimizer": "sgd"}, "unknown optimizer"),
        ({"iterations": 0}, "at least 1"),
        ({"init": "zeros"}, "unknown init"),
        ({"content_layers": ["conv6_1"]}, "unknown VGG-19 layer"),
        ({"style_layers": {"relu1_1": -1.0}}, "style layer weight"),
        ({"style_weight": -5.0}, "style_weight must be"),
        ({"temporal_weight": float("nan")}, "temporal_weight must be"),
        ({"content_layers": [], "style_layers": []}, "nothing to optimise"),
        ({"gradients": "numeric"}, "unknown gradients"),
    ],
)
def test_bad_arguments_are_clear_errors(content, style, kwargs, message) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match=message):
        run(content, style, **kwargs)


def test_a_loaded_model_can_be_reused(content, style) -> None:  # noqa: ANN001
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = load_vgg19("random", pooling="avg", device="cpu")
    result = run(content, style, network=model, iterations=2)
    assert result.settings["pooling"] == "avg" and result.settings["weights"] == "random"
