"""Texture synthesis (Gatys et al. 2015) and ``nst-lessons texture`` for images."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nst_lessons.cli import main
from nst_lessons.images import save_image
from nst_lessons.multiscale import MultiScale
from nst_lessons.texture import texture_shape, texture_synthesis


def stripes(height: int, width: int, period: int) -> torch.Tensor:
    """Vertical coloured stripes, (3, height, width) in [0,1], repeating every ``period`` px."""
    on = ((torch.arange(width) % period) < period // 2).float()
    image = torch.stack([0.2 + 0.6 * on, 0.5 - 0.3 * on, 0.8 - 0.6 * on])
    return image[:, None, :].expand(3, height, width).clone()


def horizontal_period(image: torch.Tensor) -> float:
    """The period in px of an image (3,H,W) along x: W over the frequency of the strongest peak of the
    rows' mean power spectrum (DC excluded), the frequency refined to the power-weighted mean of
    the peak's bin and its two neighbours."""
    grey = image.mean(0) - image.mean()
    power = torch.fft.rfft(grey.double(), dim=1).abs().pow(2).mean(0)
    k = int(power[1:].argmax()) + 1
    bins = torch.arange(k - 1, k + 2, dtype=torch.float64)
    frequency = (bins * power[k - 1 : k + 2]).sum() / power[k - 1 : k + 2].sum()
    return image.shape[-1] / frequency.item()


def test_period_measure_on_known_patterns() -> None:
    for period in (6, 8, 16):
        assert abs(horizontal_period(stripes(8, 96, period)) - period) < 0.05


def test_texture_of_a_periodic_pattern_has_its_period() -> None:
    period = 8
    source = stripes(32, 64, period)
    network = MultiScale(scales=(3, 7, 15), maps=16, seed=0)
    result = texture_synthesis(source, size=None, network=network, iterations=40, seed=1, progress=False)
    measured = horizontal_period(result.tensor[0])
    assert abs(measured - period) < 1.0, measured
    assert result.best_loss < result.history[0]["style"] / 100
    assert result.settings["task"] == "texture" and result.history[-1]["content"] == 0


def test_output_shape_other_than_the_source() -> None:
    network = MultiScale(scales=(3,), maps=4)
    source = torch.rand(3, 40, 60, generator=torch.Generator().manual_seed(0))
    wide = texture_synthesis(source, size=None, width=96, height=32, network=network, iterations=2, progress=False)
    assert wide.image.size == (96, 32)
    tall = texture_synthesis(source, size=48, height=64, network=network, iterations=1, progress=False)
    assert tall.image.size == (96, 64)  # the source's 3:2 kept
    a, b = (texture_synthesis(source, size=None, network=network, iterations=2, seed=s, progress=False).tensor for s in (0, 1))
    assert not torch.equal(a, b)  # another seed, another sample


def test_texture_shape() -> None:
    assert texture_shape((60, 40), None, None) == (60, 40)
    assert texture_shape((60, 40), 90, None) == (90, 60)
    assert texture_shape((60, 40), None, 80) == (120, 80)
    with pytest.raises(ValueError, match="at least 32"):
        texture_shape((60, 40), 40, 20)


def test_texture_takes_no_content_options() -> None:
    with pytest.raises(ValueError, match="no content_weight"):
        texture_synthesis(torch.rand(3, 32, 32), network=MultiScale(scales=(3,), maps=2), content_weight=1.0)


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    status = main(args)
    return status, capsys.readouterr().err


def test_cli_writes_a_texture(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "in.png"
    save_image(torch.rand(1, 3, 40, 48, generator=torch.Generator().manual_seed(0)), source)
    out = tmp_path / "out.png"
    status, err = _run(["texture", str(source), "-o", str(out), "--network", "multiscale", "--size", "48",
                        "--width", "64", "--iterations", "1", "-q"], capsys)  # fmt: skip
    assert status == 0, err
    from PIL import Image

    assert Image.open(out).size == (64, 53)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--size", "100000"], "needs about"),
        (["--width", "8"], "at least 32"),
        (["--network", "nope"], "invalid choice"),
        (["--iterations", "0"], "at least 1"),
    ],
)
def test_cli_bad_input_is_one_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    source = tmp_path / "in.png"
    save_image(torch.rand(1, 3, 40, 40), source)
    out = tmp_path / "out.png"
    status, err = _run(["texture", str(source), "-o", str(out), "--network", "multiscale", *extra], capsys)
    assert status == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_cli_never_overwrites_the_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "in.png"
    save_image(torch.rand(1, 3, 40, 40), source)
    before = source.read_bytes()
    (tmp_path / "sub").mkdir()
    for spelling in (source, tmp_path / "sub" / ".." / "in.png"):
        status, err = _run(["texture", str(source), "-o", str(spelling), "--network", "multiscale", "--size", "40"], capsys)
        assert status == 2 and "is the input texture" in err
    assert source.read_bytes() == before
    status, err = _run(["texture", str(tmp_path / "missing.png"), "-o", str(tmp_path / "o.png")], capsys)
    assert status == 2 and "missing.png" in err and not (tmp_path / "o.png").exists()


def test_cli_ctrl_c_writes_the_best_texture_and_exits_130(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import nst_lessons.texture as texture_module
    from nst_lessons import transfer

    real = texture_module.style_transfer

    def ctrl_c(state: transfer.TransferState) -> None:
        if state.iteration == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(texture_module, "style_transfer", lambda *a, **k: real(*a, **{**k, "callback": ctrl_c}))
    source, out = tmp_path / "in.png", tmp_path / "out.png"
    save_image(torch.rand(1, 3, 40, 40, generator=torch.Generator().manual_seed(0)), source)
    status, err = _run(["texture", str(source), "-o", str(out), "--network", "multiscale", "--size", "40",
                        "--iterations", "5", "-q"], capsys)  # fmt: skip
    assert status == 130, err
    assert err.splitlines()[-1] == f"nst-lessons: interrupted; {out} holds the best image so far"
    assert out.is_file()
