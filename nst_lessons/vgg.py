"""The VGG family (Simonyan & Zisserman 2015) built by hand, with named layers, the published weight
sets and their preprocessing: VGG-11, 13, 16 and 19 from one table of blocks.

Each network is torchvision's ``vgg*().features`` rebuilt layer by layer, so that a checkpoint in
torchvision's key layout (``features.N.weight`` / ``features.N.bias``) loads into it unchanged.
Only the convolutional part exists: style transfer never uses the classifier.

Layer names follow the paper: ``conv{b}_{k}`` is the k-th convolution of block b *before* its
ReLU, ``relu{b}_{k}`` the rectified map, ``pool{b}`` the pooling that closes block b. So VGG-16's
blocks end at conv3_3, conv4_3, conv5_3 and VGG-19's at conv3_4, conv4_4, conv5_4; every depth has
the default layers relu4_2 (content) and relu1_1 ... relu5_1 (style).

Which one is the paper's "conv4_2"?  The paper writes conv4_2, but Gatys et al.'s Caffe code and
jcjohnson/neural-style read the *rectified* responses, because Caffe's ReLU runs in place and
overwrites the convolution's output blob.  In practice "conv4_2" means ``relu4_2`` here, and the
package's defaults use the relu names.  For the same reason this network never uses in-place
ReLU: ``nn.ReLU(inplace=True)`` would silently overwrite a stored ``conv*`` feature map with its
rectified version, and autograd would then differentiate the wrong function.

:class:`VGG` is a :class:`nst_lessons.networks.FeatureNetwork`; :func:`build` is the builder that
:func:`nst_lessons.networks.load_network` calls for ``"vgg19"``, ``"vgg16"``, ``"vgg13"``, ``"vgg11"``.
"""

from __future__ import annotations

import http.client
import os
import urllib.error
import uuid
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from nst_lessons.download import ChecksumError, download, sha256_of
from nst_lessons.files import atomic_path
from nst_lessons.networks import FeatureNetwork, NetworkSpec

BLOCKS: dict[str, tuple[tuple[int, int], ...]] = {
    "vgg11": ((64, 1), (128, 1), (256, 2), (512, 2), (512, 2)),  # torchvision's cfgs "A"
    "vgg13": ((64, 2), (128, 2), (256, 2), (512, 2), (512, 2)),  # "B"
    "vgg16": ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)),  # "D"
    "vgg19": ((64, 2), (128, 2), (256, 4), (512, 4), (512, 4)),  # "E"
}
"""(channels, number of 3x3 convolutions) of each block, per depth; every block ends with 2x2 pooling."""

ARCHS = tuple(BLOCKS)
TITLES = {arch: f"VGG-{arch[3:]}" for arch in ARCHS}


def layer_names(arch: str = "vgg19") -> tuple[str, ...]:
    """Every layer name of ``arch`` in order; a name's position is its index in torchvision's ``features``."""
    names: list[str] = []
    for b, (_, n_convs) in enumerate(BLOCKS[arch], start=1):
        for k in range(1, n_convs + 1):
            names += [f"conv{b}_{k}", f"relu{b}_{k}"]
        names.append(f"pool{b}")
    return tuple(names)


LAYERS: tuple[str, ...] = layer_names("vgg19")
"""VGG-19's 37 layer names in order: conv1_1, relu1_1, conv1_2, relu1_2, pool1, ..., relu5_4, pool5.
The position of a name in LAYERS is its index in torchvision's ``vgg19().features``."""

CONV_LAYERS: tuple[str, ...] = tuple(n for n in LAYERS if n.startswith("conv"))
"""VGG-19's 16 convolutions, conv1_1 ... conv5_4."""

CONTENT_LAYERS: tuple[str, ...] = ("relu4_2",)
"""The paper's content layer "conv4_2", read after its ReLU; every depth has it."""

STYLE_LAYERS: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
"""The paper's style layers "conv1_1" ... "conv5_1", read after their ReLUs, weighted 1/5 each."""

