"""The random multi-scale network of Ustyuzhaninov, Brendel, Gatys & Bethge (ICLR 2017, *What does
it take to generate natural textures?*): one convolutional layer of random filters at eight sizes,
no training, no pooling, and it describes textures well enough to synthesise them.

The model, as in the authors' code (github ivust/random-texture-synthesis, ``synthesise.py``):

- input: Caffe's preprocessing, BGR in 0-255 minus the mean (103.939, 116.779, 123.68);
- one layer: for each filter size k in :data:`SCALES` (3, 5, 7, 11, 15, 23, 37, 55 px), ``maps``
  (128) filters of k x k x 3, zero padding k // 2 (the output keeps the image's size), no bias
  (theirs is 0), then a ReLU: N = 8 * 128 = 1024 feature maps of M = H W positions;
- filters drawn from Glorot's uniform distribution (Lasagne's default), U(-a, a) with
  a = sqrt(6 / ((3 + maps) k^2)), here from ``seed`` so that a network is reproducible;
- texture = the Gram matrix of those maps, loss E = 1/(4 N^2 M^2) sum (G - A)^2.

One difference, for speed: by default the style loss takes one Gram per filter size
(``relu3`` ... ``relu55``, N_l = 128 each, weighted 1/8), the diagonal blocks of the paper's
1024 x 1024 Gram. The full Gram costs N^2 M multiply-adds, 8x those of the eight blocks: at 256 px
about 200 billion per evaluation with its backward, several whole VGG-19 evaluations. What the
cross-scale correlations add has not been compared at length here; the paper's single Gram is
the layer ``relu`` (all 1024 maps), for ``style_layers=("relu",)``. The style loss on this network
takes the Gram's backward as one product, (dL/dG + dL/dG^T) F (``symmetric_gram``).

Content. The layer is local and has 1024 maps per pixel for 3 unknowns, so a content loss on it
keeps the photo pixel for pixel. The content representation here is the photo itself at low
resolution: ``down{f}`` is the preprocessed image averaged over f x f blocks (f = 2, 4, 8, 16;
N_l = 3). Matching it fixes the layout and the broad colours and leaves everything finer than f
pixels to the style; the default is ``down8``. (With trained weights, VGG's relu4_2 is a better
content representation: content from VGG-19, style from this network, via ``style_network``.)

Speed. A k x k convolution costs k^2 multiply-adds per map and pixel, 5352 over the eight sizes,
most in the 55 x 55 filters. Filters from :data:`FFT_FROM` px up are applied as one product of
spectra (:func:`fft_correlate`): the kernels' spectra are computed once per image size and kept,
the image's per call; the smaller ones are direct convolutions. Both are exact up to rounding and
differentiable (the backward of the FFT path is the same transforms, run by autograd).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as nnf
from torch import Tensor, nn

from nst_lessons.networks import FeatureNetwork, NetworkSpec

SCALES: tuple[int, ...] = (3, 5, 7, 11, 15, 23, 37, 55)
"""The filter sizes of the paper's multi-scale model, in pixels."""

MAPS = 128
"""Feature maps (filters) per filter size, as in the paper."""

FFT_FROM = 23
"""Filters at least this large go through the FFT. On a 2-core AVX-512 CPU at 256 px, thresholds of
11, 15 and 23 px gave evaluation times within 10% of one another (a 55 px filter alone costs a
direct convolution 3025 multiply-adds per map and pixel, the FFT a few dozen); at 7 px it was
slower."""

CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
CONTENT_FACTORS: tuple[int, ...] = (2, 4, 8, 16)
"""The block sizes of the content layers ``down2`` ... ``down16``."""

LOSS_WEIGHTS: tuple[float, float, float] = (1e-2, 1e4, 1.0)
"""(α, β, γ) for this network with its default layers (``down8``, the eight ``relu{k}``), set from a
few short runs at 64-128 px, not tuned further: α/β = 1e-6 leaves the photo's block means visible
under the texture; γ is the VGG defaults'. (The paper synthesised textures, β alone.)"""


def fft_length(n: int) -> int:
    """The smallest even n' >= n whose prime factors are 2, 3 and 5: sizes every FFT library does fast."""
    m = max(2, n + n % 2)
    while True:
        r = m
        for p in (2, 3, 5):
            while r % p == 0:
                r //= p
        if r == 1:
            return m
        m += 2


