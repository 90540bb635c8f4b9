"""HiPPO state matrices and the initialisations derived from them (S4, S4D, S4-PTD, S5, S5-PTD).

Everything here is float64 / complex128 math on CPU, run once when a layer is built; layers cast
the results to their own dtype and device.

- ``transition``: the HiPPO operators (A, B) of arXiv 2008.07669 in the normalised form of
  arXiv 2206.12037: LegS, LegT, LagT and the Fourier measure (FouT).
- ``rank_correction`` / ``nplr``: the normal-plus-low-rank form A = V (Lambda - P P*) V* of S4
  (arXiv 2111.00396) with Q tied to P (the Hurwitz form of SaShiMi, arXiv 2202.09729).
- ``diag_init``: the S4D initialisations (arXiv 2206.11893): LegS, Inv, Lin, Real.
- ``ptd`` / ``ptd_perturbation``: perturb-then-diagonalise (S4-PTD / S5-PTD, arXiv 2310.01698).
- ``s5_init`` / ``s5_ptd_init``: S5's block-diagonal initialisations (arXiv 2208.04933).

Conjugate halving and the sign of Im(Lambda). A real state matrix has eigenvalues in conjugate
pairs, so the diagonal inits keep one member of each pair (N // 2 modes) and the kernels take 2 Re.
Everywhere in this module the kept member is the one with **negative imaginary part** (zero for a
real pair), and modes are ordered by |Im| ascending: ``nplr``, ``diag_init`` (Inv and Lin are
-1/2 - i(...)) and ``s5_init`` all follow this. Under 2 Re the choice of sign is immaterial.

PTD. The HiPPO-LegS matrix A_H is far from normal: its eigenvector matrix has condition number
7.7e4 at N=8, 8e10 at N=16 and 1e19 at N=32, so diagonalising it directly is useless. PTD
perturbs the full A_H (not its normal part) by a small complex E so that
A_H + E = V diag(Lambda) V^-1 with a well-conditioned V. The paper minimises
kappa(V) + gamma ||E|| by gradient descent; we minimise

    log kappa_2(V(A_H + E)) + 30 ||E||_F / ||A_H||_F + sum_k relu(Re lambda_k + 1/2)

(V with unit-norm columns, which makes kappa invariant to the eigenvectors' gauge) by Adam on
Re E and Im E, differentiating through ``torch.linalg.eig``. Choices that differ from the paper's
code, and why:

- log kappa rather than kappa^2: with the log, the penalty weight reads directly as a size,
  since where kappa ~ c / ||E|| the optimum sits at ||E||_F / ||A_H||_F ~ 1 / weight. kappa^2
  with a penalty stalled at path-dependent trade-offs in our trials.
- the stability term keeps the eigenvalues left of Re = -1/2. Without it a 5% perturbation
  leaves dozens of eigenvalues with Re up to +150 at N=128, and the reflected system's transfer
  function is then far from HiPPO's. It is switched on after the exploration phase (below),
  because the eigenvalues of a badly conditioned matrix are too sensitive to steer.
- 4 random starts run for the first 300 of 3000 iterations, and the best start continues. The
  landscape has many local minima, so this makes the result insensitive to the seed. The best
  iterate by loss is kept. The learning rate decays exponentially from 0.02 to 2e-4, with E in
  units of ||A_H||_2 / N per entry.
- ``eps`` (optional) adds a hard bound ||E||_2 <= eps ||A_H||_2 by projecting after every step.

Shipped results (seed 0, eps None), as kappa(V) / ||E||_2/||A_H||_2: N=8 8.7/0.028,
N=16 8.7/0.029, N=32 7.2/0.038, N=64 4.8/0.074, N=128 7.8/0.086. All eigenvalues are at
Re <= -1/2. The sup over omega in [1, 50 N^2] of ||(i omega - A)^-1 b - (i omega - A_H)^-1 b|| is
0.1-1.1, against 10-80 for S4D-LegS, which drops the low-rank term. Where A_H is already
well conditioned (kappa <= 10: N <= 2) E is zero. As a last guard, ``ptd`` reflects any eigenvalue
with Re > 0 to -|Re|, as S4-PTD and S5-PTD's ``force_neg`` do; the reflected modes are no longer
similar to A_H + E. None of the shipped sizes needs it.

Optimising takes minutes for large N (about 10 s up to N=32, 45 s at N=64 and 165 s at N=128 on
one core). The perturbations for
N in {8, 16, 32, 64, 128} therefore ship in ``ssm/assets/ptd_legs_{N}.pt``. Each is a
``torch.save``d dict with ``E`` (N, N) complex128, the achieved ``kappa``,
``relative_perturbation`` (||E||_2 / ||A_H||_2), ``max_real_part``, ``naive_kappa``, ``seconds``
and the generating ``settings``. Regenerate them with
``python -m ssm.hippo --generate-ptd 8 16 32 64 128``. An asset is used only when its settings
equal the requested ones. Lambda and V are recomputed from A_H + E on load, in milliseconds.
"""