# The published checkpoints by (arch, weights): (file name, URL). The hex part of the file name is
# the first 8 hex digits of the file's SHA-256, torchvision's convention (torch.hub's check_hash).
CHECKPOINTS: dict[tuple[str, str], tuple[str, str]] = {
    ("vgg11", "imagenet"): ("vgg11-8a719046.pth", "https://download.pytorch.org/models/vgg11-8a719046.pth"),
    ("vgg13", "imagenet"): ("vgg13-19584684.pth", "https://download.pytorch.org/models/vgg13-19584684.pth"),
    ("vgg16", "imagenet"): ("vgg16-397923af.pth", "https://download.pytorch.org/models/vgg16-397923af.pth"),
    ("vgg19", "imagenet"): ("vgg19-dcbb9e9d.pth", "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"),
    # The original Caffe weights as converted by jcjohnson (what neural-style-pt downloads, with
    # torch.hub's load_url, whose file names carry the same hash prefix; neural-style-pt does not
    # check it, and no download was possible here to confirm VGG-16's: a mismatch is refused).
    ("vgg16", "caffe"): ("vgg16-00b39a1b.pth", "https://web.eecs.umich.edu/~justincj/models/vgg16-00b39a1b.pth"),
    ("vgg19", "caffe"): ("vgg19-d01eb7cb.pth", "https://web.eecs.umich.edu/~justincj/models/vgg19-d01eb7cb.pth"),
}

LOSS_WEIGHTS: dict[str, tuple[float, float, float]] = {
    "imagenet": (1.0, 1e8, 1.0),
    "caffe": (1.0, 1e4, 1e4),
    "random": (1.0, 1e8, 1.0),
}
"""Default (α, β, γ) per weights, for every depth (see :data:`nst_lessons.transfer.DEFAULT_LOSS_WEIGHTS`
for why). Tuned on VGG-19; the shallower networks' activations are of the same order (same
preprocessing, same block widths), and without their weights offline they are not tuned apart."""

# Preprocessing: "imagenet" takes RGB in [0,1] normalised by the ImageNet mean and std;
# "caffe" takes BGR in [0,255] minus the Caffe mean pixel (given here in BGR order).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
PREPROCESSING = ("imagenet", "caffe")
POOLING = ("max", "avg")
INDEX_BYTES = 8  # max pooling keeps int64 argmax indices for its backward pass


class RandomWeightsWarning(UserWarning):
    """Raised as a warning whenever a VGG with random weights is built."""


class WeightsError(RuntimeError):
    """A checkpoint could not be obtained or does not hold the network asked for."""


def resolve_layer(name: str) -> int:
    """Index of a VGG-19 layer name in :data:`LAYERS`; a clear ``ValueError`` for an unknown name.
    (Any network: :meth:`nst_lessons.networks.FeatureNetwork.layer_index`.)"""
    try:
        return LAYERS.index(name)
    except ValueError:
        raise ValueError(
            f"unknown VGG-19 layer {name!r}; expected one of conv1_1, relu1_1, ..., pool5 "
            "(see nst_lessons.vgg.LAYERS)"
        ) from None


