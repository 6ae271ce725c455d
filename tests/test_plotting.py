"""nst_lessons.plotting: each figure has the panels, images and labels it promises."""

from __future__ import annotations

from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.image import AxesImage  # noqa: E402
from PIL import Image  # noqa: E402

from nst_lessons import plotting  # noqa: E402
from nst_lessons.scratch import LossRecord  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def images_in(fig) -> list[AxesImage]:
    return [im for ax in fig.axes for im in ax.get_images()]


def is_stamped(fig) -> bool:
    label = fig._supxlabel  # where stamp_random_weights writes
    return label is not None and "RANDOM WEIGHTS" in label.get_text()


def history(n: int = 5, tv: float = 0.0) -> list[dict[str, float]]:
    return [
        {"total": 10.0 / k, "content": 1.0 / k, "style": 9.0 / k, "tv": tv, "seconds": 0.1 * k} for k in range(1, n + 1)
    ]


def test_to_array_accepts_every_layout() -> None:
    rgb = np.random.default_rng(0).uniform(size=(5, 7, 3))
    pil = Image.fromarray((rgb * 255).astype(np.uint8))
    t = torch.tensor(rgb).permute(2, 0, 1)
    for image in (rgb, rgb.transpose(2, 0, 1), t, t[None], pil):
        a = plotting.to_array(image)
        assert a.shape == (5, 7, 3)
        assert np.allclose(a, rgb, atol=1 / 255)
    assert plotting.to_array(np.full((4, 4), -3.0)).min() == -3.0  # one channel is not clipped
    assert plotting.to_array(torch.full((1, 3, 4, 4), 2.0)).max() == 1.0  # colour is
    assert plotting.to_array(torch.zeros(3, 3, 3)).shape == (3, 3, 3)  # a tensor is channels-first
    with pytest.raises(ValueError, match="batch"):
        plotting.to_array(torch.zeros(2, 3, 4, 4))
    with pytest.raises(ValueError):
        plotting.to_array(np.zeros((4, 4, 5)))


def drawn_panels(fig) -> list[np.ndarray]:
    """The rendered RGB pixels (float in [0,1]) inside each axes of ``fig``, in axes order."""
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())[..., :3] / 255.0
    height = rgba.shape[0]
    panels = []
    for ax in fig.axes:
        x0, y0, x1, y1 = (int(round(v)) for v in ax.get_window_extent().extents)
        panels.append(rgba[height - y1 + 2 : height - y0 - 2, x0 + 2 : x1 - 2])
    return panels


def test_a_bfloat16_tensor_is_shown_as_its_float_values() -> None:
    """numpy has no bfloat16: the tensor is widened in torch (a bf16 run's result, a bf16 feature map)."""
    x = torch.rand(1, 3, 8, 8).to(torch.bfloat16)
    assert np.array_equal(plotting.to_array(x), x[0].double().permute(1, 2, 0).numpy())
    ramp = torch.arange(16, dtype=torch.bfloat16).reshape(4, 4)[None]
    assert plotting.to_array(ramp).max() == 15.0  # float: not divided by 255


def test_integer_colour_images_are_read_as_0_to_255() -> None:
    rgb = np.random.default_rng(1).uniform(size=(16, 16, 3))
    frame = (rgb * 255).round().astype(np.uint8)
    assert np.allclose(plotting.to_array(frame), frame / 255.0)
    assert np.allclose(plotting.to_array(torch.from_numpy(frame).permute(2, 0, 1)), frame / 255.0)
    ramp = np.arange(16, dtype=np.uint8).reshape(4, 4)
    assert plotting.to_array(ramp).max() == 15.0  # a one-channel map stays unscaled (its colour map scales it)
    as_uint8, as_float = drawn_panels(plotting.show_images([frame, frame / 255.0], ["uint8", "float"], size=3.0))
    assert as_uint8.mean() < 0.8  # not a white panel
    assert np.abs(as_uint8 - as_float).mean() < 0.01  # the same picture


def test_show_images_one_panel_per_image() -> None:
    images = [np.zeros((8, 8, 3)), torch.rand(1, 3, 8, 8), np.ones((8, 8))]
    fig = plotting.show_images(images, ["a", "b", "c"], ncols=2, title="three")
    assert len(fig.axes) == 4 and len(images_in(fig)) == 3
    assert [ax.get_title() for ax in fig.axes[:3]] == ["a", "b", "c"] and not fig.axes[3].axison
    assert fig._suptitle.get_text() == "three" and not is_stamped(fig)
    assert is_stamped(plotting.show_images(images, random_weights=True))
    with pytest.raises(ValueError):
        plotting.show_images([])


def test_centered_maps_put_zero_in_the_middle() -> None:
    fig = plotting.show_images([np.array([[-1.0, 3.0]])], cmap="RdBu_r", centered=True)
    assert images_in(fig)[0].get_clim() == (-3.0, 3.0)


def test_image_grid_and_ratio_grid() -> None:
    rows = [[np.zeros((4, 4, 3))] * 3, [np.zeros((4, 4, 3))] * 2]
    fig = plotting.image_grid(rows, row_labels=["r1", "r2"], col_labels=["x", "y", "z"])
    assert len(images_in(fig)) == 5 and len(fig.axes) == 6
    assert [fig.axes[k].get_title() for k in range(3)] == ["x", "y", "z"]
    assert fig.axes[0].get_ylabel() == "r1" and fig.axes[3].get_ylabel() == "r2"
    titled = plotting.image_grid(rows, titles=[["a", "b", "c"], ["d", "e"]])
    assert titled.axes[4].get_title() == "e"
    images = [[np.zeros((4, 4, 3))] * 2]
    grid = plotting.ratio_grid(images, [1.6e-8, 1e-7], ["A"], paper_ratios=[1e-4, 1e-3], random_weights=True)
    titles = [ax.get_title() for ax in grid.axes]
    assert "α/β = 1.6e-08" in titles[0] and "paper: 1e-04" in titles[0] and "α/β = 1e-07" in titles[1]
    assert is_stamped(grid)


