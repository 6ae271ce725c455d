"""The memory estimate against what the network and autograd actually hold, and the refusal."""

from __future__ import annotations


import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from nst_lessons import memory
from nst_lessons.cli import main
from nst_lessons.data import example_path
from nst_lessons.memory import InsufficientMemoryError
from nst_lessons.transfer import CONTENT_LAYERS, STYLE_LAYERS, Objective, style_transfer
from nst_lessons.networks import describe_network
from nst_lessons.vgg import load_vgg, load_vgg19

pytestmark = [pytest.mark.filterwarnings("ignore::nst_lessons.vgg.RandomWeightsWarning"), pytest.mark.usefixtures("one_thread")]


@pytest.mark.parametrize("arch", ["vgg11", "vgg16", "vgg19"])
def test_layer_shapes_and_costs_are_the_networks(arch: str) -> None:
    model = load_vgg(arch, "random", device="cpu")
    image = torch.rand(1, 3, 45, 62)
    features = model.extract(image, model.layers)
    shapes = model.layer_shapes(45, 62, ["pool5"])
    assert list(shapes) == list(model.layers)
    assert [tuple(features[name].shape[1:]) for name in model.layers] == list(shapes.values())
    assert describe_network(arch).layer_shapes(45, 62, ["pool5"]) == shapes  # the weightless description agrees
    assert model.parameter_count(["relu1_1"]) == 3 * 64 * 9 + 64
    convs = [m for m in model.features if isinstance(m, torch.nn.Conv2d)]
    assert model.parameter_count(["pool5"]) == sum(c.weight.numel() + c.bias.numel() for c in convs)
    # multiply-adds: each conv's C_in * C_out * 9 per output position, counted by torch's own counter
    with FlopCounterMode(display=False) as counter:
        model.extract(image, ["relu5_1"])
    assert 2 * model.multiply_adds(45, 62, ["relu5_1"]) == counter.get_total_flops()


def saved_bytes(objective: Objective, x: torch.Tensor, parameters: set[int]) -> int:
    """Bytes of the distinct storages autograd keeps during one forward pass, the model's
    parameters (counted in the estimate's model term) left out."""
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in parameters:
            storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        objective.terms(objective.features(x, objective.layers), x)
    return sum(storages.values())


@pytest.mark.parametrize(
    "precision, pooling, content_layers, style_layers, tv",
    [
        ("fp32", "max", CONTENT_LAYERS, STYLE_LAYERS, True),
        ("bf16", "max", CONTENT_LAYERS, STYLE_LAYERS, True),
        ("fp32", "avg", ("relu3_2",), ("conv1_1", "relu2_1", "pool2"), False),
        ("bf16", "max", ("conv4_2", "relu1_2"), ("relu1_2", "relu4_1"), True),
    ],
)
def test_saved_activations_match_autograd(random_model, precision, pooling, content_layers, style_layers, tv) -> None:  # noqa: ANN001
    model = random_model if pooling == "max" else load_vgg19("random", pooling="avg", device="cpu")
    h, w = 37, 52
    content, style = torch.rand(1, 3, h, w), torch.rand(1, 3, 40, 40)
    objective = Objective(
        model, content, style, content_layers, {n: 1.0 for n in style_layers}, 1.0, 1e8, float(tv), precision=precision
    )
    x = content.clone().requires_grad_(True)
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    measured = saved_bytes(objective, x, parameters)
    expected = memory.saved_activation_bytes(h, w, content_layers, style_layers, precision, tv, network=model)
    assert abs(measured - expected) <= 12  # ImageNet's std, kept by the preprocessing's division


def test_estimate_terms() -> None:
    n = 3 * 100 * 80
    lbfgs = memory.estimate(100, 80, CONTENT_LAYERS, STYLE_LAYERS, history_size=10)
    adam = memory.estimate(100, 80, CONTENT_LAYERS, STYLE_LAYERS, optimizer="adam")
    assert lbfgs.optimizer - adam.optimizer == (2 * 10 * n - 2 * n) * 4
    vgg19 = describe_network("vgg19")
    assert lbfgs.model == vgg19.parameter_count(["relu5_1"]) * 4
    assert lbfgs.total == lbfgs.activations + lbfgs.transient + lbfgs.optimizer + lbfgs.model + lbfgs.images
    big = memory.estimate(4096, 4096, CONTENT_LAYERS, STYLE_LAYERS, precision="bf16", history_size=100)
    assert 60 * 2**30 < big.total < 90 * 2**30  # the L-BFGS history alone is 2 * 100 * 3 * 4096^2 floats
    with pytest.raises(ValueError, match="unknown precision"):
        memory.estimate(64, 64, CONTENT_LAYERS, STYLE_LAYERS, precision="fp16")


def test_refusal_names_the_largest_size_that_fits() -> None:
    def estimate_at(long_side: int) -> memory.MemoryEstimate:
        return memory.estimate(long_side, long_side, CONTENT_LAYERS, STYLE_LAYERS)

    available = estimate_at(700).total
    assert memory.check_fits(estimate_at, 600, torch.device("cpu"), headroom=1.0, available=available) == estimate_at(600)
    with pytest.raises(InsufficientMemoryError, match="the largest size that fits at these settings is 700 px") as error:
        memory.check_fits(estimate_at, 1024, torch.device("cuda"), headroom=1.0, available=available)
    assert isinstance(error.value, ValueError) and isinstance(error.value, MemoryError)
    assert "\n" not in str(error.value) and "1024x1024" in str(error.value)
    assert str(error.value).endswith("(or lower history_size, use precision='bf16', or a pyramid)")
    with pytest.raises(InsufficientMemoryError, match=r"is 700 px \(or give a smaller --size\)$"):
        memory.check_fits(estimate_at, 1024, torch.device("cpu"), headroom=1.0, available=available, remedies="give a smaller --size")
    assert memory.largest_fitting(estimate_at, estimate_at(32).total - 1, 1024) is None


def test_runs_that_do_not_fit_are_refused_before_they_start(monkeypatch: pytest.MonkeyPatch, capsys, tmp_path) -> None:  # noqa: ANN001
    monkeypatch.setattr(memory, "available_bytes", lambda device: 150 * 2**20)
    with pytest.raises(InsufficientMemoryError, match="largest size that fits"):
        style_transfer(example_path("grace_hopper"), example_path("strokes"), size=256, network="vgg19:random", device="cpu")
    out = tmp_path / "never.png"
    status = main(["transfer", "grace_hopper", "strokes", "-o", str(out), "--weights", "random", "--size", "256"])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "largest size that fits" in err and not out.exists()
    monkeypatch.setattr(memory, "available_bytes", lambda device: None)  # unknown: no check
    options = dict(size=40, iterations=1, network="vgg19:random", device="cpu", progress=False)
    assert style_transfer(example_path("grace_hopper"), example_path("strokes"), **options).iterations == 1