class VGG(FeatureNetwork):
    """The convolutional part of VGG-11, 13, 16 or 19 with named feature extraction.

    Attributes:
        features: ``nn.Sequential`` of the layers, indexed as in torchvision.
        arch: ``"vgg11"``, ``"vgg13"``, ``"vgg16"`` or ``"vgg19"``.
        preprocessing: ``"imagenet"`` or ``"caffe"``: what the weights expect (see :meth:`preprocess`).
        pooling: ``"max"`` or ``"avg"``.
        weights: where the weights came from ("imagenet", "caffe", a path, "random").
    """

    def __init__(self, arch: str = "vgg19", pooling: str = "max", preprocessing: str = "imagenet") -> None:
        super().__init__()
        if arch not in BLOCKS:
            raise ValueError(f"unknown VGG {arch!r}; expected one of {', '.join(ARCHS)}")
        if pooling not in POOLING:
            raise ValueError(f"unknown pooling {pooling!r}; expected 'max' or 'avg'")
        if preprocessing not in PREPROCESSING:
            raise ValueError(f"unknown preprocessing {preprocessing!r}; expected 'imagenet' or 'caffe'")
        layers: list[nn.Module] = []
        c_in = 3
        for c_out, n_convs in BLOCKS[arch]:
            for _ in range(n_convs):
                layers += [nn.Conv2d(c_in, c_out, kernel_size=3, padding=1), nn.ReLU(inplace=False)]
                c_in = c_out
            layers.append(nn.MaxPool2d(2, 2) if pooling == "max" else nn.AvgPool2d(2, 2))
        self.features = nn.Sequential(*layers)
        self.arch = self.name = arch
        self.layers = layer_names(arch)
        self.content_layers, self.style_layers = CONTENT_LAYERS, STYLE_LAYERS
        self.pooling = pooling
        self.preprocessing = preprocessing
        self.weights = "random"
        self.requires_grad_(False)
        self._constants: dict[tuple[torch.device, torch.dtype], tuple[Tensor, Tensor]] = {}

    # The description follows the weights actually loaded (set by :func:`load_vgg`).
    @property
    def random(self) -> bool:  # type: ignore[override]
        return self.weights == "random"

    @property
    def spec(self) -> NetworkSpec:  # type: ignore[override]
        return NetworkSpec(self.arch, self.weights, self.pooling, getattr(self, "seed", 0))

    @property
    def loss_weights(self) -> tuple[float, float, float]:  # type: ignore[override]
        return LOSS_WEIGHTS.get(self.weights, LOSS_WEIGHTS[self.preprocessing])

    @property
    def title(self) -> str:
        return TITLES[self.arch]

    def preprocess(self, image: Tensor) -> Tensor:
        """Map RGB in [0,1], shape (B,3,H,W), to the input the weights were trained on.

        The mean and std are made once per device and dtype, straight from the float64 Python
        constants above (so a float64 run gets them to the last bit): building a tensor from
        Python numbers on CUDA is a blocking host-to-device copy, a host sync per evaluation and
        an error inside a CUDA graph capture.
        """
        key = (image.device, image.dtype)
        if key not in self._constants:
            if self.preprocessing == "imagenet":
                shift, scale = IMAGENET_MEAN, IMAGENET_STD
            else:
                shift, scale = CAFFE_MEAN_BGR, (1.0, 1.0, 1.0)
            self._constants[key] = tuple(image.new_tensor(c).view(1, 3, 1, 1) for c in (shift, scale))  # type: ignore[assignment]
        shift, scale = self._constants[key]
        if self.preprocessing == "imagenet":
            return (image - shift) / scale
        return image.flip(1) * 255.0 - shift

    def extract(self, image: Tensor, layers: Iterable[str]) -> dict[str, Tensor]:
        """Feature maps of ``image`` at the named layers.

        Args:
            image: RGB in [0,1], shape (B,3,H,W); preprocessing is applied here.
            layers: names from :attr:`layers`, in any order, repeats allowed.

        Returns:
            ``{name: F}`` with F of shape (B, N_l, H_l, W_l). The network runs only as deep as the
            deepest requested layer.
        """
        wanted = {self.layer_index(name): name for name in layers}
        if not wanted:
            return {}
        if image.dim() != 4 or image.shape[1] != 3:
            raise ValueError(f"expected an image batch of shape (B,3,H,W), got {tuple(image.shape)}")
        out: dict[str, Tensor] = {}
        h = self.preprocess(image)
        for i in range(max(wanted) + 1):
            h = self.features[i](h)
            if i in wanted:
                out[wanted[i]] = h
        return out

    def forward(self, image: Tensor) -> Tensor:
        """All layers: (B,3,H,W) RGB in [0,1] -> pool5 output (B,512,H/32,W/32)."""
        return self.features(self.preprocess(image))

    # ----------------------------------------------------------------- geometry and cost

    def _walk(self, layers: Iterable[str]) -> list[tuple[str, nn.Module]]:
        return list(zip(self.layers, self.features))[: self.layer_index(self.deepest(layers)) + 1]

    def layer_shapes(self, height: int, width: int, layers: Iterable[str]) -> dict[str, tuple[int, int, int]]:
        """3x3 convolutions with padding 1 keep the size; 2x2 pooling halves it, rounding down."""
        shapes, c, h, w = {}, 3, height, width
        for name, module in self._walk(layers):
            if isinstance(module, nn.Conv2d):
                c = module.out_channels
            elif not isinstance(module, nn.ReLU):
                h, w = h // 2, w // 2
            shapes[name] = (c, h, w)
        return shapes

    def layer_masks(self, mask: Tensor, layers: Iterable[str]) -> dict[str, Tensor]:
        """Average-pooled 2x2 at every pooling before the layer (see :mod:`nst_lessons.masks` for why)."""
        wanted = set(layers)
        out: dict[str, Tensor] = {}
        m = mask
        for name, _ in self._walk(wanted) if wanted else []:
            if name.startswith("pool"):
                m = nn.functional.avg_pool2d(m, 2, 2)
            if name in wanted:
                out[name] = m
        return out

    def saved_bytes(self, height: int, width: int, layers: Iterable[str], bytes_per_value: int) -> dict[str, int]:
        """Each convolution keeps its input (and under autocast its weight, cast afresh at each call),
        each ReLU its output, each pooling its input and, for max pooling, int64 indices. A ReLU's
        output is the next layer's input: one tensor, counted once under the ReLU's name."""
        shapes = self.layer_shapes(height, width, layers)
        saved: dict[str, int] = {}
        previous, c_in, h_in, w_in = "input", 3, height, width
        for name, module in self._walk(layers):
            c, h, w = shapes[name]
            if not isinstance(module, nn.ReLU):  # conv and pooling keep their input
                saved[previous] = c_in * h_in * w_in * bytes_per_value
            if isinstance(module, nn.Conv2d) and bytes_per_value != 4:
                saved[name + ".weight"] = module.weight.numel() * bytes_per_value
            if isinstance(module, nn.ReLU):
                saved[name] = c * h * w * bytes_per_value
            if isinstance(module, nn.MaxPool2d):
                saved[name + ".indices"] = c * h * w * INDEX_BYTES
            previous, c_in, h_in, w_in = name, c, h, w
        return saved

    def parameter_count(self, layers: Iterable[str]) -> int:
        return sum(p.numel() for _, module in self._walk(layers) for p in module.parameters())

    def multiply_adds(self, height: int, width: int, layers: Iterable[str]) -> int:
        shapes = self.layer_shapes(height, width, layers)
        return sum(
            module.weight.numel() * shapes[name][1] * shapes[name][2]
            for name, module in self._walk(layers)
            if isinstance(module, nn.Conv2d)
        )

    def extra_repr(self) -> str:
        return f"arch={self.arch!r}, weights={self.weights!r}, pooling={self.pooling!r}, preprocessing={self.preprocessing!r}"


