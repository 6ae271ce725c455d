"""L-BFGS that stays on the device: no host synchronisation and a fixed, small number of kernels
per iteration, so that one iteration can be captured in a CUDA graph.

It is the algorithm of ``torch.optim.LBFGS(lr=lr, history_size=m, line_search_fn=None)`` called
with ``max_iter=1`` per step (as :func:`nst_lessons.transfer.style_transfer` does): the first step
is ``-g * min(1, 1/|g|_1) * lr``, later ones ``-H g * lr`` with the two-loop recursion's H, a pair
(s, y) is stored only if ``s.y > 1e-10``, and there is no line search and no stopping test.

torch's version runs the two-loop recursion as 2m dot products and 2m axpys over Python lists and
reads scalars back to the host several times per step (the loss, the curvature test, and each
alpha_i, which ``add_`` takes as a number): with m = 100 that is hundreds of tiny kernels and about
100 host syncs per iteration, more than VGG-19 itself costs on a GPU at 512 px.

Here the two loops are triangular solves. With the k stored pairs in order, oldest first, as the
rows of S and Y (k x n), R the upper triangle of S Y^T (R_ij = s_i.y_j, i <= j), D its diagonal
(D_ii = 1/rho_i), gamma = s.y / y.y of the newest pair, and q0 = -g:

    first loop   alpha_i = rho_i s_i.(q0 - sum_{j>i} alpha_j y_j)      <=>  R alpha = S q0
    then         r0 = gamma (q0 - Y^T alpha)
    second loop  beta_i = rho_i y_i.(r0 + sum_{j<i} c_j s_j),  c = alpha - beta
                                                               <=>  R^T c = D alpha - Y r0
    direction    d = r0 + S^T c = -gamma g + S^T c - gamma Y^T alpha

(Byrd, Nocedal & Schnabel's compact representation, reached from the two-loop side.) The n-long
work is two passes over the (2, m, n) history: one product with [y, g] (which also updates S Y^T
and Y Y^T for the new pair) and one with the coefficients [c, -gamma alpha]. The m x m algebra is
done in float64. The history is a ring buffer; its slots are put in chronological order only in the
small m x m matrices.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor

CURVATURE_EPS = 1e-10
"""A pair (s, y) is stored only if s.y exceeds this, as in torch.optim.LBFGS."""


class LBFGS:
    """Device-resident L-BFGS over one flat parameter vector.

    Args:
        n: number of parameters.
        history_size: m, the number of (s, y) pairs kept.
        lr: step size (1 in style transfer, as in torch's and neural-style's default).
        device, dtype: of the parameters; the history uses the same, the m x m algebra float64.

    Memory: the history holds 2 m n values, plus four n-vectors.
    """

    def __init__(
        self,
        n: int,
        history_size: int = 100,
        lr: float = 1.0,
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if history_size < 1:
            raise ValueError(f"history_size must be at least 1, got {history_size}")
        m = self.m = history_size
        self.lr = lr
        vector = dict(device=device, dtype=dtype)
        small = dict(device=device, dtype=torch.float64)
        index = dict(device=device, dtype=torch.long)
        self.W = torch.zeros(2, m, n, **vector)  # W[0] = S, W[1] = Y, one pair per slot
        self.SY = torch.zeros(m, m, **small)  # SY[i, j] = s_i.y_j, slot order
        self.YY = torch.zeros(m, m, **small)  # YY[i, j] = y_i.y_j
        self.gamma = torch.ones((), **small)  # H_0 = gamma I, gamma = s.y / y.y of the newest pair
        self.head = torch.zeros(1, **index)  # the slot the next pair goes to (the oldest when full)
        self.count = torch.zeros((), **index)  # pairs stored, at most m
        self.iteration = torch.zeros((), **index)
        self.d = torch.zeros(n, **vector)  # the last direction and step size: s = t d
        self.t = torch.zeros((), **vector)
        self.g_prev = torch.zeros(n, **vector)
        self._slots = torch.arange(m, **index)
        self._eye = torch.eye(m, **small)

    @torch.no_grad()
    def step(self, x: Tensor, g: Tensor) -> None:
        """One iteration: given the gradient g at x (both flat, length n), move x in place.

        Every update is in place on fixed tensors, so a CUDA graph of this call stays valid.
        """
        with _ieee_matmuls():
            self._step(x, g)

    def _step(self, x: Tensor, g: Tensor) -> None:
        m = self.m
        s = self.d * self.t
        y = g - self.g_prev
        ys = y @ s  # s = 0 at the first call, so no pair is stored then
        accept = ys > CURVATURE_EPS
        old = self.W.index_select(1, self.head)
        self.W.index_copy_(1, self.head, torch.where(accept, torch.stack([s, y]).unsqueeze(1), old))

        # One pass over the history: S y, Y y (the new pair's column of SY and YY) and S g, Y g.
        products = (torch.stack([y, g]) @ self.W.view(2 * m, -1).T).double()
        (Sy, Yy), (Sg, Yg) = products[0].view(2, m), products[1].view(2, m)
        column = self.head.expand(m).unsqueeze(1)
        self.SY.scatter_(1, column, torch.where(accept, Sy, self.SY.gather(1, column)[:, 0]).unsqueeze(1))
        yy_column = torch.where(accept, Yy, self.YY.gather(1, column)[:, 0])
        self.YY.scatter_(1, column, yy_column.unsqueeze(1))
        self.YY.index_copy_(0, self.head, yy_column.unsqueeze(0))
        self.gamma.copy_(torch.where(accept, ys.double() / (y @ y).double(), self.gamma))
        self.head.copy_(torch.where(accept, (self.head + 1) % m, self.head))
        self.count.copy_(torch.where(accept, (self.count + 1).clamp(max=m), self.count))

        # The two loops, in chronological order (oldest pair first); unused slots solve to 0.
        order = (self.head - self.count + self._slots) % m
        valid = self._slots < self.count
        both = valid.unsqueeze(1) & valid.unsqueeze(0)
        R = torch.where(both, self.SY.index_select(0, order).index_select(1, order).triu(), self._eye)
        YY = torch.where(both, self.YY.index_select(0, order).index_select(1, order), 0.0)
        Sg, Yg = (torch.where(valid, v.index_select(0, order), 0.0) for v in (Sg, Yg))
        alpha = torch.linalg.solve_triangular(R, -Sg.unsqueeze(1), upper=True)
        Y_r0 = self.gamma * (-Yg.unsqueeze(1) - YY @ alpha)
        c = torch.linalg.solve_triangular(R.T, R.diagonal().unsqueeze(1) * alpha - Y_r0, upper=False)
        coefficients = torch.zeros(2, m, dtype=R.dtype, device=R.device)
        coefficients.index_copy_(1, order, torch.stack([c[:, 0], -self.gamma * alpha[:, 0]]))
        d = self.W.view(2 * m, -1).T @ coefficients.view(-1).to(g.dtype) - self.gamma.to(g.dtype) * g

        # torch's first step is scaled by min(1, 1/|g|_1); later steps are lr.
        first_t = (1 / g.abs().sum()).clamp(max=1) * self.lr
        self.t.copy_(torch.where(self.iteration == 0, first_t, self.lr))
        self.d.copy_(d)
        self.g_prev.copy_(g)
        self.iteration += 1
        x.add_(self.d * self.t)


@contextlib.contextmanager
def _ieee_matmuls() -> Iterator[None]:
    """Full float32 matmuls for the history's products, even where the run allows TF32 (which
    would round s_i and y_i to 10-bit mantissas and spoil the m x m algebra)."""
    matmul = torch.backends.cuda.matmul
    saved = matmul.allow_tf32
    matmul.allow_tf32 = False
    try:
        yield
    finally:
        matmul.allow_tf32 = saved


__all__ = ["CURVATURE_EPS", "LBFGS"]
