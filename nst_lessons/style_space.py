r"""Style space: compare a collection of images by how they are painted and by what they show.

    nst-lessons style-space FOLDER -o OUT [--size 256] [--weights imagenet] [--neighbours 5]

**Descriptors.** For an image with feature maps F^l (N_l channels, M_l positions) at the style
layers, Ĝ^l = F^l F^lᵀ / M_l is its Gram matrix per position (so that images of different sizes
compare). The paper's E_l between images a and b, with Ĝ in place of G, is
E_l(a, b) = 1/(4 N_l²) Σ_ij (Ĝ^l_ij(a) − Ĝ^l_ij(b))², and the **style distance**
d_style(a, b) = (Σ_l w_l E_l(a, b))^½ is the Euclidean distance between **style descriptors**:
each Ĝ^l scaled by √w_l / (2 N_l), of which only the upper triangle is kept, its off-diagonal
entries multiplied by √2 (Ĝ is symmetric, so this halves the storage and leaves every distance
unchanged). The **content descriptor** is ``relu4_2`` averaged over a 4 x 4 grid of regions
(512 x 16 numbers: what is roughly where), divided by the square root of its length, so that the
**content distance** is the root-mean-square difference.

**A folder.** :func:`describe_folder` reads every image under FOLDER (subfolders too; files whose
extension Pillow reads), brings each to the same long side, and runs the network (``--network``, default VGG-19) on batches of them
(images of the same shape share a forward pass), on the GPU when there is one. A DataLoader
decodes the files in worker processes while the network runs. Descriptors are cached in
``OUT/descriptors/<settings>/<sha256 of the file>.npz`` (``<settings>`` hashes the weights' name and
values, the pooling, size, layers and grid), next to a ``manifest.json`` that records
each file's SHA-256 (with its size and modification time, so an unchanged file is not even
re-read): a rerun over a grown collection only computes the new or changed images (a damaged
manifest is ignored with a warning: the descriptors are found again by content hash). A file that
cannot be read is listed (``OUT/skipped.csv`` and one line each on stderr) and skipped.

``nst-lessons style-space`` then writes, for both spaces: the distance matrices
(``distances_style.csv``, ``distances_content.csv``), each image's nearest neighbours
(``neighbours.csv``), and a 2-D map by classical MDS and by scikit-learn's t-SNE (``map.csv``,
and ``map.png`` with thumbnails). Exit status 1 when some files were skipped; 2, with no result
written (only the descriptor cache), when fewer than 3 images are readable.

**Scale on paper: 80,000 paintings at 512 px.** VGG-19 up to ``relu5_1`` (the deepest layer used)
costs 189.3 GFLOPs per 512 x 512 image (2 FLOPs per multiply-add; :func:`vgg_flops` computes it,
and the tests check it against torch's FLOP counter), plus 9.1 GFLOPs for the five Gram matrices:
about 198 GFLOPs, or 1.6 x 10¹⁶ FLOPs for the collection. One H100 runs these convolutions in
bf16 at a realistic 250 TFLOP/s (a quarter of its 989 TFLOP/s dense peak), so the arithmetic takes
about 65 s, 0.02 hours; even in plain fp32 at a realistic 40 TFLOP/s it is under 7 minutes.
The descriptors take 305,888 float32 (1.22 MB) for style and 8,192 (32 KB) for content per
image: 98 GB and 2.6 GB for the collection (half in float16). What bounds the run is reading and
decoding the files (tens of GB of JPEGs, at a few dozen to a few hundred images per second per
CPU core), which a DataLoader spreads over the machine's cores while the GPU waits on them, not
the other way round. That, and the cache (a grown collection costs only its new images), is why
one machine with a DataLoader is enough: a cluster would add scheduling and data movement to a
job whose GPU part is a few minutes. The full distance matrix would not scale the same way
(80,000² float64 is 51 GB): this command's CSV files and map are meant for up to a few thousand
images; for more, project the descriptors (PCA or a random projection keeps Euclidean distances
nearly intact) and use a nearest-neighbour index.

Measured on this project's 2-core CPU, shared with four other jobs (load average 6), in batches
of 8 square 128 px images: 2.5 to 4 images per second with one torch thread, and no better with two
(:func:`throughput`; 11.8 GFLOPs per image at 128 px, so about 30 to 47 GFLOP/s).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import os
import sys
import time
import warnings
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as nnf
from scipy.spatial.distance import pdist, squareform
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from nst_lessons import arguments
from nst_lessons.batch import check_results_folder, image_files
from nst_lessons.download import sha256_of
from nst_lessons.files import atomic_path
from nst_lessons.images import MIN_SIDE, ImageError, ImageLike, load_image, resize_long_side, to_tensor
from nst_lessons.losses import gram_matrix
from nst_lessons.networks import FeatureNetwork, load_network
from nst_lessons.vgg import STYLE_LAYERS

GRID = 4
"""The content descriptor averages the content layer over a GRID x GRID grid of regions."""

THUMBNAIL = 64
"""Long side in pixels of the thumbnails kept with the descriptors (for the map)."""

CACHE_VERSION = 1
"""Bumped whenever the descriptors' definition changes, so that old caches are not reused."""