class VGG19(VGG):
    """VGG-19 (the paper's network): ``VGG("vgg19", ...)``."""

    def __init__(self, pooling: str = "max", preprocessing: str = "imagenet") -> None:
        super().__init__("vgg19", pooling, preprocessing)


# --------------------------------------------------------------------------- weights


def weights_home() -> Path:
    """Where downloaded weights are cached: ``$NST_LESSONS_HOME`` or torch's hub ``checkpoints``."""
    home = os.environ.get("NST_LESSONS_HOME")
    if home:
        return Path(home).expanduser()
    return Path(torch.hub.get_dir()) / "checkpoints"


def checkpoint_url(weights: str, arch: str = "vgg19") -> str:
    """The URL of a published checkpoint, honouring ``$NST_LESSONS_WEIGHTS_MIRROR``."""
    file_name, url = CHECKPOINTS[arch, weights]
    mirror = os.environ.get("NST_LESSONS_WEIGHTS_MIRROR")
    return f"{mirror.rstrip('/')}/{file_name}" if mirror else url


def _offline_message(weights: str, arch: str, url: str, dest: Path, reason: object) -> str:
    return (
        f"could not download the {weights!r} {TITLES[arch]} weights from {url} ({reason}); put the file "
        f"there by hand at {dest}, set NST_LESSONS_WEIGHTS_MIRROR to a mirror that has it, or "
        "use weights='random' (offline; results will not look like the paper's)"
    )


