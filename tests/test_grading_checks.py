"""The diagnoses: the instructor's solutions pass, each typical mistake gets partial marks and the
message that names it, on the public cases (check()) and the hidden ones (the grader's)."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest

from nst_lessons.grading import CheckFailed, check
from nst_lessons.grading.cases import ALL_EXERCISES, EXERCISES, call, make_cases
from nst_lessons.grading.checks import NOT_ANSWERED, PARTS, POINTS, judge
from nst_lessons.grading.notebooks import answer_cells, read_notebook
from nst_lessons.grading.observe import Observation, Other, Torch, load_observations, observe, save_observations

SOURCE = Path(__file__).parents[1] / "notebooks/exercises/source/nst_gradients/nst_gradients.ipynb"
SOLUTIONS = dict(answer_cells(read_notebook(SOURCE.read_bytes(), SOURCE.name)))

ANY = None  # the part may pass or fail: the mistake changes what L-BFGS does, not how it is judged

# (exercise, text in the solution, what replaces it, {part title: words its verdict must contain});
# every part not listed must pass.  Several edits at once are given as tuples.
MISTAKES = [
    ("gram_matrix", "return F_nm @ F_nm.T", "return F_nm.T @ F_nm", {"G = F F^T": "that is F^T F"}),
    ("gram_matrix", "return F_nm @ F_nm.T", "return F_nm @ F_nm.T / F_nm.shape[1]", {"G = F F^T": "divided by M_l"}),
    ("gram_matrix", "F.reshape(F.shape[0], -1)", "F.reshape(-1, F.shape[0]).T", {"G = F F^T": "mixes the filters up"}),
    (
        "gram_matrix",
        "return F_nm @ F_nm.T",
        "import torch\n    t = torch.from_numpy(F_nm)\n    return t @ t.T",
        {"G = F F^T": "is a torch.Tensor"},
    ),
    ("content_loss", "0.5 * float(np.sum(diff**2))", "float(np.sum(diff**2))", {"the loss": "has a 1/2 in front"}),
    ("content_loss", "np.sum(diff**2)), diff", "np.sum(diff**2)), -diff", {"the gradient dL/dF": "wrong sign"}),
    ("content_loss", "np.sum(diff**2)), diff", "np.sum(diff**2)), 2 * diff", {"the gradient dL/dF": "twice too large"}),
    (
        "content_loss",
        "diff = F - P",
        "F -= P\n    diff = F",
        {"the loss": "changed its input F in place", "the gradient dL/dF": "changed its input F in place"},
    ),
    (
        "content_loss",
        "return 0.5 * float(np.sum(diff**2)), diff",
        "return 0.5 * float(np.sum(diff**2))",
        {"the loss": "should return the pair (loss, dF)", "the gradient dL/dF": "should return the pair"},
    ),
    ("style_layer_loss", "float(np.sum(D**2)) / (4 * N**2 * M**2)", "float(np.sum(D**2))", {"the loss E_l": "missing the normalisation 1/(4 N_l^2 M_l^2)"}),
    (
        "style_layer_loss",
        "M = F_nm.shape[1]",
        "M = F.shape[-1]",
        {"the loss E_l": "uses M_l = W", "the gradient dE_l/dF": "uses M_l = W"},
    ),
    ("style_layer_loss", "dF = D @ F_nm", "dF = 2 * D @ F_nm", {"the gradient dE_l/dF": "twice too large"}),
    ("style_layer_loss", "dF.reshape(F.shape)", "dF", {"the gradient dE_l/dF": "reshape it to F's shape"}),
    ("style_layer_loss", "dF = D @ F_nm / (N**2 * M**2)\n    return E, dF.reshape(F.shape)", "return E, F_nm.T @ D / (N**2 * M**2)", {"the gradient dE_l/dF": "that is F^T (G - A)"}),
    ("tv_loss", "np.abs(dw).sum() + np.abs(dh).sum()", "(dw**2).sum() + (dh**2).sum()", {"the loss": "uses squared differences"}),
    ("tv_loss", "+ np.abs(dh).sum()", "", {"the loss": "counts only the differences along W"}),
    (
        "tv_loss",
        ("np.sign(dw)", "np.sign(dh)"),
        ("2 * dw", "2 * dh"),
        {"the gradient dL/dx": "the gradient of the squared form"},
    ),
    (
        "tv_loss",
        ("dx[:, :, :-1] -= np.sign(dw)", "dx[:, :-1, :] -= np.sign(dh)"),
        ("pass", "pass"),
        {"the gradient dL/dx": "only moves the later pixel of each pair"},
    ),
    ("relu_backward", "return np.where(x > 0, dy, 0.0)", "return dy", {"dL/dx": "the ReLU's mask is missing"}),
    ("relu_backward", "return np.where(x > 0, dy, 0.0)", "dy[x <= 0] = 0\n    return dy", {"dL/dx": "changed its input dy in place"}),
    ("relu_backward", "return np.where(x > 0, dy, 0.0)", "return x > 0", {"dL/dx": "dtype bool"}),
    ("relu_backward", "np.where(x > 0", "np.where(dy > 0", {"dL/dx": "the mask comes from the forward input"}),
    (
        "max_pool_backward",
        "is_max = windows == windows.max(axis=(2, 4), keepdims=True)",
        "is_max = np.zeros(windows.shape, bool)\n    is_max[:, :, 0, :, 0] = True",
        {"dL/dx": "sends dy to the top-left pixel of each window"},
    ),
    (
        "max_pool_backward",
        "is_max = windows == windows.max(axis=(2, 4), keepdims=True)",
        "is_max = np.full(windows.shape, 0.25)",
        {"dL/dx": "as average pooling does"},
    ),
    ("max_pool_backward", "return (is_max * dy[:, :, None, :, None]).reshape(C, H, W)", "return dy", {"dL/dx": "the pooled shape of dy"}),
    ("avg_pool_backward", "axis=2) / 4", "axis=2)", {"dL/dx": "without the 1/4"}),
    ("conv2d_backward", "w[:, :, i, j], dy)", "w[:, :, 2 - i, 2 - j], dy)", {"dL/dx": "uses the filters as they are"}),
    ("conv2d_backward", "return dx_pad[:, 1:-1, 1:-1]", "return dx_pad[:, 1:-1, 1:-1], None, None", {"dL/dx": "a tuple of 3 values"}),
    ("conv2d_backward", "return dx_pad[:, 1:-1, 1:-1]", "return dx_pad", {"dL/dx": "the padded input's shape"}),
    (
        "make_closure",
        "loss += alpha * L\n            grads[name] += alpha * dF",
        "loss += L\n            grads[name] += dF",
        {"the loss": "leaves out alpha", "the gradient": "leaves out alpha", "L-BFGS lowers the loss": ANY},
    ),
    (
        "make_closure",
        "grads[name] += beta * w * dF",
        "grads[name] = beta * w * dF",
        {"the gradient": "loses the content gradient", "L-BFGS lowers the loss": ANY},
    ),
    ("make_closure", "net.backward(grads).ravel()", "net.backward(grads)", {"the gradient": "flatten it", "L-BFGS lowers the loss": ANY}),
    (
        "make_closure",
        "    return closure\n",
        "",
        {"the loss": "is a `return closure` missing?", "the gradient": "return closure", "L-BFGS lowers the loss": "return closure"},
    ),
]


def edit(source: str, old: str | tuple[str, ...], new: str | tuple[str, ...]) -> str:
    for before, after in zip(*((old, new) if isinstance(old, tuple) else ((old,), (new,)))):
        assert before in source, before
        source = source.replace(before, after)
    return source


def define(name: str, source: str) -> object:
    """The function an answer cell defines, with the earlier answers it may call."""
    namespace: dict[str, object] = {}
    exec("import numpy as np", namespace)
    for grade_id in EXERCISES[: EXERCISES.index(name)]:
        exec(SOLUTIONS[grade_id], namespace)
    exec(source, namespace)
    return namespace[name]


def verdicts(name: str, fn: object, hidden: bool) -> dict[str, str | None]:
    cases = make_cases(name, hidden=hidden)
    observations = [observe(functools.partial(call, name, fn, case), case.args) for case in cases]
    return {v.part.title: v.problem for v in judge(name, cases, observations)}


@pytest.mark.parametrize("name", EXERCISES)
def test_solutions_pass_public_and_hidden_cases(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    fn = define(name, SOLUTIONS[name])
    check(name, fn)
    assert f"✓ {name}: all checks passed" in capsys.readouterr().out
    assert verdicts(name, fn, hidden=True) == {part.title: None for part in PARTS[name]}


@pytest.mark.parametrize(("name", "old", "new", "expected"), MISTAKES, ids=lambda v: v if isinstance(v, str) and v in EXERCISES else None)
def test_typical_mistakes_get_partial_marks_and_their_diagnosis(name: str, old: str, new: str, expected: dict) -> None:
    fn = define(name, edit(SOLUTIONS[name], old, new))
    for hidden in (False, True):
        got = verdicts(name, fn, hidden)
        for title, problem in got.items():
            if title not in expected:
                assert problem is None, (title, problem)
            elif expected[title] is not ANY:
                assert problem is not None and expected[title] in problem, (hidden, title, problem)
    with pytest.raises(CheckFailed) as failure:
        check(name, fn)
    assert f"✗ {name}:" in str(failure.value)


def test_check_says_what_is_wrong_and_chains_the_students_exception() -> None:
    def gram_matrix(F):
        raise NotImplementedError()

    with pytest.raises(CheckFailed, match=f"✗ G = F F\\^T: {NOT_ANSWERED[:20]}") as failure:
        check("gram_matrix", gram_matrix)
    assert isinstance(failure.value.__cause__, NotImplementedError)

    def relu_backward(dy, x):
        return dy[x > 0]  # a boolean index flattens

    with pytest.raises(CheckFailed, match=r"dx has shape \(\d+,\); it should have shape \(2, 3, 4\)"):
        check("relu_backward", relu_backward)


def test_check_refuses_the_reference_and_unknown_names() -> None:
    from nst_lessons.scratch.losses import gram_matrix

    with pytest.raises(CheckFailed, match="the package's own answer"):
        check("gram_matrix", gram_matrix)
    with pytest.raises(ValueError, match="unknown exercise 'gram'"):
        check("gram", gram_matrix)


def test_an_error_in_a_students_function_names_its_type_and_message() -> None:
    fn = define("max_pool_backward", SOLUTIONS["max_pool_backward"].replace("windows.max(axis=(2, 4)", "windows.max(axis=(2, 5)"))
    (problem,) = verdicts("max_pool_backward", fn, hidden=True).values()
    assert problem.startswith("raised AxisError: axis 5 is out of bounds")


def test_points_add_up_to_the_assignment_total() -> None:
    assert tuple(PARTS) == ALL_EXERCISES
    assert sum(POINTS[name] for name in EXERCISES) == 22


def test_hidden_cases_differ_from_the_public_ones() -> None:
    for name in EXERCISES:
        public = [case.label for case in make_cases(name, hidden=False)]
        assert not set(public) & {case.label for case in make_cases(name, hidden=True)}


def test_observations_survive_the_file_round_trip(tmp_path: Path) -> None:
    value = {"evaluations": [(1.5, np.arange(3.0)), (np.float64(2.0), Torch(np.ones(2)))], "final": "error"}
    observations = [Observation(value=value), Observation(error="ValueError: no"), Observation(value=Other("set"), mutated=("dy",))]
    save_observations(tmp_path / "r.npz", observations)
    back = load_observations(tmp_path / "r.npz")
    assert [o.error for o in back] == [None, "ValueError: no", None]
    assert back[2].value == Other("set") and back[2].mutated == ("dy",)
    evaluations = back[0].value["evaluations"]
    assert evaluations[0][0] == 1.5 and np.array_equal(evaluations[0][1], np.arange(3.0))
    assert isinstance(evaluations[1][1], Torch) and back[0].value["final"] == "error"


@pytest.mark.parametrize(
    "content",
    [b"not a zip", None, {"manifest": np.array("[{\"value\": {\"array\": 7}, \"error\": null, \"mutated\": []}]")}],
    ids=["garbage", "zip bomb", "dangling array"],
)
def test_hostile_result_files_are_refused(tmp_path: Path, content: object) -> None:
    path = tmp_path / "r.npz"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is None:  # compresses to almost nothing, inflates past the limit
        np.savez_compressed(path, manifest=np.array("[]"), a0=np.zeros(300 * 2**20 // 8))
    else:
        np.savez(path, **content)
    with pytest.raises(ValueError):
        load_observations(path)