# --------------------------------------------------------------------------- descriptors


def style_descriptor(features: Mapping[str, Tensor], style_layers: Sequence[str] = STYLE_LAYERS) -> Tensor:
    """Style descriptors, whose Euclidean distances are d_style = (Σ_l w_l E_l)^½ with w_l = 1/|L|.

    Per layer, the upper triangle of Ĝ^l = G^l / M_l scaled by √w_l / (2 N_l), off-diagonal entries
    times √2, concatenated over the layers.

    Args:
        features: ``{layer: F}`` with F of shape (B, N_l, H_l, W_l) for every style layer.

    Returns:
        Shape (B, Σ_l N_l (N_l + 1) / 2): 305,888 for the default layers.
    """
    w = 1.0 / len(style_layers)
    parts = []
    for layer in style_layers:
        F = features[layer]
        N, M = F.shape[1], F.shape[2] * F.shape[3]
        G_hat = gram_matrix(F) / M
        i, j = torch.triu_indices(N, N, device=F.device)
        scale = torch.where(i == j, 1.0, math.sqrt(2.0)) * (math.sqrt(w) / (2 * N))
        parts.append(G_hat[:, i, j] * scale)
    return torch.cat(parts, dim=1)


def content_descriptor(F: Tensor, grid: int = GRID) -> Tensor:
    """Content descriptors: F (B, N, H, W) averaged over grid x grid regions, shape (B, N grid²),
    divided by √(N grid²) so that Euclidean distances are root-mean-square differences."""
    pooled = nnf.adaptive_avg_pool2d(F, grid).flatten(1)
    return pooled / math.sqrt(pooled.shape[1])


@torch.no_grad()
def describe_batch(model: FeatureNetwork, images: Tensor, grid: int = GRID) -> tuple[np.ndarray, np.ndarray]:
    """Style and content descriptors of a batch of images of one shape.

    Args:
        images: RGB in [0,1], shape (B, 3, H, W).

    Returns:
        (style, content): float32 arrays of shapes (B, D_style) and (B, D_content).
    """
    features = model.extract(images.to(model.device), (*model.style_layers, *model.content_layers))
    style = style_descriptor(features, model.style_layers).float().cpu().numpy()
    content = content_descriptor(features[model.content_layers[0]], grid).float().cpu().numpy()
    return style, content


def _by_shape(tensors: Sequence[Tensor]) -> Iterable[list[int]]:
    """Indices of ``tensors`` (3, H, W) grouped by shape: each group can be one batch."""
    groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for k, x in enumerate(tensors):
        groups[tuple(x.shape)].append(k)
    return groups.values()


def _describe_tensors(model: FeatureNetwork, tensors: Sequence[Tensor], grid: int) -> tuple[np.ndarray, np.ndarray]:
    """Descriptors of images (3, H_k, W_k) of any shapes, in order: (K, D_style), (K, D_content)."""
    style: list[np.ndarray | None] = [None] * len(tensors)
    content: list[np.ndarray | None] = [None] * len(tensors)
    for group in _by_shape(tensors):
        s, c = describe_batch(model, torch.stack([tensors[k] for k in group]), grid)
        for row, k in enumerate(group):
            style[k], content[k] = s[row], c[row]
    return np.stack(style), np.stack(content)  # type: ignore[arg-type]


