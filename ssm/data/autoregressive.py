"""AR(p) processes as forecasting data: the synthetic task of SpaceTime's expressivity claim
(arXiv 2303.09489, Sec. 4: companion SSMs fit AR(p) processes that prior deep SSMs fail on).

    x_t = phi_1 x_{t-1} + ... + phi_p x_{t-p} + sigma eps_t,   eps_t ~ N(0, 1)

``ARProcess`` returns (lag window, horizon) pairs, each window from its own independent
stretch of the process after a burn-in, so items are i.i.d. and stationary. Because the process
is known, so is the best possible forecaster: the conditional mean, computed by running the
recursion forward with the true coefficients and zero future noise (``oracle_forecast``), whose
expected squared error at step h (h = 0 is the next value) is
``sigma^2 sum_{j<=h} psi_j^2`` with psi the impulse response (``oracle_mse``). A model's test
MSE divided by the oracle's measures how much of the predictable structure it captured (1 is
perfect).

Deterministic in (seed, split): the coefficients depend on the seed only, the noise on both.
"""

from __future__ import annotations

import math

import torch
from torch.utils.data import Dataset

from .synthetic import _generator

__all__ = ["ARProcess", "random_stable_coefficients"]


def random_stable_coefficients(order: int, *, root_radius: tuple[float, float] = (0.7, 0.95),
                               generator: torch.Generator | None = None) -> torch.Tensor:
    """phi (order,) float64 of a stable AR(p): 1 - sum phi_i z^i = prod_r (1 - lambda_r z) with
    conjugate pairs lambda = rho e^{+-i theta} (rho ~ U(root_radius), theta ~ U(0.05 pi, 0.95 pi))
    and one real root rho (random sign) when the order is odd."""
    lo, hi = root_radius
    if not 0 < lo <= hi < 1:
        raise ValueError(f"random_stable_coefficients: `root_radius` must satisfy 0 < lo <= hi < 1, got {root_radius}")
    roots = []
    for _ in range(order // 2):
        rho = lo + (hi - lo) * torch.rand((), generator=generator, dtype=torch.float64)
        theta = math.pi * (0.05 + 0.9 * torch.rand((), generator=generator, dtype=torch.float64))
        lam = torch.polar(rho, theta)
        roots += [lam, lam.conj()]
    if order % 2:
        rho = lo + (hi - lo) * torch.rand((), generator=generator, dtype=torch.float64)
        sign = 1.0 if torch.rand((), generator=generator) < 0.5 else -1.0
        roots.append(torch.complex(sign * rho, torch.zeros((), dtype=torch.float64)))
    poly = torch.ones(1, dtype=torch.complex128)  # coefficients of prod (1 - lambda z), lowest first
    for lam in roots:
        poly = torch.cat([poly, poly.new_zeros(1)]) - lam * torch.cat([poly.new_zeros(1), poly])
    return -poly[1:].real.clone()


def impulse_response(phi: torch.Tensor, n: int) -> torch.Tensor:
    """psi_0..psi_{n-1} of x_t = sum phi_i x_{t-i} + eps_t (psi_0 = 1)."""
    p = phi.shape[0]
    psi = torch.zeros(n + p, dtype=torch.float64)
    psi[p] = 1.0
    for t in range(p + 1, n + p):
        psi[t] = (phi * psi[t - p : t].flip(0)).sum()
    return psi[p:]


class ARProcess(Dataset):
    """x: (lag, 1) float32, y: (horizon, 1) float32 windows of a stationary AR(p) process.

    ``coefficients`` gives phi_1..phi_p (checked for stability); otherwise ``order`` random
    stable ones are drawn from ``seed`` (``random_stable_coefficients``). ``noise`` is the
    innovation std sigma; None picks the sigma that makes the stationary variance 1. ``size``
    windows in the train split, ``eval_size`` (default size // 4) in val and test.
    """

    def __init__(self, split: str = "train", *, order: int = 4, coefficients: list[float] | tuple[float, ...] | None = None,
                 lag: int = 64, horizon: int = 16, noise: float | None = None, size: int = 2000,
                 eval_size: int | None = None, root_radius: tuple[float, float] = (0.7, 0.95), seed: int = 0):
        name = "ARProcess"
        for arg, value in (("lag", lag), ("horizon", horizon), ("size", size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: `{arg}` must be an int >= 1, got {value!r}")
        if coefficients is not None:
            phi = torch.as_tensor(list(coefficients), dtype=torch.float64)
            if phi.dim() != 1 or phi.numel() < 1:
                raise ValueError(f"{name}: `coefficients` must be a non-empty list of floats, got {coefficients!r}")
        else:
            if isinstance(order, bool) or not isinstance(order, int) or order < 1:
                raise ValueError(f"{name}: `order` must be an int >= 1, got {order!r}")
            phi = random_stable_coefficients(order, root_radius=tuple(root_radius),
                                             generator=torch.Generator().manual_seed(seed))
        p = phi.numel()
        companion = torch.diag(torch.ones(p - 1, dtype=torch.float64), -1)
        companion[0] = phi  # x_t = phi . (x_{t-1}, ..., x_{t-p}) in the first row
        radius = torch.linalg.eigvals(companion).abs().max().item()
        if radius >= 1:
            raise ValueError(f"{name}: `coefficients` {phi.tolist()} are not stable (largest root modulus {radius:.4f} >= 1)")
        if lag < p:
            raise ValueError(f"{name}: `lag` ({lag}) must be >= the order p = {p} for the oracle forecast")
        # psi decays like radius^n: enough terms for the variance to 1e-12, and as many burn-in steps
        n_psi = max(horizon, int(math.log(1e-12) / math.log(max(radius, 1e-3))) + p)
        psi = impulse_response(phi, n_psi)
        if noise is None:
            sigma = 1.0 / math.sqrt(float((psi**2).sum()))
        elif noise > 0:
            sigma = float(noise)
        else:
            raise ValueError(f"{name}: `noise` must be > 0 or None (unit stationary variance), got {noise}")
        self.coefficients, self.noise_std, self.psi = phi, sigma, psi
        self.stationary_variance = sigma**2 * float((psi**2).sum())
        self.lag, self.horizon, self.order = lag, horizon, p

        n = size if split == "train" else (eval_size if eval_size is not None else max(1, size // 4))
        g = _generator(seed, split)
        burn = n_psi
        T = burn + lag + horizon
        eps = sigma * torch.randn(n, T, generator=g, dtype=torch.float64)
        x = torch.zeros(n, T + p, dtype=torch.float64)
        w = phi.flip(0)  # (phi_p, ..., phi_1) against (x_{t-p}, ..., x_{t-1})
        for t in range(T):
            x[:, t + p] = x[:, t : t + p] @ w + eps[:, t]
        window = x[:, p + burn :].float()  # (n, lag + horizon)
        self.x, self.y = window[:, :lag, None], window[:, lag:, None]

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]

    def oracle_mse(self) -> torch.Tensor:
        """Expected squared error of the optimal forecast at each horizon step: (horizon,)."""
        return self.noise_std**2 * torch.cumsum(self.psi[: self.horizon] ** 2, 0)

    def oracle_forecast(self, x: torch.Tensor) -> torch.Tensor:
        """The conditional mean given the window: (B, lag, 1) -> (B, horizon, 1), float64."""
        if x.dim() != 3 or x.shape[-1] != 1 or x.shape[1] < self.order:
            raise ValueError(f"ARProcess.oracle_forecast: `x` must be (B, L >= {self.order}, 1), got {tuple(x.shape)}")
        hist = x[:, -self.order :, 0].double()  # (B, p), oldest first
        w = self.coefficients.flip(0)
        out = []
        for _ in range(self.horizon):
            nxt = hist @ w
            out.append(nxt)
            hist = torch.cat([hist[:, 1:], nxt[:, None]], dim=1)
        return torch.stack(out, 1).unsqueeze(-1)
