"""nst_lessons.lesson: modes, settings, the model loader's offline fallback, example images."""

from __future__ import annotations

import pytest
import torch

from nst_lessons import data, lesson
from nst_lessons.images import ImageError
from nst_lessons.networks import NetworkSpec, load_network
from nst_lessons.vgg import VGG19, WeightsError


@pytest.fixture
def fresh_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lesson, "_MODELS", {})


@pytest.fixture
def no_downloads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make every download fail fast, recording what was asked for."""
    asked: list[str] = []

    def refuse(name: str, **_: object) -> None:
        asked.append(name)
        raise ImageError(f"offline: {name}")

    monkeypatch.setattr(data, "fetch_classic", refuse)
    return asked


def test_fast_mode_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(lesson.FAST_ENV, "1")
    assert lesson.fast_mode()
    monkeypatch.setenv(lesson.FAST_ENV, "0")
    assert not lesson.fast_mode()
    monkeypatch.delenv(lesson.FAST_ENV)
    assert not lesson.fast_mode()


def test_settings_per_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(lesson.FAST_ENV, "1")
    fast = lesson.settings()
    assert fast.mode == "fast" and fast.device == torch.device("cpu")
    monkeypatch.delenv(lesson.FAST_ENV)
    cpu = lesson.settings(device="cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    gpu = lesson.settings()
    assert (cpu.mode, gpu.mode, gpu.device.type) == ("cpu", "gpu", "cuda")
    assert gpu.size == 512  # the paper's size
    for field in ("size", "iterations", "small_size", "small_iterations", "scratch_size", "scratch_iterations"):
        assert getattr(fast, field) <= getattr(cpu, field) <= getattr(gpu, field), field


@pytest.mark.parametrize("mode", ["fast", "cpu"])
def test_every_size_gives_a_usable_image(monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    if mode == "fast":
        monkeypatch.setenv(lesson.FAST_ENV, "1")
    else:
        monkeypatch.delenv(lesson.FAST_ENV, raising=False)
    s = lesson.settings(device="cpu")
    for size in (s.size, s.small_size, s.scratch_size):
        im = lesson.example("grace_hopper", size)  # the tallest example: its short side is the limit
        assert max(im.size) == size and min(im.size) >= 32


def test_setup_seeds_and_says_how_long(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(lesson.FAST_ENV, "1")
    s = lesson.setup(cpu="about 3 minutes", gpu="under a minute")
    first = torch.rand(3)
    lesson.setup(cpu="about 3 minutes", gpu="under a minute")
    assert torch.equal(first, torch.rand(3))
    out = capsys.readouterr().out
    assert "about 3 minutes on a CPU" in out and "under a minute on a GPU" in out and "Fast test mode" in out
    assert s.mode == "fast"


def test_fast_mode_loads_random_weights_without_network(
    monkeypatch: pytest.MonkeyPatch, fresh_cache: None, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(lesson.FAST_ENV, "1")
    asked: list[str] = []
    real = load_network

    def spy(spec: NetworkSpec, device: object = None):  # noqa: ANN202
        asked.append(spec.weights)
        return real(spec, device)

    monkeypatch.setattr(lesson, "load_network", spy)
    model = lesson.load_model()
    assert lesson.is_random(model) and asked == ["random"]
    assert lesson.load_model() is model and asked == ["random"]  # cached
    out = capsys.readouterr().out
    assert out.count("RANDOM WEIGHTS") == 2 and "fast test mode" in out  # a banner at every call
    assert f"Unset {lesson.FAST_ENV}" in out and "Rerun with internet" not in out  # internet does not help here


def test_offline_falls_back_to_random_weights_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, fresh_cache: None, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(lesson.FAST_ENV, raising=False)
    real = load_network

    def offline(spec: NetworkSpec, device: object = None):  # noqa: ANN202
        if spec.weights != "random":
            raise WeightsError("could not download the 'imagenet' VGG-19 weights (no network)")
        return real(spec, device)

    monkeypatch.setattr(lesson, "load_network", offline)
    model = lesson.load_model(pooling="avg", device="cpu")
    assert lesson.is_random(model) and model.pooling == "avg"
    out = capsys.readouterr().out
    assert "RANDOM WEIGHTS" in out and "Rerun with internet access" in out
    lesson.load_model(pooling="avg", device="cpu")
    assert "no network" in capsys.readouterr().out  # the cached model keeps its reason


def test_real_weights_show_no_banner(
    monkeypatch: pytest.MonkeyPatch, fresh_cache: None, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(lesson.FAST_ENV, raising=False)
    trained = VGG19()
    trained.weights = "imagenet"
    monkeypatch.setattr(lesson, "load_network", lambda spec, device=None: trained)
    assert lesson.load_model(device="cpu") is trained and not lesson.is_random(trained)
    assert "RANDOM" not in capsys.readouterr().out


def test_first_example_skips_classics_in_fast_mode(monkeypatch: pytest.MonkeyPatch, no_downloads: list[str]) -> None:
    monkeypatch.setenv(lesson.FAST_ENV, "1")
    name, im = lesson.first_example("starry_night", "strokes", size=40)
    assert (name, max(im.size)) == ("strokes", 40) and no_downloads == []
    assert lesson.classics(40) == {} and no_downloads == []


def test_offline_classics_are_skipped(
    monkeypatch: pytest.MonkeyPatch, no_downloads: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(lesson.FAST_ENV, raising=False)
    assert lesson.first_example("tubingen", "grace_hopper", size=48)[0] == "grace_hopper"
    assert lesson.classics(48) == {}
    assert len(no_downloads) == 2  # one try each, not one per classic
    assert "Skipping the downloadable classics" in capsys.readouterr().out
    with pytest.raises(ImageError):
        lesson.first_example("tubingen", size=48)