def describe_images(
    model: FeatureNetwork, images: Sequence[ImageLike], *, size: int | None = None, batch_size: int = 16, grid: int = GRID
) -> tuple[np.ndarray, np.ndarray]:
    """Descriptors of images in memory (or paths), computed ``batch_size`` at a time.

    Args:
        images: K images (paths, PIL images, tensors in [0,1]).
        size: long side each is resized to first; ``None`` keeps them as they are.

    Returns:
        (style, content): float32 arrays (K, D_style) and (K, D_content).
    """
    style, content = [], []
    for start in range(0, len(images), batch_size):
        chunk = [to_tensor(load_image(im, size))[0] for im in images[start : start + batch_size]]
        s, c = _describe_tensors(model, chunk, grid)
        style.append(s)
        content.append(c)
    return np.concatenate(style), np.concatenate(content)


# --------------------------------------------------------------------------- distances and maps


def distance_matrix(X: np.ndarray) -> np.ndarray:
    """Euclidean distances between the rows of X (K, D), in float64: shape (K, K)."""
    return squareform(pdist(np.asarray(X, dtype=np.float64)))


def classical_mds(D: np.ndarray, dims: int = 2) -> np.ndarray:
    """Coordinates (K, dims) whose Euclidean distances best match D (K, K): the top eigenvectors of
    B = -½ J D⁽²⁾ J, J = I - 11ᵀ/K, scaled by the square roots of their eigenvalues."""
    K = len(D)
    J = np.eye(K) - np.ones((K, K)) / K
    B = -0.5 * J @ (D**2) @ J
    eigenvalues, eigenvectors = np.linalg.eigh(B)
    top = np.argsort(eigenvalues)[::-1][:dims]
    return eigenvectors[:, top] * np.sqrt(np.maximum(eigenvalues[top], 0.0))


def tsne(D: np.ndarray, seed: int = 0) -> np.ndarray:
    """scikit-learn's t-SNE of the distances D (K, K), K >= 2: coordinates (K, 2). The perplexity
    (30 for large collections) is capped at (K - 1) / 3 so that small ones work too."""
    from sklearn.manifold import TSNE  # imported here: it takes a second, and only the map needs it

    perplexity = min(30.0, (len(D) - 1) / 3)
    return TSNE(2, metric="precomputed", init="random", perplexity=perplexity, random_state=seed).fit_transform(D)


def neighbours(D: np.ndarray, i: int, k: int = 3) -> list[int]:
    """The k nearest others of item i by the distances D (K, K), nearest first."""
    return [int(j) for j in np.argsort(D[i], kind="stable") if j != i][:k]


# --------------------------------------------------------------------------- a folder, cached


@dataclass
class Collection:
    """The descriptors of a folder's readable images.

    Attributes:
        names: K paths relative to the folder, in sorted order.
        style, content: float32 arrays (K, D_style) and (K, D_content).
        thumbnails: K uint8 arrays (h, w, 3), long side :data:`THUMBNAIL`.
        skipped: (name, one-line reason) of each file that could not be read.
        computed: how many images went through the network in this call (the rest came from the cache).
    """

    names: list[str]
    style: np.ndarray
    content: np.ndarray
    thumbnails: list[np.ndarray]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    computed: int = 0


class _Files(Dataset):
    """Decodes files in DataLoader workers: item k -> (k, tensor (3,H,W) or None, thumbnail or reason)."""

    def __init__(self, paths: Sequence[Path], size: int) -> None:
        self.paths, self.size = paths, size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, k: int) -> tuple[int, Tensor | None, np.ndarray | str]:
        try:
            im = load_image(self.paths[k], self.size)
        except (ImageError, OSError) as error:
            return k, None, str(error)
        return k, to_tensor(im)[0], np.asarray(resize_long_side(im, THUMBNAIL))


