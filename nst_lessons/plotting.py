"""Figures for the lesson notebooks: images, feature maps, Gram matrices, loss curves, grids.

Every function returns its matplotlib ``Figure`` (end the notebook line with ``;`` so that it is
drawn once). Images may be PIL images, tensors (3,H,W) or (1,3,H,W) in [0,1], numpy arrays
(H,W,3), (3,H,W) or single-channel (H,W). Functions that draw what a network produced take
``random_weights``: when true, a red band under the figure says that the network was untrained,
so that nobody mistakes those pictures for the method's results.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any, Union

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.offsetbox import AnnotationBbox, OffsetImage
from matplotlib.ticker import MaxNLocator
from PIL import Image
from torch import Tensor

ImageInput = Union[Image.Image, Tensor, np.ndarray]
History = Sequence[Any]
"""Loss records, one per objective evaluation: dicts (``TransferResult.history``) or named tuples
(``LossRecord`` of the numpy transfer) with fields ``total``, ``content``, ``style``, ``tv``."""

TERMS = ("total", "content", "style", "tv")
RANDOM_WEIGHTS_NOTE = "RANDOM WEIGHTS: an untrained network made these; they are not the method's results"


def to_array(image: ImageInput) -> np.ndarray:
    """Any supported image as a float array: (H,W,3) in [0,1] for colour, (H,W) unscaled for one channel.

    Tensors are channels-first, (3,H,W) or (1,3,H,W); a numpy array may be either (H,W,3) or (3,H,W).
    Integer colour values (uint8 frames, thumbnails) are 0..255 and are divided by 255; float colour
    values are taken to be in [0,1] and clipped.
    """
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0
    channels_first = isinstance(image, Tensor)
    if channels_first:
        integer = not (image.dtype.is_floating_point or image.dtype.is_complex or image.dtype == torch.bool)
        t = image.detach().cpu()
        a = (t if integer else t.double()).numpy().astype(np.float64)  # numpy has no bfloat16
    else:
        raw = np.asarray(image)
        integer = np.issubdtype(raw.dtype, np.integer)
        a = raw.astype(np.float64)
    if a.ndim == 4:
        if a.shape[0] != 1:
            raise ValueError(f"expected one image, got a batch of {a.shape[0]}")
        a = a[0]
    if a.ndim == 3 and (channels_first or (a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3))):
        a = a.transpose(1, 2, 0)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] != 3):
        raise ValueError(f"cannot show an array of shape {a.shape} as an image")
    if a.ndim == 2:
        return a
    return np.clip(a / 255.0 if integer else a, 0.0, 1.0)


def stamp_random_weights(fig: Figure) -> None:
    """Write :data:`RANDOM_WEIGHTS_NOTE` in a red band under the figure."""
    fig.supxlabel(
        RANDOM_WEIGHTS_NOTE,
        color="white",
        fontweight="bold",
        fontsize="medium",
        bbox={"facecolor": "#c00", "edgecolor": "none", "boxstyle": "round,pad=0.4"},
    )


def _finish(fig: Figure, title: str | None, random_weights: bool) -> Figure:
    if title:
        fig.suptitle(title)
    if random_weights:
        stamp_random_weights(fig)
    return fig


def _panels(nrows: int, ncols: int, width: float, height: float) -> tuple[Figure, np.ndarray]:
    """A figure of nrows x ncols axes (always a 2-D array), width x height inches, constrained layout."""
    return plt.subplots(nrows, ncols, figsize=(width, height), squeeze=False, layout="constrained")


def _show(
    ax: Axes,
    image: ImageInput,
    title: str | None = None,
    cmap: str = "gray",
    centered: bool = False,
    value_range: tuple[float, float] | None = None,
) -> AxesImage:
    a = to_array(image)
    limits = {}
    if a.ndim == 2 and value_range is not None:
        limits = {"vmin": value_range[0], "vmax": value_range[1]}
    elif a.ndim == 2 and centered:  # a diverging colour map with 0 in the middle
        bound = max(float(np.abs(a).max()), 1e-300)
        limits = {"vmin": -bound, "vmax": bound}
    # Small images are shown as their pixels, not blurred by resampling.
    interpolation = "nearest" if max(a.shape[:2]) < 128 else None
    shown = ax.imshow(a, cmap=cmap if a.ndim == 2 else None, interpolation=interpolation, **limits)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize="medium")
    return shown


def show_images(
    images: Sequence[ImageInput],
    titles: Sequence[str] | None = None,
    *,
    ncols: int | None = None,
    size: float = 2.8,
    title: str | None = None,
    cmap: str = "gray",
    centered: bool = False,
    value_range: tuple[float, float] | None = None,
    random_weights: bool = False,
) -> Figure:
    """Images side by side (``ncols`` per row, default all in one row), each with its title.

    Single-channel (H,W) arrays are drawn with ``cmap``, each scaled to its own range, or to
    [-max|a|, max|a|] with ``centered`` (for signed maps and a diverging ``cmap``), or, with
    ``value_range=(low, high)``, all to that one range, with a colour bar beside each such panel.
    """
    if not images:
        raise ValueError("no images to show")
    ncols = ncols or len(images)
    nrows = math.ceil(len(images) / ncols)
    fig, axes = _panels(nrows, ncols, size * ncols, size * nrows + 0.6)
    for i, ax in enumerate(axes.flat):
        if i < len(images):
            shown = _show(ax, images[i], titles[i] if titles else None, cmap, centered, value_range)
            if value_range is not None and shown.get_array().ndim == 2:
                fig.colorbar(shown, ax=ax, shrink=0.8)
        else:
            ax.axis("off")
    return _finish(fig, title, random_weights)


def image_grid(
    rows: Sequence[Sequence[ImageInput]],
    *,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    titles: Sequence[Sequence[str]] | None = None,
    size: float = 2.2,
    title: str | None = None,
    random_weights: bool = False,
) -> Figure:
    """A table of images: ``rows[i][j]`` in row i, column j (rows may differ in length).

    Args:
        row_labels: one label per row, left of the row.
        col_labels: one label per column, above the top row.
        titles: ``titles[i][j]`` above image (i, j); takes the place of ``col_labels`` in the top row.
    """
    nrows, ncols = len(rows), max(len(r) for r in rows)
    fig, axes = _panels(nrows, ncols, size * ncols + 1, size * nrows + 0.8)
    for i, row in enumerate(rows):
        for j in range(ncols):
            ax = axes[i, j]
            if j < len(row):
                _show(ax, row[j], titles[i][j] if titles else None)
            else:
                ax.axis("off")
            if i == 0 and col_labels and not titles:
                ax.set_title(col_labels[j], fontsize="medium")
            if j == 0 and row_labels:
                ax.set_ylabel(row_labels[i], fontsize="medium")
    return _finish(fig, title, random_weights)


def ratio_grid(
    rows: Sequence[Sequence[ImageInput]],
    ratios: Sequence[float],
    row_labels: Sequence[str],
    *,
    paper_ratios: Sequence[float] | None = None,
    size: float = 2.2,
    title: str | None = "Content/style trade-off (the paper's Fig. 3)",
    random_weights: bool = False,
) -> Figure:
    """The paper's Fig. 3: one row per set of style layers, one column per ratio alpha/beta.

    Args:
        rows: ``rows[i][j]`` is the result with the i-th layer set and the j-th ratio.
        ratios: the alpha/beta of each column, as used.
        row_labels: the layer set of each row.
        paper_ratios: the same columns in the paper's units (Caffe weights), shown beneath.
    """
    labels = [f"α/β = {r:.2g}" for r in ratios]
    if paper_ratios is not None:
        labels = [f"{label}\n(paper: {p:.0e})" for label, p in zip(labels, paper_ratios)]
    return image_grid(
        rows, row_labels=row_labels, col_labels=labels, size=size, title=title, random_weights=random_weights
    )


def _maps(F: Tensor | np.ndarray) -> np.ndarray:
    """Feature maps (N,H,W) or (1,N,H,W) as a float array (N,H,W)."""
    a = F.detach().cpu().double().numpy() if isinstance(F, Tensor) else np.asarray(F, dtype=np.float64)
    if a.ndim == 4:
        a = a[0]
    if a.ndim != 3:
        raise ValueError(f"expected feature maps of shape (N,H,W) or (1,N,H,W), got {a.shape}")
    return a


def _most_active(maps: np.ndarray, n: int) -> np.ndarray:
    """Indices of the n channels with the largest mean response, in decreasing order."""
    return np.argsort(maps.mean(axis=(1, 2)))[::-1][:n]


def feature_map_grid(
    F: Tensor | np.ndarray,
    n: int = 16,
    *,
    ncols: int = 8,
    size: float = 1.4,
    title: str | None = None,
    random_weights: bool = False,
) -> Figure:
    """The n most active feature maps of one layer (by mean response), each with its own colour scale."""
    maps = _maps(F)
    channels = _most_active(maps, n)
    nrows = math.ceil(len(channels) / ncols)
    fig, axes = _panels(nrows, ncols, size * ncols, size * nrows + 0.6)
    for ax, c in zip(axes.flat, channels):
        _show(ax, maps[c], f"#{c}", cmap="viridis")
    for ax in axes.flat[len(channels) :]:
        ax.axis("off")
    return _finish(fig, title, random_weights)


def feature_map_rows(
    features: Mapping[str, Tensor | np.ndarray],
    n: int = 8,
    *,
    size: float = 1.5,
    title: str | None = None,
    random_weights: bool = False,
) -> Figure:
    """One row per layer: its n most active feature maps, labelled with the layer's N_l and H_l x W_l."""
    fig, axes = _panels(len(features), n, size * n + 1, size * len(features) + 0.6)
    for row, (name, F) in zip(axes, features.items()):
        maps = _maps(F)
        channels = _most_active(maps, n)
        for j, ax in enumerate(row):
            if j < len(channels):
                _show(ax, maps[channels[j]], cmap="viridis")
            else:
                ax.axis("off")
        N, H, W = maps.shape
        row[0].set_ylabel(f"{name}\nN={N}, {H}x{W}", fontsize="small")
    return _finish(fig, title, random_weights)


