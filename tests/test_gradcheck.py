"""The checkers themselves: central differences, the relative error and the reports."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nst_lessons.gradcheck import check_against_autograd, check_numerically, numerical_gradient, rel_error


def f(x: np.ndarray) -> float:
    return float(np.sum(np.sin(x) * x**2))


def df(x: np.ndarray) -> np.ndarray:
    return np.cos(x) * x**2 + 2 * x * np.sin(x)


def test_numerical_gradient_of_a_known_function():
    x = np.random.default_rng(0).standard_normal((3, 4))
    num = numerical_gradient(f, x)
    assert num.values.shape == (12,)
    assert rel_error(num.values.reshape(x.shape), df(x)) <= 1e-8


def test_numerical_gradient_samples_distinct_coordinates_and_keeps_x():
    x = np.random.default_rng(1).standard_normal((5, 6, 7))
    before = x.copy()
    num = numerical_gradient(lambda x: (f(x), None), x, n_samples=20, seed=3)  # (loss, grad) pairs work too
    np.testing.assert_array_equal(x, before)
    flat = np.ravel_multi_index(num.index, x.shape)
    assert len(set(flat.tolist())) == 20 and np.all(np.diff(flat) > 0)
    assert rel_error(num.values, df(x)[num.index]) <= 1e-5  # rounding: eps * |f| / h
    again = numerical_gradient(f, x, n_samples=20, seed=3)
    np.testing.assert_array_equal(np.ravel_multi_index(again.index, x.shape), flat)


def test_rel_error():
    assert rel_error(np.zeros(3), np.zeros(3)) == 0.0
    assert rel_error(1.0, 3.0) == pytest.approx(0.5)
    a, b = np.array([1.0, 1e-17]), np.array([1.0, 2e-17])
    assert rel_error(a, b, floor=0.0) == pytest.approx(1 / 3)  # plain elementwise: rounding noise counts
    assert rel_error(a, b) < 1e-11  # floored: measured against 1e-5 of the largest entry
    assert rel_error(np.array([1.0, 1e-3]), np.array([1.0, 2e-3])) == pytest.approx(1 / 3)  # not hidden
    with pytest.raises(ValueError, match="shapes"):
        rel_error(np.zeros(2), np.zeros(3))


def torch_square(x: torch.Tensor) -> torch.Tensor:
    return (x**2).sum()


def test_check_against_autograd_passes_a_correct_gradient():
    x = np.random.default_rng(2).standard_normal((4, 5))
    report = check_against_autograd(lambda x: (float(np.sum(x**2)), 2 * x), torch_square, x)
    assert report.passed
    assert report.grad_error <= 1e-15 and report.loss_error <= 1e-15
    assert str(report).startswith("gradient matches torch autograd: worst relative error")
    assert "(tolerance 1e-09)" in str(report)


def test_check_against_autograd_locates_a_wrong_entry():
    x = np.random.default_rng(3).standard_normal((4, 5))

    def wrong(x):
        grad = 2 * x
        grad[2, 3] *= -1
        return float(np.sum(x**2)), grad

    report = check_against_autograd(wrong, torch_square, x)
    assert not report.passed
    assert report.worst_index == (2, 3)
    assert report.grad_error == pytest.approx(1.0)
    assert (report.ours, report.reference) == pytest.approx((-2 * x[2, 3], 2 * x[2, 3]))
    expected = "gradient DISAGREES with torch autograd: worst relative error 1 at index (2, 3) "
    assert str(report).startswith(expected)


def test_check_against_autograd_catches_a_wrong_loss():
    x = np.random.default_rng(4).standard_normal(6)
    report = check_against_autograd(lambda x: (float(np.sum(x**2)) + 1.0, 2 * x), torch_square, x)
    assert not report.passed
    assert "loss DISAGREES" in str(report)


def test_check_numerically_reports_the_index_in_x():
    x = np.random.default_rng(5).standard_normal((6, 7))

    def wrong(x):
        grad = df(x)
        grad[4, 1] += 1.0
        return f(x), grad

    assert check_numerically(lambda x: (f(x), df(x)), x, n_samples=15).passed
    report = check_numerically(wrong, x)
    assert not report.passed and report.worst_index == (4, 1)
    assert "DISAGREES with central differences" in str(report)