def weights_fingerprint(model: FeatureNetwork) -> str:
    """SHA-256 of the network's parameters (in order, as float32 bytes): which weights the
    descriptors came from, whatever their name (the seed of random weights, a checkpoint's content,
    filters rescaled in place by :func:`~nst_lessons.vgg.normalize_activations`)."""
    digest = hashlib.sha256()
    for parameter in model.parameters():
        digest.update(parameter.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _settings_key(model: FeatureNetwork, size: int, grid: int) -> tuple[dict[str, object], str]:
    settings = {
        "version": CACHE_VERSION, "network": model.name, "weights": model.spec.weights,
        "weights_sha256": weights_fingerprint(model), "pooling": model.spec.pooling,
        "preprocessing": getattr(model, "preprocessing", None), "size": size, "grid": grid,
        "style_layers": list(model.style_layers), "content_layers": list(model.content_layers),
    }  # fmt: skip
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    return settings, key


def _write_json(path: Path, data: object) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))


def _read_manifest(path: Path) -> dict[str, dict[str, object]]:
    """The manifest's ``{name: {"sha256", "size", "mtime_ns"}}``; ``{}`` if there is none, and ``{}``
    with a warning if it cannot be read: the descriptors are stored by content hash, so they are
    still found, at the cost of hashing every file once more."""
    if not path.is_file():
        return {}
    try:
        files = json.loads(path.read_text())["files"]
        if not isinstance(files, dict):
            raise TypeError("its files are not a mapping")
        return {name: entry for name, entry in files.items() if isinstance(entry, dict)}
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as error:
        reason = f"no {error}" if isinstance(error, KeyError) else str(error).splitlines()[0]
        warnings.warn(f"ignoring the unreadable {path} ({reason}); every file is hashed again", stacklevel=3)
        return {}


def _write_manifest(path: Path, settings: Mapping[str, object], entries: Mapping[str, Mapping[str, object]]) -> None:
    """The manifest records the hashes of the files that could be read, not why others failed:
    an undecodable file is tried again next time (its content may be fixed, or a decoder added)."""
    files = {name: entry for name, entry in entries.items() if "sha256" in entry}
    _write_json(path, {"settings": settings, "files": files})


