"""Feature networks as parts: the VGG family against an independent construction, their checkpoints,
two networks in one objective, the memory estimate of both, and the CLI's --network/--style-network."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch.nn import functional as F_nn

from conftest import save_checkpoint, synthetic_state_dict
from nst_lessons import memory, vgg
from nst_lessons.cli import main
from nst_lessons.data import example_path
from nst_lessons.networks import NETWORKS, FeatureNetwork, NetworkSpec, describe_network, load_network, register_network
from nst_lessons.targets import StyleTargets
from nst_lessons.transfer import Objective, Speed, style_transfer

pytestmark = [pytest.mark.filterwarnings("ignore::nst_lessons.vgg.RandomWeightsWarning"), pytest.mark.usefixtures("one_thread")]

# torchvision's cfgs, written out here rather than read from nst_lessons.vgg: an int is a 3x3
# convolution's output channels, "M" a 2x2 pooling.
CFGS = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


def functional_vgg(cfg: list, state: dict[str, torch.Tensor], x: torch.Tensor, pooling: str) -> dict[str, torch.Tensor]:
    """A VGG written with F.conv2d / relu / pooling from a torchvision-layout state dict, its layers
    named by the paper's scheme: every layer's output."""
    out, h, index, block, k = {}, x, 0, 1, 0
    for item in cfg:
        if item == "M":
            h = F_nn.max_pool2d(h, 2) if pooling == "max" else F_nn.avg_pool2d(h, 2)
            out[f"pool{block}"] = h
            block, k, index = block + 1, 0, index + 1
            continue
        k += 1
        h = F_nn.conv2d(h, state[f"features.{index}.weight"], state[f"features.{index}.bias"], padding=1)
        assert h.shape[1] == item
        out[f"conv{block}_{k}"] = h
        h = F_nn.relu(h)
        out[f"relu{block}_{k}"] = h
        index += 2
    return out


@pytest.mark.parametrize("arch", ["vgg11", "vgg13", "vgg16"])
def test_checkpoint_reproduces_the_functional_network_at_every_layer(tmp_path: Path, arch: str) -> None:
    state = synthetic_state_dict(seed=3, arch=arch)
    model = load_network(NetworkSpec(arch, save_checkpoint(state, tmp_path, arch), "avg" if arch == "vgg13" else "max"), "cpu")
    model = model.double()
    image = torch.rand(1, 3, 40, 36, dtype=torch.float64)
    want = functional_vgg(CFGS[arch], {k: v.double() for k, v in state.items()}, model.preprocess(image), model.spec.pooling)
    got = model.extract(image, model.layers)
    assert list(got) == list(want) == list(model.layers)  # names in forward order, the paper's scheme
    for name in model.layers:
        torch.testing.assert_close(got[name], want[name], rtol=1e-12, atol=1e-12, msg=name)


def test_layer_names_per_depth() -> None:
    blocks_end = {arch: [n for n in vgg.layer_names(arch) if n.startswith("conv")] for arch in vgg.ARCHS}
    assert [n for n in blocks_end["vgg16"] if n[4] in "345" and n.endswith("_3")] == ["conv3_3", "conv4_3", "conv5_3"]
    assert "conv3_4" not in blocks_end["vgg16"] and "conv3_4" in blocks_end["vgg19"]
    assert len(vgg.layer_names("vgg11")) == 21 and len(vgg.layer_names("vgg16")) == 31 and vgg.layer_names("vgg19") == vgg.LAYERS
    for arch in vgg.ARCHS:  # every depth has the default layers
        net = describe_network(arch)
        assert set(net.content_layers + net.style_layers) <= set(net.layers)
    with pytest.raises(ValueError, match="unknown VGG-16 layer 'relu5_4'"):
        describe_network("vgg16").layer_index("relu5_4")


def test_published_checkpoints_and_caffe_vgg16(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NST_LESSONS_WEIGHTS_MIRROR", raising=False)
    assert vgg.checkpoint_url("imagenet", "vgg16") == "https://download.pytorch.org/models/vgg16-397923af.pth"
    assert vgg.checkpoint_url("imagenet", "vgg11") == "https://download.pytorch.org/models/vgg11-8a719046.pth"
    assert vgg.checkpoint_url("caffe", "vgg16") == "https://web.eecs.umich.edu/~justincj/models/vgg16-00b39a1b.pth"
    with pytest.raises(ValueError, match="no published 'caffe' weights for VGG-11"):
        vgg.fetch_weights("caffe", arch="vgg11")
    # the Caffe VGG-16 from a file mirror: Caffe preprocessing, its own loss weights
    served = tmp_path / "mirror"
    served.mkdir()
    path = save_checkpoint(synthetic_state_dict(seed=5, arch="vgg16"), served, "vgg16")
    monkeypatch.setitem(vgg.CHECKPOINTS, ("vgg16", "caffe"), (path.name, "https://example.invalid/" + path.name))
    monkeypatch.setenv("NST_LESSONS_WEIGHTS_MIRROR", served.as_uri())
    monkeypatch.setenv("NST_LESSONS_HOME", str(tmp_path / "cache"))
    model = load_network("vgg16:caffe", "cpu", progress=False)
    assert (model.preprocessing, model.loss_weights, model.random) == ("caffe", vgg.LOSS_WEIGHTS["caffe"], False)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [path.stem + ".features.pth"]
    # a VGG-11 checkpoint is not a VGG-16 one (VGG-11's features.2 is a pooling; bias before weight)
    with pytest.raises(vgg.WeightsError, match="not a VGG-16 checkpoint in torchvision's layout: no features.2.bias"):
        load_network(NetworkSpec("vgg16", save_checkpoint(synthetic_state_dict(arch="vgg11"), tmp_path, "vgg11")), "cpu")


def test_transfer_network_vgg16_downloads_from_a_local_mirror(tmp_path: Path, http_server, monkeypatch, capsys) -> None:  # noqa: ANN001
    state = synthetic_state_dict(seed=8, arch="vgg16")
    path = save_checkpoint(state, http_server.root, "vgg16")
    monkeypatch.setitem(vgg.CHECKPOINTS, ("vgg16", "imagenet"), (path.name, "https://example.invalid/" + path.name))
    monkeypatch.setenv("NST_LESSONS_WEIGHTS_MIRROR", http_server.url)
    monkeypatch.setenv("NST_LESSONS_HOME", str(tmp_path / "cache"))
    out = tmp_path / "out.png"
    args = ["transfer", "waves", "strokes", "-o", str(out), "--network", "vgg16", "--size", "40", "--iterations", "3",
            "--history", str(tmp_path / "h.json"), "-q", "--device", "cpu"]  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    assert http_server.requests == ["/" + path.name]
    settings = json.loads((tmp_path / "h.json").read_text())["settings"]
    assert settings["content_network"] == settings["style_network"] == {"arch": "vgg16", "weights": "imagenet", "pooling": "max", "seed": 0}
    assert max(Image.open(out).size) == 40


# ----------------------------------------------------------------------------- two networks


@pytest.fixture(scope="module")
def two() -> tuple[FeatureNetwork, FeatureNetwork]:
    return load_network("vgg19:random", "cpu").double(), load_network(NetworkSpec("vgg11", "random", seed=4), "cpu").double()


@pytest.mark.parametrize("gradients", ["autograd", "manual"])
def test_two_network_objective_is_the_sum_of_its_single_network_terms(two, gradients: str) -> None:  # noqa: ANN001
    content_net, style_net = two
    g = torch.Generator().manual_seed(0)
    photo, painting = torch.rand(1, 3, 36, 44, generator=g).double(), torch.rand(1, 3, 40, 40, generator=g).double()
    x = torch.rand(1, 3, 36, 44, generator=g).double()
    style_layers = {"relu1_1": 0.4, "relu3_1": 0.6}
    both = Objective(content_net, photo, painting, ["relu4_2"], style_layers, 2.0, 1e4, 0.5, gradients=gradients, style_network=style_net)
    content_only = Objective(content_net, photo, painting, ["relu4_2"], {}, 2.0, 1e4, 0.5, gradients=gradients)
    style_only = Objective(style_net, photo, painting, [], style_layers, 2.0, 1e4, 0.0, gradients=gradients)
    calls = {net: 0 for net in two}
    hooks = [net.features[0].register_forward_hook(lambda m, i, o, net=net: calls.__setitem__(net, calls[net] + 1)) for net in two]
    try:
        records, grads = [], []
        for objective in (both, content_only, style_only):
            xi = x.clone().requires_grad_(True)
            records.append(objective(xi))
            grads.append(xi.grad)
    finally:
        for h in hooks:
            h.remove()
    assert calls == {content_net: 2, style_net: 2}  # each network once per evaluation (both, and its own)
    torch.testing.assert_close(records[0], records[1] + records[2], rtol=1e-12, atol=0)
    assert records[0][1] > 0 and records[0][2] > 0
    torch.testing.assert_close(grads[0], grads[1] + grads[2], rtol=1e-10, atol=1e-14)


def test_memory_estimate_counts_both_networks(two) -> None:  # noqa: ANN001
    content_net, style_net = (net.float() for net in (load_network("vgg16:random", "cpu"), load_network("vgg11:random", "cpu")))
    h, w = 33, 47
    photo, painting = torch.rand(1, 3, h, w), torch.rand(1, 3, 40, 40)
    objective = Objective(content_net, photo, painting, ["relu4_2"], {"relu1_1": 0.5, "relu5_1": 0.5}, 1.0, 1e8, 1.0, style_network=style_net)
    parameters = {p.untyped_storage().data_ptr() for net in (content_net, style_net) for p in net.parameters()}
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.untyped_storage().data_ptr() not in parameters:
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    x = photo.clone().requires_grad_(True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        F_content, F_style = objective.extract(x)
        objective.terms(F_content, x, F_style)
    expected = memory.saved_activation_bytes(h, w, ["relu4_2"], ["relu1_1", "relu5_1"], network=content_net, style_network=style_net)
    assert abs(sum(storages.values()) - expected) <= 2 * 12  # each network keeps ImageNet's std
    one = memory.estimate(h, w, ["relu4_2"], ["relu1_1", "relu5_1"], network=content_net)
    both = memory.estimate(h, w, ["relu4_2"], ["relu1_1", "relu5_1"], network=content_net, style_network=style_net)
    assert both.model == 4 * (content_net.parameter_count(["relu4_2"]) + style_net.parameter_count(["relu5_1"]))
    assert both.model > one.model


def test_style_network_from_python_and_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    result = style_transfer(
        example_path("waves"), example_path("strokes"), size=40, iterations=3, progress=False,
        network="vgg19:random", style_network=NetworkSpec("vgg13", "random", "avg"), device="cpu",
    )  # fmt: skip
    assert result.settings["content_network"]["arch"] == "vgg19"
    assert result.settings["style_network"] == {"arch": "vgg13", "weights": "random", "pooling": "avg", "seed": 0}
    loaded: list[NetworkSpec] = []
    monkeypatch.setitem(NETWORKS, "vgg19", lambda spec, device=None, progress=True: loaded.append(spec) or vgg.build(spec, device))
    same = style_transfer(
        example_path("waves"), example_path("strokes"), size=40, iterations=1, progress=False,
        network="vgg19:random", style_network=NetworkSpec("vgg19", "random"), device="cpu",
    )  # fmt: skip
    assert loaded == [NetworkSpec("vgg19", "random")]  # the same spec twice: loaded once, run once per evaluation
    assert same.settings["style_network"] == same.settings["content_network"]
    out = tmp_path / "out.png"
    args = ["transfer", "waves", "strokes", "-o", str(out), "--weights", "random", "--style-network", "vgg11", "--size", "40",
            "--iterations", "2", "--history", str(tmp_path / "h.json"), "-q", "--device", "cpu"]  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    settings = json.loads((tmp_path / "h.json").read_text())["settings"]
    assert (settings["content_network"]["arch"], settings["style_network"]["arch"]) == ("vgg19", "vgg11")
    assert settings["style_network"]["weights"] == "random"  # --weights, a name, applies to both
    capsys.readouterr()
    for bad, message in [
        (["--style-network", "vgg7"], "unknown network 'vgg7'"),
        (["--network", "vgg11", "--content-layers", "relu4_3"], "unknown VGG-11 layer 'relu4_3'"),
        (["--network", "vgg11", "--weights", "caffe"], "no published 'caffe' weights for VGG-11"),
    ]:
        status = main(["transfer", "waves", "strokes", "-o", str(tmp_path / "bad.png"), "--size", "40", *bad])
        err = capsys.readouterr().err
        assert status == 2 and message in err and err.count("\n") == 1, err
        assert not (tmp_path / "bad.png").exists()


def test_style_targets_from_another_network_are_refused(two) -> None:  # noqa: ANN001
    content_net, style_net = two
    photo = torch.rand(1, 3, 32, 32, dtype=torch.float64)
    targets = StyleTargets.from_tensors(content_net, [photo], style_layers=["relu1_1"], size=(32, 32))
    with pytest.raises(ValueError, match="the style targets come from VGG-19 .* the style network is VGG-11"):
        Objective(content_net, photo, targets, [], {"relu1_1": 1.0}, 1.0, 1.0, 0.0, style_network=style_net)


def test_earlier_keywords_still_work_and_give_the_same_run() -> None:
    common = dict(size=40, iterations=3, progress=False, device="cpu", seed=2)
    with pytest.warns(DeprecationWarning, match=r"style_transfer\(weights=, pooling=, precision=\) is deprecated"):
        old = style_transfer(example_path("waves"), example_path("strokes"), weights="random", pooling="avg", precision="fp32", **common)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        new = style_transfer(example_path("waves"), example_path("strokes"), network=NetworkSpec("vgg19", "random", "avg", seed=2),
                             speed=Speed("fp32"), **common)  # fmt: skip
    assert torch.equal(old.tensor, new.tensor) and old.settings == new.settings
    with pytest.raises(TypeError, match="unexpected keyword argument 'wieghts'"):
        style_transfer(example_path("waves"), example_path("strokes"), wieghts="random")


def test_registry_takes_a_builder_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(NETWORKS, "vgg11-copy", "nst_lessons.vgg:build")
    with pytest.raises(ValueError, match="unknown VGG 'vgg11-copy'"):  # the builder gets the spec as it is
        load_network("vgg11-copy", "cpu")
    built: list[NetworkSpec] = []

    def builder(spec: NetworkSpec, device=None, progress=True) -> FeatureNetwork:  # noqa: ANN001
        built.append(spec)
        return vgg.build(NetworkSpec("vgg11", "random", seed=spec.seed), device)

    monkeypatch.setitem(NETWORKS, "tiny", "vgg11")  # replaced next
    register_network("tiny", builder)
    assert load_network("tiny", "cpu", seed=9).arch == "vgg11" and built == [NetworkSpec("tiny", seed=9)]
    with pytest.raises(ValueError, match="unknown network 'nope'; expected one of vgg19, vgg16"):
        load_network("nope")