from __future__ import annotations

import argparse
import math
import time
import warnings
from pathlib import Path
from typing import Literal

import torch

from .checks import check_choice, check_size

__all__ = [
    "DIAG_INITS",
    "MEASURES",
    "diag_init",
    "nplr",
    "ptd",
    "ptd_perturbation",
    "rank_correction",
    "s5_init",
    "s5_ptd_init",
    "transition",
]

Measure = Literal["legs", "legt", "lagt", "fourier"]
DiagInit = Literal["legs", "inv", "lin", "real"]
MEASURES: tuple[str, ...] = ("legs", "legt", "lagt", "fourier")
DIAG_INITS: tuple[str, ...] = ("legs", "inv", "lin", "real")

# Smallest rank of P that makes A + P^T P normal, per measure.
_MIN_RANK = {"legs": 1, "legt": 2, "lagt": 1, "fourier": 1}

REAL = torch.float64
COMPLEX = torch.complex128


# ----------------------------------------------------------------------------------------------
# Argument checks


# ----------------------------------------------------------------------------------------------
# HiPPO operators and their normal-plus-low-rank form


def transition(measure: Measure, N: int) -> tuple[torch.Tensor, torch.Tensor]:
    """HiPPO state matrix A (N, N) and input vector B (N,), float64, for dx/dt = A x + B u.

    - ``legs`` (scaled Legendre): A_nk = -sqrt(2n+1) sqrt(2k+1) for n > k, -(n+1) for n = k, 0 above
      the diagonal; B_n = sqrt(2n+1).
    - ``legt`` (translated Legendre, sliding window): A_nk = -1/2 sqrt(2n+1) sqrt(2k+1) for k <= n and
      -1/2 (-1)^(n-k) sqrt(2n+1) sqrt(2k+1) for k > n; B_n = 1/2 sqrt(2n+1). This is the normalised
      basis of arXiv 2206.12037 with window length 2 (S4's convention), for which the rank-2
      correction rows are sqrt(n+1/2) restricted to even and to odd n.
    - ``lagt`` (translated Laguerre, exponentially decaying measure): A = -tril(ones), B = 1.
    - ``fourier`` (FouT, uniform window of length 1): state order [constant, cos 1, sin 1, cos 2,
      sin 2, ..., cos(N/2)]; A = J - B B^T with J the rotation generator (d/dt cos n = -2 pi n sin n,
      d/dt sin n = 2 pi n cos n) and B = [1, sqrt 2, 0, sqrt 2, 0, ...] (cosines sqrt 2, sines 0):
      the -B B^T term subtracts the reconstructed input leaving the window.
    """
    check_choice("hippo.transition", "measure", measure, MEASURES)
    check_size("hippo.transition", "N", N)
    n = torch.arange(N, dtype=REAL)
    root = torch.sqrt(2 * n + 1)  # (N,)
    if measure == "legs":
        A = -torch.tril(torch.outer(root, root), diagonal=-1) - torch.diag(n + 1)
        B = root.clone()
    elif measure == "legt":
        row, col = n[:, None], n[None, :]
        sign = torch.where(col <= row, 1.0, (-1.0) ** (row - col))  # (N, N)
        A = -0.5 * torch.outer(root, root) * sign
        B = 0.5 * root
    elif measure == "lagt":
        A = -torch.tril(torch.ones(N, N, dtype=REAL))
        B = torch.ones(N, dtype=REAL)
    else:  # fourier
        B = _fourier_endpoint(N)
        frequency = 2 * math.pi * torch.arange(1, (N - 1) // 2 + 1, dtype=REAL)  # pairs (cos k, sin k)
        cos_index = 2 * torch.arange(len(frequency)) + 1
        J = torch.zeros(N, N, dtype=REAL)
        J[cos_index, cos_index + 1] = -frequency
        J[cos_index + 1, cos_index] = frequency
        A = J - torch.outer(B, B)
    return A, B


def _fourier_endpoint(N: int) -> torch.Tensor:
    """Values of the FouT basis at the window ends: 1 (constant), sqrt 2 (cosines), 0 (sines)."""
    B = torch.zeros(N, dtype=REAL)
    B[0] = 1.0
    B[1::2] = math.sqrt(2.0)
    return B


def rank_correction(measure: Measure, N: int, rank: int = 1) -> torch.Tensor:
    """Low-rank term P (rank, N), float64, such that S = A + P^T P is normal.

    For ``legs`` and ``lagt`` S + S^T = -I; for ``legt`` and ``fourier`` S is skew-symmetric.
    ``legt`` needs rank 2 (rows sqrt(n+1/2) on even n and on odd n), the others rank 1; extra rows
    beyond the minimum are zero.
    """
    check_choice("hippo.rank_correction", "measure", measure, MEASURES)
    check_size("hippo.rank_correction", "N", N)
    minimum = _MIN_RANK[measure]
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < minimum:
        raise ValueError(f"rank must be an integer >= {minimum} for measure {measure!r}, got {rank!r}")
    n = torch.arange(N, dtype=REAL)
    P = torch.zeros(rank, N, dtype=REAL)
    if measure == "legs":
        P[0] = torch.sqrt(n + 0.5)
    elif measure == "legt":
        root = torch.sqrt(n + 0.5)
        P[0, 0::2] = root[0::2]
        P[1, 1::2] = root[1::2]
    elif measure == "lagt":
        P[0] = math.sqrt(0.5)
    else:  # fourier
        P[0] = _fourier_endpoint(N)
    return P


def _normal_part(measure: Measure, N: int, rank: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(S, A, P) with S = A + P^T P; checks that S = c I + (skew-symmetric)."""
    A, _ = transition(measure, N)
    P = rank_correction(measure, N, rank)
    S = A + P.T @ P  # (N, N)
    symmetric = S + S.T
    shift = symmetric.diagonal().mean() / 2
    residual = (symmetric - 2 * shift * torch.eye(N, dtype=REAL)).abs().max()
    if residual > 1e-10 * max(1.0, S.abs().max().item()):  # a wrong formula above, not bad input
        raise RuntimeError(f"normal part of {measure!r} is not c I + skew (residual {residual:.2e})")
    return S, A, P


def _half_diagonalise(S: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unitary diagonalisation of a real S = c I + K (K skew), one mode per conjugate pair.

    Returns Lambda (N/2,) complex, with Im(Lambda) <= 0 ordered by |Im| ascending, and V (N, N/2)
    with orthonormal columns such that [V, conj V] is unitary and
    S = [V, conj V] diag(Lambda, conj Lambda) [V, conj V]*.
    """
    N = S.shape[-1]
    shift = S.diagonal().mean()  # Re of every eigenvalue
    skew = S - shift * torch.eye(N, dtype=REAL)
    # -i K is Hermitian with real eigenvalues mu; eigenvalues of S are shift + i mu. eigh keeps V
    # unitary, which eig on a (nearly) defective matrix would not.
    mu, U = torch.linalg.eigh(-1j * skew.to(COMPLEX))  # (N,), (N, N); mu ascending
    tol = 1e-9 * max(1.0, mu.abs().max().item())
    negative = mu < -tol
    zero = mu.abs() <= tol
    n_negative, n_zero = int(negative.sum()), int(zero.sum())
    if n_negative != int((mu > tol).sum()) or n_zero % 2:
        raise RuntimeError("spectrum of a real skew matrix must come in +-i mu pairs")

    # Eigenvalue 0 of K: the null space is real, so pair up a real orthonormal basis q as
    # (q_2j + i q_2j+1) / sqrt 2 to get conjugate eigenvectors (both members have Im = 0).
    if n_zero:
        null = U[:, zero]  # (N, z)
        real_span = torch.cat([null.real, null.imag], dim=1)  # (N, 2z), rank z
        basis = torch.linalg.svd(real_span, full_matrices=False).U[:, :n_zero]  # (N, z) real
        V_zero = torch.complex(basis[:, 0::2], basis[:, 1::2]) / math.sqrt(2.0)  # (N, z/2)
    else:
        V_zero = torch.zeros(N, 0, dtype=COMPLEX)
    # eigh sorts mu ascending, so reversing the negative ones sorts them by |mu| ascending.
    V_negative = U[:, negative].flip(-1)  # (N, N/2 - z/2)
    mu_negative = mu[negative].flip(-1)

    Im = torch.cat([torch.zeros(n_zero // 2, dtype=REAL), mu_negative])  # (N/2,)
    Lambda = torch.complex(shift.expand(N // 2).clone(), Im)
    V = torch.cat([V_zero, V_negative], dim=1)  # (N, N/2)
    return Lambda, V


def nplr(
    measure: Measure, N: int, rank: int = 1, B_clip: float | None = 2.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Normal-plus-low-rank form of a HiPPO operator, one mode per conjugate pair.

    A = V (Lambda - P P*) V* once Lambda, P, B, V are completed with their conjugates
    (V_full = [V, conj V], Lambda_full = [Lambda, conj Lambda], P_full = [P, conj P]).

    Returns (complex128):
        Lambda: (N/2,) eigenvalues of the normal part S = A + p^T p; Im <= 0, by |Im| ascending.
        P:      (rank, N/2) = (V* p^T)^T, the low-rank term in the eigenbasis (Q = P: Hurwitz form).
        B:      (N/2,) = V* B, with Im(B) clipped to [-B_clip, B_clip] unless B_clip is None.
        V:      (N, N/2) orthonormal columns.
    """
    check_choice("hippo.nplr", "measure", measure, MEASURES)
    check_size("hippo.nplr", "N", N, even=True)
    if B_clip is not None and not B_clip > 0:
        raise ValueError(f"B_clip must be positive or None, got {B_clip!r}")
    S, _, p = _normal_part(measure, N, rank)
    Lambda, V = _half_diagonalise(S)
    _, B = transition(measure, N)
    V_adjoint = V.conj().T  # (N/2, N)
    P = (V_adjoint @ p.T.to(COMPLEX)).T  # (rank, N/2)
    B = V_adjoint @ B.to(COMPLEX)  # (N/2,)
    if B_clip is not None:
        B = torch.complex(B.real, B.imag.clamp(-B_clip, B_clip))
    return Lambda, P, B, V


def diag_init(init: DiagInit, N: int) -> tuple[torch.Tensor, torch.Tensor]:
    """S4D initialisations: (Lambda, B), each (N/2,) complex128, for N // 2 conjugate pairs.

    - ``legs``: eigenvalues of the LegS normal part (Re = -1/2) and B = V* b with Im clipped to +-2.
    - ``inv``:  -1/2 - i (N/pi) (N/(2n+1) - 1), B = 1.
    - ``lin``:  -1/2 - i pi n, B = 1.
    - ``real``: -(n+1), B = 1.
    Im(Lambda) <= 0 throughout, as in ``nplr`` (the conjugate would do equally under 2 Re).
    """
    check_choice("hippo.diag_init", "init", init, DIAG_INITS)
    check_size("hippo.diag_init", "N", N, even=True)
    if init == "legs":
        Lambda, _, B, _ = nplr("legs", N, rank=1, B_clip=2.0)
        return Lambda, B
    n = torch.arange(N // 2, dtype=REAL)
    half = torch.full_like(n, -0.5)
    if init == "inv":
        Lambda = torch.complex(half, -(N / math.pi) * (N / (2 * n + 1) - 1))
    elif init == "lin":
        Lambda = torch.complex(half, -math.pi * n)
    else:  # real
        Lambda = torch.complex(-(n + 1), torch.zeros_like(n))
    return Lambda, torch.ones(N // 2, dtype=COMPLEX)


# ----------------------------------------------------------------------------------------------
# Perturb-then-diagonalise

_PTD_PENALTY = 30.0  # weight of ||E||_F / ||A_H||_F; where kappa ~ 1/||E||, ||E|| settles near 1/weight
_PTD_STABILITY = 1.0  # weight of sum(relu(Re lambda + margin)): a hinge, no pull on stable eigenvalues
_PTD_MARGIN = 0.5  # keep eigenvalues left of Re = -1/2 (A_H's own are -1 ... -N)
_PTD_KAPPA_TARGET = 10.0  # below this the unperturbed eigendecomposition is used as is (N <= 2)
_PTD_ITERATIONS = 3000
_PTD_STARTS = 4  # independent random starts, each run for the first _PTD_EXPLORE_ITERATIONS
_PTD_EXPLORE_ITERATIONS = 300
_PTD_LR = 0.02  # Adam, on E in units of ||A_H||_2 / N per entry
_PTD_LR_FINAL_FRACTION = 0.01  # exponential decay to this fraction of the lr
_PTD_INIT_SCALE = 0.01  # std of the initial Re E, Im E in the same units
_ASSET_DIR = Path(__file__).resolve().parent / "assets"
_ASSET_FORMAT = 1


def _ptd_settings(eps: float | None, seed: int) -> dict:
    return {
        "objective": "log kappa_2(V) + penalty ||E||_F/||A_H||_F"
        " + stability sum relu(Re lambda + margin) (after the exploration)",
        "eps": None if eps is None else float(eps),
        "seed": int(seed),
        "penalty": _PTD_PENALTY,
        "stability": _PTD_STABILITY,
        "margin": _PTD_MARGIN,
        "iterations": _PTD_ITERATIONS,
        "starts": _PTD_STARTS,
        "explore_iterations": _PTD_EXPLORE_ITERATIONS,
        "lr": _PTD_LR,
        "lr_final_fraction": _PTD_LR_FINAL_FRACTION,
        "init_scale": _PTD_INIT_SCALE,
        "kappa_target": _PTD_KAPPA_TARGET,
    }


def _asset_path(N: int) -> Path:
    return _ASSET_DIR / f"ptd_legs_{N}.pt"


def _unit_columns(V: torch.Tensor) -> torch.Tensor:
    return V / torch.linalg.vector_norm(V, dim=0, keepdim=True)


def _kappa(V: torch.Tensor) -> torch.Tensor:
    """2-norm condition number, sigma_max / sigma_min (differentiable)."""
    sigma = torch.linalg.svdvals(V)
    return sigma[0] / sigma[-1]


def _eigendecomposition(M: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(Lambda, V, V_inv) of a diagonalisable M, in a reproducible order and gauge.

    Eigenvalues are sorted by Im then Re; each column of V has unit norm and its largest entry
    real positive.
    """
    Lambda, V = torch.linalg.eig(M.to(COMPLEX))
    order = torch.argsort(Lambda.real, stable=True)
    order = order[torch.argsort(Lambda.imag[order], stable=True)]
    Lambda, V = Lambda[order], _unit_columns(V[:, order])
    pivot = V.gather(0, V.abs().argmax(dim=0, keepdim=True))  # (1, N)
    V = V * (pivot.abs() / pivot)
    return Lambda, V, torch.linalg.inv(V)


def _optimise_perturbation(N: int, eps: float | None, seed: int) -> tuple[torch.Tensor, dict]:
    A_H = transition("legs", N)[0].to(COMPLEX)
    norm_A = torch.linalg.matrix_norm(A_H, 2).item()
    naive_kappa = _kappa(_eigendecomposition(A_H)[1]).item()
    settings = _ptd_settings(eps, seed)
    start = time.perf_counter()
    if naive_kappa <= _PTD_KAPPA_TARGET:
        E = torch.zeros(N, N, dtype=COMPLEX)
    else:
        E = _descend(A_H, None if eps is None else eps * norm_A, seed)
    Lambda, V, _ = _eigendecomposition(A_H + E)
    info = {
        "kappa": _kappa(V).item(),
        "relative_perturbation": torch.linalg.matrix_norm(E, 2).item() / norm_A,
        "max_real_part": Lambda.real.max().item(),  # before the reflection in ``ptd``
        "naive_kappa": naive_kappa,
        "seconds": time.perf_counter() - start,
        "settings": settings,
    }
    return E, info


class _PerturbationRun:
    """One Adam descent on (Re E, Im E), optionally projected onto ||E||_2 <= bound; it remembers
    its best iterate."""

    def __init__(self, A_H: torch.Tensor, bound: float | None, generator: torch.Generator):
        N = A_H.shape[-1]
        self.A_H, self.bound = A_H, bound
        self.norm_A_frobenius = torch.linalg.matrix_norm(A_H).item()
        self.unit = torch.linalg.matrix_norm(A_H, 2).item() / N  # entry size of a matrix as big as A_H
        self.E_real = (torch.randn(N, N, dtype=REAL, generator=generator) * _PTD_INIT_SCALE).requires_grad_()
        self.E_imag = (torch.randn(N, N, dtype=REAL, generator=generator) * _PTD_INIT_SCALE).requires_grad_()
        self.optimiser = torch.optim.Adam([self.E_real, self.E_imag], lr=_PTD_LR)
        decay = _PTD_LR_FINAL_FRACTION ** (1.0 / _PTD_ITERATIONS)
        self.schedule = torch.optim.lr_scheduler.ExponentialLR(self.optimiser, gamma=decay)
        self.best_loss, self.best_E = math.inf, None
        self.iteration = 0
        self._project()

    def perturbation(self) -> torch.Tensor:
        return torch.complex(self.E_real, self.E_imag) * self.unit

    def _project(self) -> None:
        if self.bound is None:
            return
        with torch.no_grad():
            norm_E = torch.linalg.matrix_norm(self.perturbation(), 2).item()
            if norm_E > self.bound:
                self.E_real.mul_(self.bound / norm_E)
                self.E_imag.mul_(self.bound / norm_E)

    def step(self) -> None:
        E = self.perturbation()
        Lambda, V = torch.linalg.eig(self.A_H + E)
        kappa = _kappa(_unit_columns(V))  # invariant to the eigenvectors' scale and phase
        size = torch.linalg.matrix_norm(E) / self.norm_A_frobenius
        instability = torch.relu(Lambda.real + _PTD_MARGIN).sum()
        # Eigenvalues of a badly conditioned A_H + E are too sensitive to steer, so the stability
        # term joins once the exploration has brought kappa down (the loss changes: forget the best).
        stability = _PTD_STABILITY if self.iteration >= _PTD_EXPLORE_ITERATIONS else 0.0
        if self.iteration == _PTD_EXPLORE_ITERATIONS:
            self.best_loss = math.inf
        self.iteration += 1
        loss = torch.log(kappa) + _PTD_PENALTY * size + stability * instability
        if loss.item() < self.best_loss:
            self.best_loss, self.best_E = loss.item(), E.detach().clone()
        self.optimiser.zero_grad()
        loss.backward()
        self.optimiser.step()
        self.schedule.step()
        self._project()


def _descend(A_H: torch.Tensor, bound: float | None, seed: int) -> torch.Tensor:
    """Best E over _PTD_STARTS short starts, the most promising one continued to the end."""
    generator = torch.Generator().manual_seed(seed)
    # One thread: LAPACK on small matrices is many times faster without threading overhead, and the
    # trajectory (hence the shipped assets) does not depend on the caller's thread count.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        runs = [_PerturbationRun(A_H, bound, generator) for _ in range(_PTD_STARTS)]
        for _ in range(_PTD_EXPLORE_ITERATIONS):
            for run in runs:
                run.step()
        # The landscape has many local minima; which start ends best is already visible early.
        run = min(runs, key=lambda r: r.best_loss)
        for _ in range(_PTD_ITERATIONS - _PTD_EXPLORE_ITERATIONS):
            run.step()
    finally:
        torch.set_num_threads(threads)
    return run.best_E


def _load_asset(N: int, settings: dict) -> tuple[torch.Tensor, dict] | None:
    path = _asset_path(N)
    if not path.is_file():
        return None
    asset = torch.load(path, map_location="cpu", weights_only=True)
    shipped = asset.get("settings", {})
    if asset.get("format") != _ASSET_FORMAT or shipped != settings:
        if (shipped.get("eps"), shipped.get("seed")) == (settings["eps"], settings["seed"]):
            # Same request, older optimiser settings: the asset is stale, not merely different.
            warnings.warn(f"{path} is stale ({shipped} != {settings}); recomputing", stacklevel=3)
        return None
    keys = ("kappa", "relative_perturbation", "max_real_part", "naive_kappa", "seconds", "settings")
    info = {key: asset[key] for key in keys}
    return asset["E"].to(COMPLEX), info


def ptd_perturbation(
    N: int, *, eps: float | None = None, seed: int = 0, cache: bool = True
) -> tuple[torch.Tensor, dict]:
    """The PTD perturbation E (N, N) complex128 of HiPPO-LegS, and a dict describing it.

    The dict holds ``kappa`` (of V(A_H + E), unit-norm columns), ``relative_perturbation``
    (||E||_2 / ||A_H||_2), ``max_real_part`` (of eig(A_H + E)), ``naive_kappa`` (of V(A_H)),
    ``seconds`` (optimisation time) and the generating ``settings``. ``eps``, when given, is a hard
    bound on ||E||_2 / ||A_H||_2 (E is projected onto it after every step); by default only the
    penalty limits E. With ``cache`` the shipped asset is used when its settings match the
    request (the shipped ones are for eps=None, seed=0); otherwise E is optimised here.
    """
    check_size("hippo.ptd_perturbation", "N", N)
    if eps is not None and not eps > 0:
        raise ValueError(f"eps must be positive (a bound on ||E||_2 / ||A_H||_2) or None, got {eps!r}")
    settings = _ptd_settings(eps, seed)
    if cache:
        cached = _load_asset(N, settings)
        if cached is not None:
            return cached
        if N > 32:
            warnings.warn(
                f"ptd: no precomputed perturbation for N={N} (eps={eps}, seed={seed}); optimising now, "
                f"which takes a while for large N (minutes at N=128). Ship one with "
                f"`python -m ssm.hippo --generate-ptd {N}`.",
                stacklevel=2,
            )
    return _optimise_perturbation(N, eps, seed)


def ptd(
    N: int, *, eps: float | None = None, seed: int = 0, cache: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Perturb-then-diagonalise HiPPO-LegS: A_H + E = V diag(Lambda) V^-1 with kappa(V) small.

    Returns (complex128) Lambda (N,): all N eigenvalues (no conjugate halving; E is complex so
    they are not in pairs), with Re reflected to -|Re| where it was positive; V (N, N) with
    unit-norm columns; V_inv (N, N). See the module docstring for the optimisation and
    ``ptd_perturbation`` for the arguments.
    """
    E, _ = ptd_perturbation(N, eps=eps, seed=seed, cache=cache)
    A_H = transition("legs", N)[0].to(COMPLEX)
    Lambda, V, V_inv = _eigendecomposition(A_H + E)
    Lambda = torch.complex(-Lambda.real.abs(), Lambda.imag)
    return Lambda, V, V_inv


# ----------------------------------------------------------------------------------------------
# S5


def _block_size(P: int, blocks: int, *, even: bool) -> int:
    check_size("hippo.s5_init", "P", P)
    check_size("hippo.s5_init", "blocks", blocks)
    if P % blocks:
        raise ValueError(f"P must be divisible by blocks, got P={P}, blocks={blocks}")
    block = P // blocks
    if even and block % 2:
        raise ValueError(
            f"P // blocks must be even with conj_sym=True (one mode per conjugate pair), got {block}"
        )
    return block


def _tile(Lambda_block: torch.Tensor, V_block: torch.Tensor, V_inv_block: torch.Tensor, blocks: int):
    Lambda = Lambda_block.repeat(blocks)
    V = torch.block_diag(*[V_block] * blocks)
    V_inv = torch.block_diag(*[V_inv_block] * blocks)
    return Lambda, V, V_inv


def s5_init(P: int, blocks: int, *, conj_sym: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """S5's block-diagonal HiPPO-N init: (Lambda, V, V_inv), complex128.

    Each of the ``blocks`` blocks (size R = P // blocks) is the LegS normal part S (Re = -1/2),
    diagonalised unitarily. With ``conj_sym`` each block keeps its R/2 eigenvalues with Im <= 0
    (by |Im| ascending, as ``nplr``): Lambda (P/2,), V (P, P/2), V_inv = V* (P/2, P), and
    S_blockdiag = 2 Re(V diag(Lambda) V*). Without it, each block is [kept half, conjugates]:
    Lambda (P,), V (P, P) unitary, V_inv = V*.
    """
    block = _block_size(P, blocks, even=True)
    S, _, _ = _normal_part("legs", block, 1)
    Lambda, V = _half_diagonalise(S)
    if not conj_sym:
        Lambda = torch.cat([Lambda, Lambda.conj()])
        V = torch.cat([V, V.conj()], dim=1)
    return _tile(Lambda, V, V.conj().T, blocks)


def s5_ptd_init(P: int, blocks: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """S5-PTD: block-diagonal ``ptd(P // blocks)``, full R modes per block (no conjugate halving).

    Returns Lambda (P,), V (P, P), V_inv (P, P), complex128.
    """
    block = _block_size(P, blocks, even=False)
    return _tile(*ptd(block), blocks)


# ----------------------------------------------------------------------------------------------
# Asset generation


def _generate_ptd_assets(sizes: list[int], eps: float | None, seed: int) -> None:
    _ASSET_DIR.mkdir(exist_ok=True)
    print(f"{'N':>5} {'kappa':>8} {'||E||/||A||':>12} {'max Re':>8} {'naive kappa':>12} {'seconds':>8}")
    for N in sizes:
        E, info = _optimise_perturbation(N, eps, seed)
        asset = {"format": _ASSET_FORMAT, "N": N, "E": E, **info}
        torch.save(asset, _asset_path(N))
        print(
            f"{N:>5} {info['kappa']:>8.3f} {info['relative_perturbation']:>12.4f} "
            f"{info['max_real_part']:>8.3f} {info['naive_kappa']:>12.3e} {info['seconds']:>8.1f}",
            flush=True,
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ssm.hippo", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--generate-ptd", type=int, nargs="+", metavar="N", required=True,
        help="optimise the PTD perturbation for these state sizes and write ssm/assets/ptd_legs_{N}.pt",
    )
    parser.add_argument(
        "--eps", type=float, default=None,
        help="hard bound on ||E||_2 / ||A_H||_2 (default: none; `ptd` loads only eps=None assets by default)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    _generate_ptd_assets(args.generate_ptd, args.eps, args.seed)


if __name__ == "__main__":
    main()