def _conv_state(state: Mapping[str, object], source: str, arch: str) -> dict[str, Tensor]:
    """Keep the ``features.*`` entries of a torchvision-layout state dict and check their shapes."""
    with torch.device("meta"):
        template = VGG(arch).state_dict()
    conv = {k: v for k, v in state.items() if isinstance(k, str) and k.startswith("features.")}
    missing = sorted(set(template) - set(conv), key=lambda k: (int(k.split(".")[1]), k))
    if missing:
        raise WeightsError(f"{source} is not a {TITLES[arch]} checkpoint in torchvision's layout: no {missing[0]}")
    for key, value in conv.items():
        if key not in template:
            raise WeightsError(f"{source} has an unexpected key {key}")
        if not isinstance(value, Tensor) or value.shape != template[key].shape:
            shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise WeightsError(f"{source}: {key} has shape {shape}, expected {tuple(template[key].shape)}")
    return conv


def _read_checkpoint(path: Path, arch: str) -> dict[str, Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated zip, a pickle with code in it, not a checkpoint at all
        raise WeightsError(
            f"{path} is not a readable torch checkpoint of tensors ({type(error).__name__}; "
            "weights_only=True refuses pickled objects other than tensors)"
        ) from None
    if not isinstance(state, Mapping):
        raise WeightsError(f"{path} does not hold a state dict")
    return _conv_state(state, str(path), arch)


def _save_conv(state: dict[str, Tensor], conv: Path) -> None:
    with atomic_path(conv) as tmp:
        torch.save(state, tmp)


def check_published(arch: str, weights: str) -> None:
    """A ``ValueError`` unless :data:`CHECKPOINTS` has ``weights`` for ``arch``."""
    if (arch, weights) not in CHECKPOINTS:
        published = ", ".join(w for a, w in CHECKPOINTS if a == arch)
        raise ValueError(f"no published {weights!r} weights for {TITLES.get(arch, arch)}; expected one of {published}")


def fetch_weights(weights: str, *, arch: str = "vgg19", progress: bool = True) -> Path:
    """Path of the convolutional weights of a published checkpoint, downloading once if needed.

    The full checkpoint (about 550 MB with the classifier) is verified against its SHA-256 prefix,
    then only its ``features.*`` part (about 80 MB) is kept, as ``<name>.features.pth``. A full file
    already in the cache folder (put there by hand, or torchvision's own copy) is used and left in
    place if its hash matches, and removed if not; a downloaded one is deleted once its features are
    saved. A cached features file that fails to load is removed and fetched again. Several processes
    may fetch into one cache at once (a classroom's shared folder).
    """
    check_published(arch, weights)
    file_name, _ = CHECKPOINTS[arch, weights]
    home = weights_home()
    full = home / file_name
    conv = home / (Path(file_name).stem + ".features.pth")
    if conv.is_file():
        try:
            _read_checkpoint(conv, arch)
            return conv
        except WeightsError:
            conv.unlink(missing_ok=True)
    try:
        home.mkdir(parents=True, exist_ok=True)
        if not os.access(home, os.W_OK):
            raise PermissionError("not writable")
    except OSError as error:
        raise WeightsError(
            f"cannot use {home} as the weights cache ({error.strerror or error}); "
            "set NST_LESSONS_HOME to a writable folder"
        ) from None
    prefix = file_name.split("-")[1].split(".")[0]  # torchvision's convention: name-<sha256 prefix>.pth
    removed = ""
    if full.is_file():
        if sha256_of(full).startswith(prefix):
            _save_conv(_read_checkpoint(full, arch), conv)
            return conv
        full.unlink(missing_ok=True)
        removed = f"the file at {full} is not the published one (SHA-256 does not start with {prefix}) and was removed; "
    url = checkpoint_url(weights, arch)
    mine = home / f".{file_name}.{uuid.uuid4().hex}.download"  # its own name: concurrent fetches don't collide
    try:
        download(url, mine, sha256=prefix, progress=progress)
        _save_conv(_read_checkpoint(mine, arch), conv)
    except ChecksumError as error:
        raise WeightsError(removed + str(error)) from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
        reason = getattr(error, "reason", error)
        raise WeightsError(removed + _offline_message(weights, arch, url, full, reason)) from None
    finally:
        mine.unlink(missing_ok=True)
    return conv


WEIGHTS = ("imagenet", "caffe", "random")
"""The weights a VGG can be asked for by name (a checkpoint path is the fourth kind); which of
"imagenet" and "caffe" are published for which depth: :data:`CHECKPOINTS`."""


def _is_caffe_file(source: str) -> bool:
    name = Path(source).name
    return any(name.startswith(file_name[:-4]) for (_, w), (file_name, _) in CHECKPOINTS.items() if w == "caffe")


def load_vgg(
    arch: str = "vgg19",
    weights: str | os.PathLike[str] = "imagenet",
    pooling: str = "max",
    device: str | torch.device | None = None,
    *,
    preprocessing: str | None = None,
    seed: int = 0,
    progress: bool = True,
) -> VGG:
    """Build a VGG and load its weights.

    Args:
        arch: ``"vgg19"``, ``"vgg16"``, ``"vgg13"`` or ``"vgg11"``.
        weights: ``"imagenet"`` (torchvision's checkpoint, e.g. ``vgg16-397923af.pth``), ``"caffe"``
            (the original Caffe weights as converted by jcjohnson; VGG-16 and VGG-19 only), a path to
            a local checkpoint in torchvision's key layout (other keys such as ``classifier.*``
            ignored), or ``"random"`` (He-initialised from ``seed``, announced with a
            :class:`RandomWeightsWarning`). :data:`CHECKPOINTS` lists the files.
        pooling: ``"max"`` or ``"avg"`` (the paper replaces max pooling by average pooling).
        device: where the model lives; ``None`` means CUDA when available, else CPU; ``"meta"``
            builds the description only (no weights, nothing downloaded, no warning).
        preprocessing: ``"imagenet"`` or ``"caffe"``; ``None`` infers it from ``weights``
            (``"caffe"`` for the Caffe weights or a file named like them).
        seed: the seed for ``"random"``.
        progress: show download progress.

    Returns:
        A :class:`VGG` (a :class:`VGG19` for ``"vgg19"``) in eval mode with ``requires_grad=False``
        parameters.
    """
    if arch not in BLOCKS:
        raise ValueError(f"unknown VGG {arch!r}; expected one of {', '.join(ARCHS)}")
    source = os.fspath(weights)
    if source in ("imagenet", "caffe"):  # refused already when only described, before any work
        check_published(arch, source)
    if preprocessing is None:
        preprocessing = "caffe" if source == "caffe" or _is_caffe_file(source) else "imagenet"
    device = default_device(device)
    if device.type == "meta":
        with device:
            model = VGG19(pooling, preprocessing) if arch == "vgg19" else VGG(arch, pooling, preprocessing)
        model.weights, model.seed = source, seed
        return model.eval()
    model = VGG19(pooling, preprocessing) if arch == "vgg19" else VGG(arch, pooling, preprocessing)
    if source == "random":
        generator = torch.Generator().manual_seed(seed)
        for module in model.features:
            if isinstance(module, nn.Conv2d):
                fan_in = module.in_channels * 9
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * (2 / fan_in) ** 0.5)
                module.bias.zero_()
        warnings.warn(
            f"{TITLES[arch]} with weights='random': no trained weights are used, so images will not look "
            "like the paper's (fine for tests, timing and learning the mechanics)",
            RandomWeightsWarning,
            stacklevel=3,
        )
    else:
        if source in WEIGHTS:
            path = fetch_weights(source, arch=arch, progress=progress)
        elif Path(source).is_file():
            path = Path(source)
        elif os.sep in source or source.endswith((".pth", ".pt")):
            raise WeightsError(f"no checkpoint file at {source}")
        else:
            raise ValueError(f"unknown weights {source!r}; expected one of {', '.join(WEIGHTS)} or a path")
        model.load_state_dict(_read_checkpoint(path, arch))
    model.weights, model.seed = source, seed
    return model.eval().to(device)