def gram_heatmap(
    grams: Mapping[str, Tensor | np.ndarray],
    *,
    n: int | None = 32,
    size: float = 3.2,
    title: str | None = None,
    random_weights: bool = False,
) -> Figure:
    """Gram matrices as heatmaps, one panel each, showing the first n x n channels.

    Args:
        grams: ``{label: G}`` with G of shape (N,N) or (1,N,N).
        n: how many channels to show (None: all).
    """
    fig, axes = _panels(1, len(grams), size * len(grams), size + 0.6)
    for ax, (label, G) in zip(axes[0], grams.items()):
        a = G.detach().cpu().double().numpy() if isinstance(G, Tensor) else np.asarray(G, dtype=np.float64)
        a = a.reshape(a.shape[-2:])[:n, :n]
        im = ax.imshow(a, cmap="magma", interpolation="nearest")
        ax.set_title(label, fontsize="medium")
        ax.set_xlabel("channel j")
        ax.set_ylabel("channel i")
        fig.colorbar(im, ax=ax, shrink=0.8)
    return _finish(fig, title, random_weights)


def _series(history: History, term: str) -> np.ndarray:
    return np.array([h[term] if isinstance(h, Mapping) else getattr(h, term) for h in history], dtype=np.float64)


def loss_plot(
    history: History | Mapping[str, History],
    *,
    term: str = "total",
    ax: Axes | None = None,
    log: bool = True,
    title: str | None = None,
) -> Figure:
    """Loss against objective evaluations.

    Args:
        history: one run's records (then every non-zero term is drawn: total, content, style,
            tv), or ``{label: records}`` for several runs (then only ``term`` is drawn, per run).
        term: the term compared across runs.
        ax: draw into these axes instead of a new figure.
        log: logarithmic loss axis.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 3.6), layout="constrained")
    if isinstance(history, Mapping):
        curves = {label: _series(h, term) for label, h in history.items()}
        ax.set_ylabel(f"{term} loss")
    else:
        curves = {t: _series(history, t) for t in TERMS}
        curves = {t: c for t, c in curves.items() if np.any(c != 0)}
        ax.set_ylabel("weighted loss")
    for label, y in curves.items():
        ax.plot(np.arange(1, len(y) + 1), y, label=label)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("objective evaluation")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    return ax.figure


def spectrograms(
    named: Mapping[str, np.ndarray],
    sample_rate: int,
    hop: int,
    *,
    max_hz: float = 8000.0,
    width: float = 10.0,
    title: str | None = None,
) -> Figure:
    """Log spectrograms X (F, T), one panel each, stacked with a shared colour scale: time in
    seconds across (frame t at t * hop / sample_rate), frequency in kHz up to ``max_hz``
    (bin f at f * sample_rate / n_fft with n_fft = 2 (F - 1)).

    Args:
        named: ``{title: X}``; the X may have different lengths (the time axes are shared).
    """
    fig, axes = _panels(len(named), 1, width, 1.0 + 1.7 * len(named))
    top = max(float(X.max()) for X in named.values())
    for ax, (label, X) in zip(axes[:, 0], named.items()):
        n_fft = 2 * (X.shape[0] - 1)
        extent = (0.0, X.shape[1] * hop / sample_rate, 0.0, sample_rate / 2 / 1000)
        image = ax.imshow(X, origin="lower", aspect="auto", cmap="magma", extent=extent, vmin=0.0, vmax=top, interpolation="nearest")
        ax.set_ylim(0, min(max_hz, sample_rate / 2) / 1000)
        ax.set_ylabel("kHz")
        ax.set_title(f"{label}  ({X.shape[0]} bins of {sample_rate / n_fft:.1f} Hz x {X.shape[1]} frames)", fontsize="medium")
    axes[-1, 0].set_xlabel("seconds")
    fig.colorbar(image, ax=axes[:, 0], label="log(1 + |STFT|)", shrink=0.8)
    return _finish(fig, title, False)


class LiveLossPlot:
    """A callback for :func:`nst_lessons.transfer.style_transfer` that redraws, in place, the
    current image beside its loss curves, at most once every ``interval`` seconds.

    In a notebook it updates one output area through an IPython display handle; elsewhere
    (scripts, tests) it only keeps its figure up to date. Call :meth:`close` after the run for a
    final redraw. Redrawing costs a PNG rendering, hence the time limit rather than an
    iteration count: a fast GPU run is not slowed down by its own plot.

    Attributes:
        figure: the figure it draws into (not managed by pyplot, so it is shown only through
            the display handle).
        iteration: the last iteration seen.
        draws: how many times it has drawn.
    """

    def __init__(self, interval: float = 2.0, *, title: str | None = None, random_weights: bool = False) -> None:
        self.interval = interval
        self.figure = Figure(figsize=(9.5, 3.6), layout="constrained")
        self.image_ax, self.loss_ax = self.figure.subplots(1, 2, width_ratios=(1, 1.6))
        _finish(self.figure, title, random_weights)
        self.iteration = 0
        self.draws = 0
        self._last = -math.inf
        self._history: History = []
        self._image: ImageInput | None = None
        self._handle: Any = None

    def __call__(self, state: Any) -> None:
        """Take a :class:`nst_lessons.transfer.TransferState`; never asks the run to stop."""
        self.iteration = state.iteration
        self._history, self._image = state.history, state.image
        if time.perf_counter() - self._last >= self.interval:
            self.draw()

    def draw(self) -> None:
        """Redraw from the latest state and push it to the notebook."""
        if self._image is None:
            return
        self._last = time.perf_counter()
        self.draws += 1
        self.image_ax.clear()
        _show(self.image_ax, self._image, f"iteration {self.iteration}")
        self.loss_ax.clear()
        loss_plot(self._history, ax=self.loss_ax)
        self._display()

    def close(self) -> None:
        """A final redraw, so the output shows the last iteration."""
        self.draw()

    def _display(self) -> None:
        try:
            from IPython import get_ipython
            from IPython.display import Image as PNG
            from IPython.display import display
        except ImportError:
            return
        if get_ipython() is None:
            return
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", dpi=80)
        png = PNG(data=buffer.getvalue())
        if self._handle is None:
            self._handle = display(png, display_id=True)
        else:
            self._handle.update(png)


def gradient_check_plot(
    pairs: Mapping[str, tuple[Any, Any]],
    *,
    xlabel: str = "reference gradient",
    ylabel: str = "our gradient",
    size: float = 3.2,
    title: str | None = None,
) -> Figure:
    """One scatter plot per check: our gradient against a reference, entry by entry.

    The points lie on the diagonal when the two agree; each panel's title gives the relative
    error max|a - b| / max(|a|, |b|).

    Args:
        pairs: ``{label: (ours, reference)}``, arrays or tensors of any equal shapes.
    """
    fig, axes = _panels(1, len(pairs), size * len(pairs), size + 0.5)
    for ax, (label, (ours, ref)) in zip(axes[0], pairs.items()):
        a = np.ravel(ours.detach().cpu().numpy() if isinstance(ours, Tensor) else ours).astype(np.float64)
        b = np.ravel(ref.detach().cpu().numpy() if isinstance(ref, Tensor) else ref).astype(np.float64)
        if a.shape != b.shape:
            raise ValueError(f"{label}: {a.size} values against {b.size}")
        lim = max(np.abs(a).max(), np.abs(b).max(), 1e-300)
        ax.plot([-lim, lim], [-lim, lim], color="0.7", lw=1, zorder=0)
        ax.scatter(b, a, s=6, alpha=0.6)
        error = np.abs(a - b).max() / lim
        ax.set_title(f"{label}\nrelative error {error:.1e}", fontsize="medium")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_aspect("equal")
    return _finish(fig, title, False)


def error_bars(
    errors: Mapping[str, float],
    *,
    threshold: float | None = None,
    title: str | None = None,
    xlabel: str = "relative error",
) -> Figure:
    """Relative errors as horizontal bars on a log scale, with an optional pass threshold."""
    fig, ax = plt.subplots(figsize=(6.4, 0.35 * len(errors) + 1.2), layout="constrained")
    labels = list(errors)
    values = np.maximum([errors[k] for k in labels], 1e-18)  # an exact 0 still gets a bar
    ax.barh(labels, values, color="tab:blue")
    ax.set_xscale("log")
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    if threshold is not None:
        ax.axvline(threshold, color="tab:red", ls="--", label=f"threshold {threshold:.0e}")
        ax.legend(fontsize="small")
    return _finish(fig, title, False)


def distance_heatmap(
    distances: Mapping[str, np.ndarray],
    labels: Sequence[str],
    *,
    size: float = 4.6,
    title: str | None = None,
    random_weights: bool = False,
) -> Figure:
    """Distance matrices as heatmaps side by side, rows and columns labelled.

    Args:
        distances: ``{name: D}`` with D of shape (K,K), K = len(labels).
    """
    fig, axes = _panels(1, len(distances), size * len(distances), size)
    ticks = np.arange(len(labels))
    for ax, (name, D) in zip(axes[0], distances.items()):
        im = ax.imshow(D, cmap="viridis_r", interpolation="nearest")
        ax.set_xticks(ticks, labels, rotation=90, fontsize="x-small")
        ax.set_yticks(ticks, labels, fontsize="x-small")
        ax.set_title(name, fontsize="medium")
        fig.colorbar(im, ax=ax, shrink=0.7)
    return _finish(fig, title, random_weights)


def embedding_plot(
    coords: Mapping[str, np.ndarray],
    labels: Sequence[str],
    images: Sequence[ImageInput] | None = None,
    *,
    size: float = 5.0,
    thumbnail: int = 36,
    title: str | None = None,
    random_weights: bool = False,
) -> Figure:
    """2-D maps of a collection, one panel each, every point drawn as its thumbnail (or a dot).

    Args:
        coords: ``{name: X}`` with X of shape (K, 2).
        labels: K names, written beside the points.
        images: K images for thumbnails; None draws dots.
        thumbnail: thumbnail size in screen pixels.
    """
    fig, axes = _panels(1, len(coords), size * len(coords), size)
    thumbs = [to_array(im) for im in images] if images is not None else None
    for ax, (name, X) in zip(axes[0], coords.items()):
        ax.scatter(X[:, 0], X[:, 1], s=12, color="tab:blue")
        for k, (x, y) in enumerate(X):
            if thumbs is not None:
                a = thumbs[k]
                zoom = thumbnail / max(a.shape[:2])
                ax.add_artist(AnnotationBbox(OffsetImage(a, zoom=zoom, cmap="gray"), (x, y), frameon=False))
            below = (0, -thumbnail / 2 - 2)  # points: under the thumbnail
            ax.annotate(
                labels[k], (x, y), xytext=below, textcoords="offset points", ha="center", va="top", fontsize="x-small"
            )
        pad = 0.15 * max(np.ptp(X[:, 0]), np.ptp(X[:, 1]), 1e-12)
        ax.set_xlim(X[:, 0].min() - pad, X[:, 0].max() + pad)
        ax.set_ylim(X[:, 1].min() - pad, X[:, 1].max() + pad)
        ax.set_title(name, fontsize="medium")
        ax.set_xticks([])
        ax.set_yticks([])
    return _finish(fig, title, random_weights)


__all__ = [
    "LiveLossPlot",
    "RANDOM_WEIGHTS_NOTE",
    "TERMS",
    "distance_heatmap",
    "embedding_plot",
    "error_bars",
    "feature_map_grid",
    "feature_map_rows",
    "gradient_check_plot",
    "gram_heatmap",
    "image_grid",
    "loss_plot",
    "ratio_grid",
    "show_images",
    "spectrograms",
    "stamp_random_weights",
    "to_array",
]
