"""Coarse-to-fine style transfer at tiny sizes."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from nst_lessons import color, memory, pyramid, transfer
from nst_lessons.data import example_path
from nst_lessons.images import ImageError, load_image, to_tensor
from nst_lessons.memory import InsufficientMemoryError
from nst_lessons.pyramid import check_levels, parse_levels, pyramid_transfer
from nst_lessons.transfer import style_transfer

pytestmark = [pytest.mark.filterwarnings("ignore::nst_lessons.vgg.RandomWeightsWarning"), pytest.mark.usefixtures("one_thread")]


CONTENT, STYLE = example_path("grace_hopper"), example_path("strokes")
OPTIONS = dict(network="vgg19:random", device="cpu", progress=False)


def test_each_level_starts_from_the_last(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, object]] = []

    def recording(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls.append(kwargs)
        return style_transfer(*args, **kwargs)

    monkeypatch.setattr(pyramid, "style_transfer", recording)
    result = pyramid_transfer(CONTENT, STYLE, [(48, 6), (96, 1)], style_size=64, **OPTIONS)
    assert max(result.image.size) == 96 and result.iterations == 1
    assert [(level["size"], level["iterations"]) for level in result.settings["pyramid"]] == [(48, 6), (96, 1)]
    assert [c["style_size"] for c in calls] == [32, 64] and calls[0]["init"] == "content"
    first = calls[1]["init"]
    assert isinstance(first, torch.Tensor) and first.shape[-2] == 48  # the first level's result, to be upsampled
    # Started from the upsampled stylisation, the second level begins far closer to the style
    # than a run at 128 px from the photo does.
    plain = style_transfer(CONTENT, STYLE, size=96, style_size=64, iterations=1, **OPTIONS)
    assert result.history[0]["style"] < 0.75 * plain.history[0]["style"]


@pytest.mark.parametrize("mode", ["yuv", "luminance"])
def test_colour_post_processing_is_applied_once_to_the_last_level(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    levels = [(40, 3), (48, 1)]
    calls: list[tuple[object, transfer.TransferResult]] = []
    run = pyramid.style_transfer
    monkeypatch.setattr(pyramid, "style_transfer", lambda *a, **k: calls.append((k["init"], run(*a, **k))) or calls[-1][1])
    result = pyramid_transfer(CONTENT, STYLE, levels, preserve_color=mode, **OPTIONS)
    first = calls[0][1]
    assert calls[1][0] is first.raw and not torch.equal(first.raw, first.tensor)  # not the recoloured image
    photo = to_tensor(load_image(CONTENT, 48))
    torch.testing.assert_close(result.tensor, color.finish(mode, result.raw, photo), rtol=0, atol=0)
    if mode == "yuv":  # only post-processing: exactly the plain pyramid, recoloured
        plain = pyramid_transfer(CONTENT, STYLE, levels, **OPTIONS)
        torch.testing.assert_close(result.tensor, color.finish("yuv", plain.tensor, photo), rtol=0, atol=0)


def test_masks_and_blend_weights_are_checked_at_every_level_before_the_model_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pyramid, "load_networks", lambda *a, **k: pytest.fail("the model was loaded"))
    column = torch.zeros(48, 41)  # grace_hopper at 48 px; the last column is cropped by the second pooling at 40 px
    column[:, -1] = 1.0
    regions = [(column, torch.ones(40, 40)), (1 - column, torch.ones(40, 40))]
    with pytest.raises(ImageError, match=r"content mask 1 \(at relu3_1\) covers nothing"):
        pyramid_transfer(CONTENT, [STYLE, STYLE], [(40, 1), (48, 1)], masks=regions, **OPTIONS)
    with pytest.raises(ValueError, match="has 1 weights for 2 style"):
        pyramid_transfer(CONTENT, [STYLE, STYLE], [(40, 1), (48, 1)], style_blend_weights=[1], **OPTIONS)


def test_a_tensor_init_is_resized_in_float_not_rounded() -> None:
    content = to_tensor(load_image(CONTENT, 64))
    style = to_tensor(load_image(STYLE, 64))
    init = torch.full((3, *content.shape[-2:]), 0.123456)
    same = transfer._initial_image(init, content, style, None)
    assert same.shape == content.shape and torch.equal(same, init.unsqueeze(0))
    small = torch.rand(1, 3, 20, 17)
    assert transfer._initial_image(small, content, style, None).shape == content.shape
    with pytest.raises(ValueError, match="init image of shape"):
        transfer._initial_image(torch.rand(4, 8, 8), content, style, None)


def test_the_last_level_is_checked_before_the_first_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    fits_64 = memory.estimate(64, 55, transfer.CONTENT_LAYERS, transfer.STYLE_LAYERS).total / 0.9
    monkeypatch.setattr(memory, "available_bytes", lambda device: int(fits_64 * 1.2))
    monkeypatch.setattr(pyramid, "style_transfer", lambda *a, **k: pytest.fail("a level ran"))
    with pytest.raises(InsufficientMemoryError, match="largest size that fits"):
        pyramid_transfer(CONTENT, STYLE, [(64, 5), (512, 5)], **OPTIONS)


@pytest.mark.parametrize(
    "text, message",
    [
        ("512", "SIZE:ITERATIONS"),
        ("512:x", "SIZE:ITERATIONS"),
        ("1024:10,512:10", "must grow"),
        ("512:10,512:10", "must grow"),
        ("512:0", "at least 1 iteration"),
    ],
)
def test_bad_levels_are_clear_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_levels(text)


def test_levels_parse() -> None:
    assert parse_levels(" 512:500, 1024:200 ") == [(512, 500), (1024, 200)]
    with pytest.raises(ValueError, match="at least one level"):
        check_levels([])


def test_the_command_line_runs_a_pyramid(tmp_path) -> None:  # noqa: ANN001
    from nst_lessons.cli import main

    out = tmp_path / "out.png"
    args = ["transfer", "grace_hopper", "strokes", "-o", str(out), "--weights", "random", "--device", "cpu", "-q"]
    assert main([*args, "--pyramid", "48:2,64:1", "--precision", "bf16", "--channels-last", "--history-size", "5"]) == 0
    assert max(Image.open(out).size) == 64