def test_feature_map_grid_shows_the_most_active_maps() -> None:
    F = torch.zeros(1, 10, 6, 6)
    F[0, 7] = 5.0
    F[0, 2] = 3.0
    fig = plotting.feature_map_grid(F, n=4, ncols=2)
    assert len(images_in(fig)) == 4
    assert [ax.get_title() for ax in fig.axes[:2]] == ["#7", "#2"]


def test_feature_map_rows_one_row_per_layer() -> None:
    features = {"relu1_1": torch.rand(1, 64, 16, 12), "relu2_1": torch.rand(1, 128, 8, 6)}
    fig = plotting.feature_map_rows(features, n=5, random_weights=True)
    assert len(images_in(fig)) == 10
    assert "relu2_1" in fig.axes[5].get_ylabel() and "N=128, 8x6" in fig.axes[5].get_ylabel()
    assert is_stamped(fig)


def test_gram_heatmap_panels_and_truncation() -> None:
    grams = {"a": torch.rand(1, 40, 40), "b": np.random.default_rng(0).uniform(size=(10, 10))}
    fig = plotting.gram_heatmap(grams, n=32)
    shown = images_in(fig)
    assert [im.get_array().shape for im in shown] == [(32, 32), (10, 10)]
    assert len(fig.axes) == 4  # two panels, two colour bars


def test_loss_plot_single_run_draws_the_nonzero_terms() -> None:
    fig = plotting.loss_plot(history(tv=0.0))
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert labels == ["total", "content", "style"]
    assert fig.axes[0].get_yscale() == "log"
    records = [LossRecord(3.0, 1.0, 1.5, 0.5), LossRecord(2.0, 0.8, 1.0, 0.2)]
    assert len(plotting.loss_plot(records).axes[0].get_lines()) == 4


def test_loss_plot_compares_runs_on_one_term() -> None:
    fig, ax = plt.subplots()
    out = plotting.loss_plot({"lbfgs": history(5), "adam": history(3)}, term="style", ax=ax, log=False)
    assert out is fig
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == ["lbfgs", "adam"]
    assert list(lines[1].get_ydata()) == [9.0, 4.5, 3.0]


def test_live_loss_plot_redraws_at_most_every_interval() -> None:
    state = SimpleNamespace(iteration=1, image=torch.rand(1, 3, 8, 8), history=history(1))
    live = plotting.LiveLossPlot(interval=0.0, random_weights=True)
    for k in range(1, 4):
        state.iteration, state.history = k, history(k)
        assert live(state) is None  # never stops the run
    assert live.draws == 3
    assert len(live.loss_ax.get_lines()[0].get_ydata()) == 3
    assert live.image_ax.get_title() == "iteration 3"
    assert is_stamped(live.figure)
    slow = plotting.LiveLossPlot(interval=3600.0)
    for _ in range(3):
        slow(state)
    slow.close()
    assert slow.draws == 2  # the first call and the final redraw
    assert plotting.LiveLossPlot().draws == 0


def test_gradient_check_plot_reports_the_error() -> None:
    g = np.linspace(-1, 1, 20)
    fig = plotting.gradient_check_plot({"exact": (g, g), "off": (torch.tensor(g * 1.1), g)})
    titles = [ax.get_title() for ax in fig.axes]
    assert "relative error 0.0e+00" in titles[0] and "relative error 9.1e-02" in titles[1]
    with pytest.raises(ValueError):
        plotting.gradient_check_plot({"bad": (np.zeros(3), np.zeros(4))})


def test_error_bars_one_bar_per_check_with_threshold() -> None:
    fig = plotting.error_bars({"a": 1e-12, "b": 0.0, "c": 0.3}, threshold=1e-6)
    ax = fig.axes[0]
    assert len(ax.patches) == 3 and ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b", "c"]
    assert len(ax.get_lines()) == 1  # the threshold


def test_distance_heatmap_and_embedding_plot() -> None:
    D = np.array([[0.0, 1.0, 2.0], [1.0, 0.0, 1.5], [2.0, 1.5, 0.0]])
    labels = ["p", "q", "r"]
    fig = plotting.distance_heatmap({"style": D, "content": D / 2}, labels, random_weights=True)
    assert [im.get_array().shape for im in images_in(fig)] == [(3, 3), (3, 3)]
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == labels and is_stamped(fig)
    X = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    thumbs = [np.zeros((8, 8, 3)), np.ones((8, 8)), Image.new("RGB", (8, 8))]
    maps = plotting.embedding_plot({"style": X, "content": X}, labels, thumbs)
    assert len(maps.axes) == 2
    assert sum(type(a).__name__ == "AnnotationBbox" for a in maps.axes[0].artists) == 3
    assert [t.get_text() for t in maps.axes[0].texts] == labels
    assert not plotting.embedding_plot({"x": X}, labels).axes[0].artists  # dots only


def test_show_images_with_a_value_range_shares_it_and_adds_colour_bars() -> None:
    maps = [np.full((4, 4), 0.25), np.linspace(0, 0.5, 16).reshape(4, 4)]
    fig = plotting.show_images([*maps, np.zeros((4, 4, 3))], value_range=(0.0, 1.0))
    shown = [ax.images[0] for ax in fig.axes if ax.images]
    assert [im.get_clim() for im in shown[:2]] == [(0.0, 1.0), (0.0, 1.0)]
    assert len(fig.axes) == 3 + 2  # a colour bar for each single-channel panel, none for the RGB one
    plt.close(fig)