def embed_kernels(kernels: Sequence[Tensor]) -> Tensor:
    """Kernels of odd sizes k, each (O_k, C, k, k), centred in one (sum O_k, C, K, K) stack of zeros,
    K the largest k. Correlating with a kernel centred in zeros, padding (K - 1) / 2, gives what the
    kernel itself gives with padding (k - 1) / 2."""
    size = max(w.shape[-1] for w in kernels)
    out = kernels[0].new_zeros(sum(w.shape[0] for w in kernels), kernels[0].shape[1], size, size)
    row = 0
    for w in kernels:
        k, o = w.shape[-1], (size - w.shape[-1]) // 2
        out[row : row + w.shape[0], :, o : o + k, o : o + k] = w
        row += w.shape[0]
    return out


def kernel_spectra(kernels: Tensor, height: int, width: int) -> Tensor:
    """The spectra the FFT path multiplies by, for images of height x width.

    Args:
        kernels: (O, C, K, K), K odd.

    Returns:
        (C, O, L_2 / 2 + 1, L_1) complex: the real FFT of each kernel flipped (F.conv2d correlates;
        a product of spectra convolves), channel-major and with the two frequency axes swapped, as
        :func:`fft_correlate` uses them, at L_1 x L_2 = :func:`fft_length` of
        (height + K // 2) x (width + K // 2). The product is a circular convolution; of its outputs
        only those at K // 2 ... K // 2 + H - 1 are kept, and these reach back at most K - 1
        samples, to index -(K // 2), which wraps to L - K // 2 >= H: the image's zero padding. So
        L >= H + K // 2 suffices, not the H + K - 1 of a full linear convolution (at 256 px and
        K = 55: 288 instead of 320).
    """
    size = kernels.shape[-1]
    lengths = (fft_length(height + size // 2), fft_length(width + size // 2))
    return torch.fft.rfft2(kernels.flip(-2, -1), s=lengths).permute(1, 0, 3, 2).contiguous()


def fft_correlate(x: Tensor, spectra: Tensor, size: int) -> Tensor:
    """``F.conv2d(x, kernels, padding=size // 2)`` by the FFT, for the kernels of ``spectra``.

    Args:
        x: (B, C, H, W).
        spectra: :func:`kernel_spectra` of (O, C, size, size) kernels at this H x W.
        size: K, the kernels' (odd) side.

    Returns:
        (B, O, H, W). The image's spectrum times the kernels' is summed over the C channels, then
        brought back in two passes: the complex inverse transform over the rows' axis first, with
        that axis last in memory (a transform along a strided axis runs at half the speed here),
        then only the H rows kept go through the real inverse transform.
    """
    h, w = x.shape[-2:]
    length_2, length_1 = 2 * (spectra.shape[-2] - 1), spectra.shape[-1]
    pad = size // 2
    X = torch.fft.rfft2(x, s=(length_1, length_2)).transpose(-2, -1).unsqueeze(2)  # (B, C, 1, L2r, L1)
    Y = X[:, 0] * spectra[0]  # a sum of C products: the einsum's batched matmul is slower here
    for c in range(1, x.shape[1]):
        Y = Y + X[:, c] * spectra[c]
    rows = torch.fft.ifft(Y, dim=-1)[..., pad : pad + h].transpose(-2, -1)  # (B, O, H, L2r)
    return torch.fft.irfft(rows, n=length_2, dim=-1)[..., pad : pad + w]


class MultiScale(FeatureNetwork):
    """Ustyuzhaninov et al.'s random single-layer multi-scale network (see the module docstring).

    Args:
        scales: the filter sizes (odd), in pixels.
        maps: filters per size.
        seed: the random filters are drawn from ``torch.Generator().manual_seed(seed)`` on the CPU,
            so a seed gives the same network on every device.
        fft_from: filters of at least this size go through the FFT (``None``: none do; for checks).
        device: where the filters live; ``"meta"`` gives a weightless description.

    Layers, in order: ``down2``, ``down4``, ``down8``, ``down16`` (the photo at low resolution, N_l = 3,
    H / f x W / f), then ``conv{k}`` and ``relu{k}`` for each size k (N_l = maps, H x W), then ``relu``
    (every ``relu{k}`` stacked, N_l = maps * len(scales)).
    """

    random = True  # type: ignore[assignment]
    title = "random multi-scale"  # type: ignore[assignment]
    symmetric_gram = True  # the eight Grams are a fifth of an evaluation: their backward in one product

    def __init__(
        self,
        scales: Sequence[int] = SCALES,
        maps: int = MAPS,
        seed: int = 0,
        fft_from: int | None = FFT_FROM,
        device: str | torch.device | None = None,
    ) -> None:
        super().__init__()
        scales = tuple(int(k) for k in scales)
        if not scales or any(k < 1 or k % 2 == 0 for k in scales) or len(set(scales)) != len(scales):
            raise ValueError(f"filter sizes must be distinct odd numbers >= 1, got {scales}")
        if maps < 1:
            raise ValueError(f"maps must be at least 1, got {maps}")
        self.name = "multiscale"
        self.scales, self.maps, self.seed, self.fft_from = scales, maps, seed, fft_from
        self.layers = (
            *(f"down{f}" for f in CONTENT_FACTORS),
            *(name for k in scales for name in (f"conv{k}", f"relu{k}")),
            "relu",
        )
        self.content_layers = ("down8",)
        self.style_layers = tuple(f"relu{k}" for k in scales)
        self.loss_weights = LOSS_WEIGHTS
        self.spec = NetworkSpec("multiscale", "random", "none", seed)
        meta = device is not None and torch.device(device).type == "meta"
        generator = torch.Generator().manual_seed(seed)
        for k in scales:
            bound = math.sqrt(6.0 / ((3 + maps) * k * k))
            if meta:
                w = torch.empty(maps, 3, k, k, device="meta")
            else:
                w = (torch.rand(maps, 3, k, k, generator=generator) * 2 - 1) * bound
            self.register_parameter(f"weight{k}", nn.Parameter(w.to(device) if device is not None else w, requires_grad=False))
        # made on the device: a Python constant copied there per call would be a host sync (and no CUDA graph)
        self.register_buffer("mean", torch.tensor(CAFFE_MEAN_BGR, device=device).view(1, 3, 1, 1), persistent=False)
        self._spectra: tuple[tuple[object, ...], Tensor] | None = None

    def kernels(self, k: int) -> Tensor:
        """The filters of size k, (maps, 3, k, k)."""
        return getattr(self, f"weight{k}")

    def describe(self) -> str:
        sizes = f"{self.scales[0]}-{self.scales[-1]} px" if len(self.scales) > 1 else f"{self.scales[0]} px"
        return f"random multi-scale network ({len(self.scales)} filter size{'s' * (len(self.scales) > 1)}, {sizes}, {self.maps} maps each, seed {self.seed})"

    def extra_repr(self) -> str:
        return f"scales={self.scales}, maps={self.maps}, seed={self.seed}, fft_from={self.fft_from}"

    # ----------------------------------------------------------------- the maths

    def preprocess(self, image: Tensor) -> Tensor:
        """RGB in [0,1], (B,3,H,W) -> Caffe's input: BGR in 0-255 minus the mean, (B,3,H,W)."""
        return image.flip(1) * 255.0 - self.mean.to(image)

    def _scales_of(self, names: set[str]) -> set[int]:
        """The filter sizes that the layers ``names`` need."""
        if "relu" in names:
            return set(self.scales)
        return {int(n[4:]) for n in names if n.startswith(("conv", "relu"))}

    def _fft_scales(self) -> tuple[int, ...]:
        return tuple(k for k in self.scales if self.fft_from is not None and k >= self.fft_from)

    def spectra(self, height: int, width: int, dtype: torch.dtype, device: torch.device) -> Tensor:
        """:func:`kernel_spectra` of the FFT path's filters (all sizes from ``fft_from``, centred in the
        largest) for this image size, computed once and kept for the last size asked."""
        key = (height, width, dtype, device)
        if self._spectra is None or self._spectra[0] != key:
            self._spectra = None  # free the old spectra before making the new ones
            with torch.no_grad():
                kernels = embed_kernels([self.kernels(k).to(device, dtype) for k in self._fft_scales()])
                self._spectra = (key, kernel_spectra(kernels, height, width))
        return self._spectra[1]

    def responses(self, x: Tensor, scales: Iterable[int]) -> dict[int, Tensor]:
        """The convolutions (before the ReLU) of a preprocessed x, (B,3,H,W), for the sizes asked:
        ``{k: (B, maps, H, W)}``."""
        wanted = set(scales)
        out = {k: nnf.conv2d(x, self.kernels(k).to(x.dtype), padding=k // 2) for k in self.scales if k in wanted and k not in self._fft_scales()}
        fft = self._fft_scales()
        if wanted & set(fft):
            h, w = x.shape[-2:]
            spectra = self.spectra(h, w, x.dtype, x.device)
            # split, not sliced: autograd then joins the gradients with one cat instead of
            # adding up a zero-padded copy per scale
            for k, y in zip(fft, fft_correlate(x, spectra, max(fft)).split(self.maps, dim=1)):
                if k in wanted:
                    out[k] = y
        return out

    def extract(self, image: Tensor, layers: Iterable[str]) -> dict[str, Tensor]:
        """``{name: F}`` for ``image`` (B,3,H,W) in [0,1]: F (B,3,H/f,W/f) for ``down{f}``,
        (B,maps,H,W) for ``conv{k}``/``relu{k}``, (B, maps * len(scales), H, W) for ``relu``."""
        names = list(dict.fromkeys(layers))
        for name in names:
            self.layer_index(name)
        if not names:
            return {}
        if image.dim() != 4 or image.shape[1] != 3:
            raise ValueError(f"expected an image batch of shape (B,3,H,W), got {tuple(image.shape)}")
        x = self.preprocess(image)
        scales = self._scales_of(names)
        conv = self.responses(x, scales)
        relu = {k: torch.relu(y) for k, y in conv.items() if "relu" in names or f"relu{k}" in names}
        out: dict[str, Tensor] = {}
        for name in names:
            if name.startswith("down"):
                out[name] = nnf.avg_pool2d(x, int(name[4:]))
            elif name == "relu":
                out[name] = torch.cat([relu[k] for k in self.scales], dim=1)
            else:
                out[name] = (conv if name.startswith("conv") else relu)[int(name[4:])]
        return out

    def forward(self, image: Tensor) -> Tensor:
        """(B,3,H,W) RGB in [0,1] -> all 1024 rectified maps, (B, maps * len(scales), H, W)."""
        return self.extract(image, ["relu"])["relu"]

    # ----------------------------------------------------------------- geometry and cost

    def layer_shapes(self, height: int, width: int, layers: Iterable[str]) -> dict[str, tuple[int, int, int]]:
        """Only the layers asked for: the scales run side by side, none feeds another."""
        names = set(layers)
        for name in names:
            self.layer_index(name)
        shapes: dict[str, tuple[int, int, int]] = {}
        for name in self.layers:
            if name not in names:
                continue
            if name.startswith("down"):
                f = int(name[4:])
                shapes[name] = (3, height // f, width // f)
            else:
                shapes[name] = (self.maps * (len(self.scales) if name == "relu" else 1), height, width)
        return shapes

    def layer_masks(self, mask: Tensor, layers: Iterable[str]) -> dict[str, Tensor]:
        """The mask itself at every convolution (they keep the grid), averaged over f x f blocks
        for ``down{f}``."""
        return {n: nnf.avg_pool2d(mask, int(n[4:])) if n.startswith("down") else mask for n in layers}

    def saved_bytes(self, height: int, width: int, layers: Iterable[str], bytes_per_value: int) -> dict[str, int]:
        """Each scale's ReLU output (which its Gram reads too), the (B,3,H,W) input the direct
        convolutions keep, and the FFT path's working set: the image's spectrum, which the
        products keep, and the kernels' spectra held between calls, counted here because they live
        as long as the run; ``fft.transient`` is the one-scale-group spectrum and rows in flight
        during the forward pass, which the memory estimate should add once."""
        names = set(layers)
        scales = self._scales_of(names)
        saved = {"input": 3 * height * width * bytes_per_value}
        for k in sorted(scales):
            saved[f"relu{k}"] = self.maps * height * width * bytes_per_value
        fft = [k for k in self._fft_scales() if k in scales]
        if fft:
            size = max(fft)
            l1, l2 = fft_length(height + size // 2), fft_length(width + size // 2)
            bins = l1 * (l2 // 2 + 1)  # per map
            saved["fft.image"] = 3 * bins * 8
            saved["fft.kernels"] = 3 * len(self._fft_scales()) * self.maps * bins * 8
            saved["fft.transient"] = len(fft) * self.maps * (bins + height * (l2 // 2 + 1)) * 8
        return saved

    def parameter_count(self, layers: Iterable[str]) -> int:
        return sum(self.kernels(k).numel() for k in self.scales)

    def multiply_adds(self, height: int, width: int, layers: Iterable[str]) -> int:
        """Of the direct convolutions (what the FFT computes in fewer operations)."""
        names = set(layers)
        scales = self._scales_of(names)
        return sum(self.maps * 3 * k * k * height * width for k in scales)


def build(spec: NetworkSpec, device: str | torch.device | None = None, progress: bool = True) -> MultiScale:
    """The builder for :func:`nst_lessons.networks.load_network`: the paper's network from ``spec.seed``
    (``weights`` and ``pooling`` do not apply: it has no trained weights and no pooling)."""
    from nst_lessons.vgg import default_device

    return MultiScale(seed=spec.seed, device=default_device(device))