def load_vgg19(
    weights: str | os.PathLike[str] = "imagenet", pooling: str = "max", device: str | torch.device | None = None, **options: Any
) -> VGG19:
    """:func:`load_vgg` for VGG-19 (``options``: its ``preprocessing``, ``seed``, ``progress``):
    ``"imagenet"`` is torchvision's ``vgg19-dcbb9e9d.pth``, ``"caffe"`` jcjohnson's ``vgg19-d01eb7cb.pth``."""
    return load_vgg("vgg19", weights, pooling, device, **options)  # type: ignore[return-value]


def build(spec: NetworkSpec, device: str | torch.device | None = None, progress: bool = True) -> VGG:
    """The builder of the VGG family for :func:`nst_lessons.networks.load_network`."""
    return load_vgg(spec.arch, spec.weights, spec.pooling, device, seed=spec.seed, progress=progress)


def default_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` as a ``torch.device``; ``None`` means CUDA when available, else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def normalize_activations(model: VGG, images: Tensor | Iterable[Tensor]) -> dict[str, Tensor]:
    """Rescale ``model``'s filters (any depth), in place, so that each one's mean activation over ``images`` is 1.

    Gatys et al. ran their experiments on such a *normalised* VGG-19 (described in the CVPR 2016
    version of the paper, section 2; his code ships it): the mean of each rectified feature map,
    over ImageNet images and all positions, is 1. The paper's α/β ratios are for that network, not
    for the raw weights.

    Let s_i^l be the mean of filter i's rectified map F^l_i = max(0, Z^l_i) over the images and all
    positions. Dividing filter i's weights and bias by s_i^l divides Z^l_i, hence F^l_i, by s_i^l
    (ReLU is positively homogeneous); multiplying the next convolution's weights on input channel
    i by s_i^l undoes it there. Max and average pooling act per channel and are positively
    homogeneous too, so every layer of the new network computes the old one's maps divided by its
    channels' factors, on any image: F'^l_i = F^l_i / s_i^l, and likewise for conv and pool maps.

    A filter whose rectified map is 0 on every given image and position (a dead filter) has no
    mean to normalise; it is left as it is, with factor 1, and its mean stays 0.

    Args:
        model: the network to change; ``copy.deepcopy`` it first to keep the original.
        images: RGB in [0,1], one batch (B,3,H,W) or several batches of any sizes; the means are
            taken over all of their positions together.

    Returns:
        ``{relu name: s^l}``, the factors (N_l,) that the maps of the layer (and of its conv and
        the pool after it) were divided by, 1 for dead filters; on the CPU, in float64.
    """
    relus = [name for name in model.layers if name.startswith("relu")]
    parameter = next(model.parameters())
    sums = {name: torch.zeros(model.features[model.layer_index(name) - 1].out_channels, dtype=torch.float64) for name in relus}
    counts = dict.fromkeys(relus, 0)
    with torch.no_grad():
        for batch in [images] if isinstance(images, Tensor) else images:
            features = model.extract(batch.to(parameter.device, parameter.dtype), relus)
            for name, F in features.items():
                sums[name] += F.sum(dim=(0, 2, 3)).double().cpu()
                counts[name] += F.shape[0] * F.shape[2] * F.shape[3]
        if not all(counts.values()):
            raise ValueError("normalize_activations needs at least one image")
        factors, previous = {}, None
        for name in relus:
            mean = sums[name] / counts[name]
            s = torch.where(mean > 0, mean, torch.ones_like(mean))  # dead filters keep factor 1
            conv = model.features[model.layer_index(name) - 1]
            if previous is not None:  # undo the previous layer's scaling on its input channels
                conv.weight.mul_(previous.to(conv.weight)[None, :, None, None])
            conv.weight.div_(s.to(conv.weight)[:, None, None, None])
            conv.bias.div_(s.to(conv.bias))
            factors[name] = previous = s
    return factors


__all__ = [
    "ARCHS",
    "BLOCKS",
    "CHECKPOINTS",
    "CONTENT_LAYERS",
    "CONV_LAYERS",
    "LAYERS",
    "LOSS_WEIGHTS",
    "POOLING",
    "PREPROCESSING",
    "RandomWeightsWarning",
    "STYLE_LAYERS",
    "VGG",
    "VGG19",
    "WEIGHTS",
    "WeightsError",
    "build",
    "checkpoint_url",
    "default_device",
    "fetch_weights",
    "layer_names",
    "load_vgg",
    "load_vgg19",
    "normalize_activations",
    "resolve_layer",
    "weights_home",
]