def _hash_files(folder: Path, paths: Sequence[Path], known: Mapping[str, Mapping[str, object]]) -> dict[str, object]:
    """``{name: {"sha256", "size", "mtime_ns"} or {"error"}}``; a file whose size and modification
    time match the manifest keeps its recorded hash without being read."""
    entries: dict[str, object] = {}
    for path in paths:
        name = path.relative_to(folder).as_posix()
        try:
            stat = path.stat()
            old = known.get(name, {})
            if old.get("size") == stat.st_size and old.get("mtime_ns") == stat.st_mtime_ns and "sha256" in old:
                entries[name] = {key: old[key] for key in ("sha256", "size", "mtime_ns")}
            else:
                entries[name] = {"sha256": sha256_of(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        except OSError as error:
            entries[name] = {"error": f"cannot read it ({error.strerror or error})"}
    return entries


def describe_folder(
    folder: str | os.PathLike[str],
    cache: str | os.PathLike[str],
    model: FeatureNetwork,
    *,
    size: int = 256,
    batch_size: int = 16,
    workers: int = 0,
    grid: int = GRID,
    exclude: str | os.PathLike[str] | None = None,
) -> Collection:
    """Descriptors of every image under ``folder``, computing only those not already in ``cache``.

    Args:
        folder: the collection; subfolders are included.
        cache: where descriptors are kept, one ``.npz`` per distinct file content, under a
            subfolder per settings (weights and their :func:`weights_fingerprint`, pooling, size,
            layers, grid), with ``manifest.json``.
        size: long side every image is brought to, px (at least 32).
        batch_size: images decoded per DataLoader batch; those of one shape share a forward pass.
        workers: DataLoader worker processes decoding files (0: in this process).
        exclude: a subfolder of ``folder`` to leave out (the command's own output folder).

    Raises:
        ImageError: ``folder`` is not a folder, or ``size`` is below 32 px.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageError(f"no folder at {folder}")
    if size < MIN_SIDE:
        raise ImageError(f"size must be at least {MIN_SIDE} px, got {size}")
    settings, key = _settings_key(model, size, grid)
    store = Path(cache) / key
    store.mkdir(parents=True, exist_ok=True)
    manifest_path = store / "manifest.json"
    known = _read_manifest(manifest_path)
    paths = image_files([folder], recursive=True)
    if exclude is not None:
        excluded = Path(exclude).resolve()
        paths = [p for p in paths if not p.resolve().is_relative_to(excluded)]
    entries = _hash_files(folder, paths, known)
    _write_manifest(manifest_path, settings, entries)  # descriptors are found by hash: a Ctrl-C loses none
    skipped = [(name, e["error"]) for name, e in entries.items() if "error" in e]
    todo, queued = [], set()
    for path in paths:
        entry = entries[path.relative_to(folder).as_posix()]
        if "error" in entry or entry["sha256"] in queued or (store / f"{entry['sha256']}.npz").is_file():
            continue
        todo.append(path)
        queued.add(entry["sha256"])  # identical files are computed once
    computed = 0
    undecodable: dict[str, tuple[str, str]] = {}  # sha256 -> (name, reason): every file with that content is skipped
    loader = DataLoader(_Files(todo, size), batch_size=batch_size, num_workers=workers, collate_fn=list)
    for items in loader:
        good = [(k, x, thumb) for k, x, thumb in items if x is not None]
        for k, _, reason in items:
            if isinstance(reason, str):
                name = todo[k].relative_to(folder).as_posix()
                undecodable[entries[name]["sha256"]] = (name, reason)
        if good:
            style, content = _describe_tensors(model, [x for _, x, _ in good], grid)
            for row, (k, _, thumb) in enumerate(good):
                sha = entries[todo[k].relative_to(folder).as_posix()]["sha256"]
                with atomic_path(store / f"{sha}.npz") as tmp, open(tmp, "wb") as f:
                    np.savez(f, style=style[row], content=content[row], thumbnail=thumb)
            computed += len(good)
    for name, entry in entries.items():
        if entry.get("sha256") in undecodable:
            tried, reason = undecodable[entry["sha256"]]
            skipped.append((name, reason if name == tried else f"same content as {tried}, which could not be read"))
    names = [n for n, e in entries.items() if "error" not in e and e["sha256"] not in undecodable]
    style, content, thumbnails = [], [], []
    for name in names:
        with np.load(store / f"{entries[name]['sha256']}.npz") as npz:
            style.append(npz["style"])
            content.append(npz["content"])
            thumbnails.append(npz["thumbnail"])
    empty = np.zeros((0, 0), np.float32)
    return Collection(
        names, np.stack(style) if names else empty, np.stack(content) if names else empty, thumbnails,
        sorted(skipped), computed,
    )  # fmt: skip


# --------------------------------------------------------------------------- the command's outputs


def _write_csv(path: Path, rows: Iterable[Sequence[object]]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        csv.writer(f).writerows(rows)


def write_outputs(
    collection: Collection, out: Path, *, k: int = 5, random_weights: bool = False
) -> dict[tuple[str, str], np.ndarray]:
    """Distances, neighbours and maps of ``collection`` (K >= 3 images) as CSV files and ``map.png``.

    Returns:
        ``{(space, method): X}`` for space "style"/"content" and method "mds"/"tsne", X of shape (K, 2).
    """
    # matplotlib is imported here, not at the top: every nst-lessons command imports this module
    import matplotlib.pyplot as plt

    from nst_lessons.plotting import embedding_plot

    names = collection.names
    D = {"style": distance_matrix(collection.style), "content": distance_matrix(collection.content)}
    for space, matrix in D.items():
        _write_csv(out / f"distances_{space}.csv", [["file", *names], *([n, *row] for n, row in zip(names, matrix))])
    rows: list[list[object]] = [["file", "space", "rank", "neighbour", "distance"]]
    for i, name in enumerate(names):
        for space, matrix in D.items():
            rows += [[name, space, r, names[j], matrix[i, j]] for r, j in enumerate(neighbours(matrix, i, k), start=1)]
    _write_csv(out / "neighbours.csv", rows)
    methods = {"mds": classical_mds, "tsne": tsne}
    maps = {(space, m): method(matrix) for space, matrix in D.items() for m, method in methods.items()}
    header = ["file"] + [f"{space}_{m}_{axis}" for space, m in maps for axis in "xy"]
    coords = np.concatenate(list(maps.values()), axis=1)  # (K, 8)
    _write_csv(out / "map.csv", [header, *([n, *row] for n, row in zip(names, coords))])
    titled = {f"{space} space, {'MDS' if m == 'mds' else 't-SNE'}": X for (space, m), X in maps.items()}
    title = f"{len(names)} images by style and by content"
    fig = embedding_plot(titled, names, collection.thumbnails, size=6.0, title=title, random_weights=random_weights)
    with atomic_path(out / "map.png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return maps


def vgg_flops(model: FeatureNetwork, height: int, width: int, up_to: str = "relu5_1") -> int:
    """FLOPs (2 per multiply-add) of the network's convolutions from the input up to layer ``up_to``
    on one (3, height, width) image; ReLU, pooling and the Grams are not counted."""
    return 2 * model.multiply_adds(height, width, [up_to])


def throughput(model: FeatureNetwork, size: int = 128, batch_size: int = 8, batches: int = 3) -> float:
    """Images per second of :func:`describe_batch` on square ``size`` px images (after one warm-up batch)."""
    x = torch.rand(batch_size, 3, size, size)
    describe_batch(model, x)
    start = time.perf_counter()
    for _ in range(batches):
        describe_batch(model, x)
    return batch_size * batches / (time.perf_counter() - start)


def add_style_space_parser(subparsers: argparse._SubParsersAction) -> None:
    """The ``style-space`` subcommand."""
    p = subparsers.add_parser(
        "style-space",
        help="compare a folder of images by style and by content",
        description="Gram-matrix style descriptors and pooled relu4_2 content descriptors of every image "
        "under FOLDER (cached in OUT, so a rerun computes only new images); distances, nearest "
        "neighbours and 2-D maps (classical MDS, t-SNE) written to OUT as CSV files and map.png.",
    )
    p.add_argument("folder", type=Path, help="the collection (subfolders included)")
    p.add_argument("-o", "--output", type=Path, required=True, help="folder for the results and the descriptor cache")
    p.add_argument("--size", type=arguments.int_at_least(MIN_SIDE), default=256, help="long side every image is brought to, px (default 256)")
    arguments.add_network_arguments(p, style_network=False)
    p.add_argument("--batch-size", type=arguments.int_at_least(1), default=16, help="images per batch (default 16)")
    p.add_argument("--workers", type=arguments.int_at_least(0), default=min(4, os.cpu_count() or 1), help="processes decoding files (default: up to 4)")
    p.add_argument("--neighbours", type=arguments.int_at_least(1), default=5, help="nearest neighbours listed per image (default 5)")
    p.set_defaults(func=run_style_space)


def run_style_space(args: argparse.Namespace) -> int:
    """The command: describe, write the outputs, list skipped files; 1 if any were skipped.

    With fewer than 3 readable images it stops (exit 2) before writing any result; OUT then holds
    only the descriptors computed so far (``OUT/descriptors``, reused by the next run).
    """
    if not args.folder.is_dir():
        raise ImageError(f"no folder at {args.folder}")
    check_results_folder(args.output)
    args.output.mkdir(exist_ok=True)
    model = load_network(arguments.network_spec(args), args.device)
    collection = describe_folder(
        args.folder, args.output / "descriptors", model, size=args.size, batch_size=args.batch_size,
        workers=args.workers, exclude=args.output,
    )  # fmt: skip
    for name, reason in collection.skipped:
        print(f"nst-lessons: skipped: {name}: {reason}", file=sys.stderr)
    if len(collection.names) < 3:  # before any result is written; the descriptors stay cached
        raise ImageError(f"style-space needs at least 3 readable images; {args.folder} has {len(collection.names)}")
    _write_csv(args.output / "skipped.csv", [["file", "reason"], *collection.skipped])
    k = min(args.neighbours, len(collection.names) - 1)
    write_outputs(collection, args.output, k=k, random_weights=model.random)
    cached = len(collection.names) - collection.computed
    print(
        f"{len(collection.names)} images ({collection.computed} computed, {cached} from the cache), "
        f"{len(collection.skipped)} skipped; wrote {args.output}/map.png, map.csv, neighbours.csv, distances_*.csv"
    )
    return 1 if collection.skipped else 0
