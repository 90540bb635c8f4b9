"""Companion-matrix SSM kernels: SpaceTime's open loop, state, and closed loop (arXiv 2303.09489).

The state matrix is a companion matrix, a down-shift plus a learned last column,

    A = S + a e_{d-1}^T,   S_{i+1, i} = 1,   characteristic polynomial z^d - sum_i a_i z^i,

so ``A v`` costs O(d) (shift ``v`` down one place, add ``a * v[d-1]``) and the whole system is
described by polynomials of degree d. Everything here runs on ``(..., d)`` parameter tensors
(leading dims broadcast, e.g. ``(H, d)`` against a state ``(B, H, d)``) and never forms or
powers a d x d matrix; the ``*_ref`` functions beside each one do exactly that, as the plainly
correct reference (use float64 to compare).

Notation. For u, v in R^d, ``Q(u, v)(z) = u^T (I - zS)^{-1} v = sum_{j<d} r_j z^j`` with the
cross-correlation ``r_j = sum_i u_{i+j} v_i`` (S is nilpotent, so the sum stops at d - 1).
Sherman-Morrison on ``I - zA = (I - zS) - z a e_{d-1}^T`` gives the resolvent

    u^T (I - zA)^{-1} v = Q(u, v) + z Q(u, a) Q(e, v) / D(z),
    D(z) = det(I - zA) = 1 - z Q(e, a) = 1 - sum_i a_i z^{d-i},     e = e_{d-1},

whose power-series coefficients are ``u^T A^l v``. Two ways to get a kernel from it:

* ``companion_kernel(..., method="woodbury")``, the paper's formula (Sec. 3.3, App. C.2):
  evaluate at the L-th roots of unity ``z_k``. Since ``z_k^L = 1``, the length-L kernel's DFT is
  ``c~^T (I - z_k A)^{-1} b`` with ``c~^T = c^T (I - A^L)``. The Q polynomials come from FFT
  correlations of size ~2d, are folded modulo L (``z^j = z^{j mod L}``, so d > L is fine), then
  one length-L DFT, the rank-1 correction, and ``irfft``: O(d log d + L log L). The reference
  repository learns c~ directly (``c_tilde=True`` here); with ``c_tilde=False`` we learn c and
  get ``c^T A^L`` from ``companion_power_row`` (below), never by powering. Caveat: the formula
  divides by ``D(z_k)``, which vanishes when A has an eigenvalue at a root of unity (e.g.
  ``a = e_{d-1}``, an integrator, has eigenvalue 1): near there the FFT path loses accuracy.
* ``method="series"`` (default): the truncated power series ``N(z) / D(z) mod z^L`` with the
  numerator ``N = Q(c,b) D + z Q(c,a) Q(e,b)`` (degree < d) and ``1/D`` by Newton's iteration
  ``g <- g (2 - D g)``, doubling the number of correct coefficients per round with FFT
  products: O((d + L) log(d + L)), no division, and exact (not aliased) for any d and L. With
  ``||a||_1 <= 1`` every coefficient of ``1/D`` is bounded by 1 in magnitude (it obeys the
  recurrence g_n = sum_i a_i g_{n-d+i}), so the series stays well scaled even with eigenvalues on
  the unit circle.

``c^T A^n`` (``companion_power_row``): since ``A^j e_0 = e_j`` for j < d, the i-th entry is
``c^T A^{n+i} e_0``, the coefficient n + i of the series ``c^T (I - zA)^{-1} e_0``.

The last state over a window (``companion_last_state``) is ``x = sum_j A^j b u_{L-1-j}``, the
input convolved with the Krylov sequence ``[b, Ab, A^2 b, ...]``. The Krylov sequence is fixed by
its last row ``s_n = e^T A^n b`` (a series, ``rev(b) / D``): by induction on ``A v = Sv + a v_{d-1}``,
``(A^j b)_i = b_{i-j} + sum_{m<=i} a_m s_{j-1-i+m}``. Hence with ``w_n = (u * s)_{L-2-n}``,

    x = (u reversed * b)[:d] + (a * w)[:d]

one length-L FFT convolution and two length-d products: O(L log L + d log d) per sequence,
without materialising the d x L Krylov matrix (``companion_krylov`` builds it, O(d) per step,
for inspection).

Closed loop (``companion_closed_loop``): ``y_h = c^T (A + b k^T)^h x0`` and the fed-back inputs
``u_h = k^T (A + b k^T)^h x0``. ``A + b k^T = S + [a b][e k]^T`` is a shift plus rank 2, so the
Woodbury identity with a 2 x 2 capacitance matrix W of Q polynomials gives the resolvent as a
ratio of polynomials, ``det W = det(I - z(A + b k^T))`` of degree d, and the horizon is again a
power series: O((d + h) log(d + h)) per sequence instead of h sequential d x d products.
"""

from __future__ import annotations

import math
from typing import Literal, get_args

import torch

from ..ops import _validate
from ..ops.fftconv import fast_length

__all__ = [
    "Method",
    "companion_closed_loop",
    "companion_closed_loop_ref",
    "companion_kernel",
    "companion_kernel_ref",
    "companion_krylov",
    "companion_krylov_ref",
    "companion_last_state",
    "companion_last_state_ref",
    "companion_matrix",
    "companion_power_row",
    "companion_power_row_ref",
    "companion_step",
    "polymul",
    "series_inverse",
]

Method = Literal["series", "woodbury"]


# -- polynomial helpers (coefficients along the last dim, lowest degree first) -------------------


def polymul(p: torch.Tensor, q: torch.Tensor, n: int | None = None) -> torch.Tensor:
    """The first ``n`` coefficients of the product ``p q`` (default: all of them), by real FFT.

    ``p: (..., m)``, ``q: (..., k)`` with broadcasting leading dims -> ``(..., n)``.
    """
    full = p.shape[-1] + q.shape[-1] - 1
    n = full if n is None else n
    if n <= 0:
        return p.new_zeros(*torch.broadcast_shapes(p.shape[:-1], q.shape[:-1]), 0)
    p, q = p[..., :n], q[..., :n]  # higher coefficients cannot reach the first n of the product
    size = p.shape[-1] + q.shape[-1] - 1
    m = fast_length(size)
    out = torch.fft.irfft(torch.fft.rfft(p, n=m) * torch.fft.rfft(q, n=m), n=m)[..., : min(n, size)]
    if n > size:
        out = torch.nn.functional.pad(out, (0, n - size))
    return out


def series_inverse(den: torch.Tensor, n: int) -> torch.Tensor:
    """``g = 1 / den mod z^n`` by Newton's iteration (``den[..., 0]`` must be nonzero).

    Each round doubles the number of correct coefficients: with ``e = den g mod z^{2k}``
    (``e = 1 + O(z^k)``), the new coefficients k..2k-1 are ``-(g e[k:2k])[:k]``; the first k
    never change. O(n log n) in all.
    """
    g = 1.0 / den[..., :1]
    k = 1
    while k < n:
        k2 = min(2 * k, n)
        e = polymul(den[..., :k2], g, k2)  # (..., k2)
        g = torch.cat([g, -polymul(g, e[..., k:k2], k2 - k)], dim=-1)
        k = k2
    return g[..., :n]


def _shift(p: torch.Tensor, k: int = 1) -> torch.Tensor:
    """Multiply by z^k."""
    return torch.nn.functional.pad(p, (k, 0))


def _corr(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Coefficients of Q(u, v): r_j = sum_i u_{i+j} v_i, j < d."""
    d = u.shape[-1]
    return polymul(u.flip(-1), v, d).flip(-1)


def _one_minus_z(q: torch.Tensor) -> torch.Tensor:
    """1 - z q(z)."""
    return torch.cat([torch.ones_like(q[..., :1]), -q], dim=-1)


def _denominator(a: torch.Tensor) -> torch.Tensor:
    """D(z) = det(I - zA) = 1 - z Q(e, a), coefficients (..., d + 1)."""
    return _one_minus_z(a.flip(-1))


def _numerator(a, v, c) -> torch.Tensor:
    """N(z) = Q(c, v) D(z) + z Q(c, a) Q(e, v), so that c^T (I - zA)^{-1} v = N / D; degree < d."""
    d = a.shape[-1]
    return polymul(_corr(c, v), _denominator(a), d) + _shift(polymul(_corr(c, a), v.flip(-1), d - 1))


def _fold(r: torch.Tensor, L: int) -> torch.Tensor:
    """Sum coefficients whose degrees agree modulo L (z^L = 1 at the L-th roots of unity)."""
    d = r.shape[-1]
    m = -(-d // L)
    r = torch.nn.functional.pad(r, (0, m * L - d))
    return r.reshape(*r.shape[:-1], m, L).sum(-2)


# -- argument checks -----------------------------------------------------------------------------


def _params(op: str, **named: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Check real (..., d) tensors of one state size, dtype and device, with broadcastable batch dims."""
    for name, t in named.items():
        _validate.real_tensor(op, name, t)
    first = next(iter(named))
    for name, t in named.items():
        _validate.same_last_dim(op, first, named[first], name, t)
    _validate.same_dtype(op, **named)
    _validate.same_device(op, **named)
    _validate.broadcast_batch(op, **named)
    return tuple(named.values())  # not expanded: parameter-only work stays at the parameters' shape


def _check_method(op: str, method: str, c_tilde: bool) -> None:
    if method not in get_args(Method):
        raise ValueError(f"{op}: `method` must be one of {', '.join(map(repr, get_args(Method)))}; got {method!r}")
    if c_tilde and method != "woodbury":
        raise ValueError(f"{op}: `c_tilde=True` (a learned c~ = (I - A^L)^T c) only applies to method='woodbury'")


# -- the open loop: kernel K_l = c^T A^l b ------------------------------------------------------


def companion_power_row(a: torch.Tensor, c: torch.Tensor, n: int) -> torch.Tensor:
    """``c^T A^n`` for ``a, c: (..., d)`` -> ``(..., d)``, from coefficients n..n+d-1 of the
    series ``c^T (I - zA)^{-1} e_0`` (see the module docstring); n >= 0."""
    op = "companion_power_row"
    a, c = _params(op, a=a, c=c)
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"{op}: `n` must be an int >= 0, got {n!r}")
    d = a.shape[-1]
    e0 = torch.zeros_like(a)
    e0[..., 0] = 1
    h = polymul(_numerator(a, e0, c), series_inverse(_denominator(a), n + d), n + d)  # (..., n + d)
    return h[..., n:]


def companion_kernel(
    a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, L: int, *, method: Method = "series", c_tilde: bool = False
) -> torch.Tensor:
    """``K_l = c^T A^l b`` for l < L, ``A = S + a e_{d-1}^T``; ``a, b, c: (..., d)`` -> ``(..., L)``.

    ``method="series"``: power series N/D; ``"woodbury"``: the FFT/Woodbury formula at the
    L-th roots of unity, with ``c~ = c - (c^T A^L)^T`` (``c_tilde=False``) or ``c`` taken as c~
    itself (``c_tilde=True``, the reference repository's parameterisation). See the module
    docstring for both and their costs.
    """
    op = "companion_kernel"
    L = _validate.length(op, "L", L)
    _check_method(op, method, c_tilde)
    a, b, c = _params(op, a=a, b=b, c=c)
    if method == "series":
        return polymul(_numerator(a, b, c), series_inverse(_denominator(a), L), L)
    if not c_tilde:
        c = c - companion_power_row(a, c, L)
    q_cb, q_ca = _fold(_corr(c, b), L), _fold(_corr(c, a), L)  # (..., L)
    q_eb, q_ea = _fold(b.flip(-1), L), _fold(a.flip(-1), L)
    f_cb, f_ca, f_eb, f_ea = (torch.fft.rfft(q, n=L) for q in (q_cb, q_ca, q_eb, q_ea))  # (..., L//2+1)
    k = torch.arange(L // 2 + 1, device=a.device, dtype=a.dtype)
    z_inv = torch.polar(torch.ones_like(k), 2 * math.pi * k / L)  # 1 / z_k, z_k = exp(-2 pi i k / L)
    k_hat = f_cb + f_ca * f_eb / (z_inv - f_ea)
    return torch.fft.irfft(k_hat, n=L)


def companion_matrix(a: torch.Tensor) -> torch.Tensor:
    """Dense ``A = S + a e_{d-1}^T``: ``(..., d)`` -> ``(..., d, d)`` (for references and tests)."""
    d = a.shape[-1]
    S = torch.diag(torch.ones(d - 1, dtype=a.dtype, device=a.device), -1)  # S[i+1, i] = 1
    A = S.expand(*a.shape[:-1], d, d).clone()
    A[..., :, -1] = A[..., :, -1] + a
    return A


def companion_step(a: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``A x`` in O(d): shift x down one place and add ``a x_{d-1}``; broadcasts."""
    return torch.nn.functional.pad(x[..., :-1], (1, 0)) + a * x[..., -1:]


def companion_kernel_ref(
    a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, L: int, *, method: Method = "series", c_tilde: bool = False
) -> torch.Tensor:
    """Reference: dense A, ``v <- A v`` L times, ``K_l = c^T v_l``; with ``c_tilde`` the c that
    gives c~ is recovered by a dense solve ``(I - A^L)^T c = c~``. ``method`` is ignored."""
    op = "companion_kernel_ref"
    L = _validate.length(op, "L", L)
    _check_method(op, method, c_tilde)
    a, b, c = torch.broadcast_tensors(*_params(op, a=a, b=b, c=c))
    A = companion_matrix(a)  # (..., d, d)
    if c_tilde:
        eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
        M = (eye - torch.linalg.matrix_power(A, L)).transpose(-1, -2)
        c = torch.linalg.solve(M, c.unsqueeze(-1)).squeeze(-1)
    out, v = [], b
    for _ in range(L):
        out.append((c * v).sum(-1))
        v = (A @ v.unsqueeze(-1)).squeeze(-1)
    return torch.stack(out, -1)


def companion_power_row_ref(a: torch.Tensor, c: torch.Tensor, n: int) -> torch.Tensor:
    """Reference: ``c^T A^n`` with ``torch.linalg.matrix_power``."""
    a, c = _params("companion_power_row_ref", a=a, c=c)
    return (c.unsqueeze(-2) @ torch.linalg.matrix_power(companion_matrix(a), n)).squeeze(-2)


# -- states --------------------------------------------------------------------------------------


def companion_krylov(a: torch.Tensor, b: torch.Tensor, L: int) -> torch.Tensor:
    """The Krylov sequence ``[b, Ab, ..., A^{L-1} b]`` as ``(..., d, L)``, O(d) per step.

    For inspection and tests; the layers never materialise it (see ``companion_last_state``).
    """
    L = _validate.length("companion_krylov", "L", L)
    a, b = _params("companion_krylov", a=a, b=b)
    out, v = [], b
    for _ in range(L):
        out.append(v)
        v = companion_step(a, v)
    return torch.stack(out, -1)


def companion_krylov_ref(a: torch.Tensor, b: torch.Tensor, L: int) -> torch.Tensor:
    """Reference: columns ``A^l b`` with dense matrix powers."""
    a, b = _params("companion_krylov_ref", a=a, b=b)
    A = companion_matrix(a)
    return torch.stack([(torch.linalg.matrix_power(A, l) @ b.unsqueeze(-1)).squeeze(-1) for l in range(L)], -1)


def companion_last_state(a: torch.Tensor, b: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The state after the window, ``x = sum_{t<L} A^{L-1-t} b u_t`` (zero initial state).

    ``a, b: (..., d)``, ``u: (..., L)`` with broadcasting leading dims (e.g. ``(H, d)`` against
    ``(B, H, L)``) -> ``(..., d)``. One FFT convolution of u with the last Krylov row
    ``s_n = e^T A^n b`` and two length-d products (module docstring).
    """
    op = "companion_last_state"
    a, b = _params(op, a=a, b=b)
    _validate.real_tensor(op, "u", u)
    _validate.same_dtype(op, a=a, u=u)
    _validate.same_device(op, a=a, u=u)
    try:
        torch.broadcast_shapes(a.shape[:-1], u.shape[:-1])
    except RuntimeError:
        raise ValueError(f"{op}: batch dims of `a`/`b` {tuple(a.shape)} and `u` {tuple(u.shape)} must broadcast") from None
    d, L = a.shape[-1], u.shape[-1]
    u_rev = u.flip(-1)[..., :d]  # u_{L-1-j}, j < min(d, L)
    x = polymul(u_rev, b, d)
    if L > 1:
        s = polymul(b.flip(-1), series_inverse(_denominator(a), L - 1), L - 1)  # (..., L-1): e^T A^n b
        us = polymul(u, s, L - 1)  # (..., L-1): (u * s)_m
        w = us.flip(-1)[..., :d]  # w_n = (u * s)_{L-2-n}
        x = x + polymul(a, w, d)
    return x


def companion_last_state_ref(a: torch.Tensor, b: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Reference: the recurrence ``x <- A x + b u_t`` with a dense A."""
    a, b = _params("companion_last_state_ref", a=a, b=b)
    A = companion_matrix(a)
    shape = torch.broadcast_shapes(a.shape[:-1], u.shape[:-1])
    x = torch.zeros(*shape, a.shape[-1], dtype=a.dtype, device=a.device)
    for t in range(u.shape[-1]):
        x = (A @ x.unsqueeze(-1)).squeeze(-1) + b * u[..., t : t + 1]
    return x


# -- the closed loop -----------------------------------------------------------------------------


def companion_closed_loop(
    a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, k: torch.Tensor, x0: torch.Tensor, horizon: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Roll out ``x_{h+1} = (A + b k^T) x_h`` from ``x0`` for h < horizon.

    ``a, b, c, k, x0: (..., d)`` broadcasting (e.g. params ``(H, d)``, state ``(B, H, d)``) ->
    ``(y, u)``, each ``(..., horizon)``: outputs ``y_h = c^T x_h`` and the fed-back inputs
    ``u_h = k^T x_h``. With W = I - z [[Q(e,a), Q(e,b)], [Q(k,a), Q(k,b)]],
    ``w^T (I - z(A + b k^T))^{-1} x0 = Q(w, x0) + z [Q(w,a), Q(w,b)] adj(W) [Q(e,x0), Q(k,x0)]^T / det W``
    and ``det W = det(I - z(A + b k^T))`` has degree d: one series inverse serves y and u.
    """
    op = "companion_closed_loop"
    horizon = _validate.length(op, "horizon", horizon)
    a, b, c, k, x0 = _params(op, a=a, b=b, c=c, k=k, x0=x0)
    d = a.shape[-1]
    p1 = _denominator(a)  # 1 - z Q(e, a), (..., d+1)
    p2 = _one_minus_z(_corr(k, b))  # 1 - z Q(k, b)
    q_eb, q_ka = b.flip(-1), _corr(k, a)
    det = polymul(p1, p2, d + 1) - _shift(polymul(q_eb, q_ka, d - 1), 2)[..., : d + 1]  # (..., d+1)
    q_ex, q_kx = x0.flip(-1), _corr(k, x0)
    t1 = polymul(p2, q_ex, d) + _shift(polymul(q_eb, q_kx, d - 1))  # first row of adj(W) [Q(e,x), Q(k,x)]
    t2 = _shift(polymul(q_ka, q_ex, d - 1)) + polymul(p1, q_kx, d)  # second row
    w = torch.stack(torch.broadcast_tensors(c, k), dim=-2)  # (..., 2, d): y and u read out together
    x0, a, b, det, t1, t2 = (t.unsqueeze(-2) for t in (x0, a, b, det, t1, t2))
    num = polymul(_corr(w, x0), det, d) + _shift(polymul(_corr(w, a), t1, d - 1) + polymul(_corr(w, b), t2, d - 1))
    out = polymul(num, series_inverse(det, horizon), horizon)  # (..., 2, horizon)
    return out[..., 0, :], out[..., 1, :]


def companion_closed_loop_ref(
    a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, k: torch.Tensor, x0: torch.Tensor, horizon: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference: step the recurrence ``x <- A x + b (k^T x)`` with a dense A, recording c^T x, k^T x."""
    a, b, c, k, x0 = _params("companion_closed_loop_ref", a=a, b=b, c=c, k=k, x0=x0)
    A = companion_matrix(a)
    ys, us, x = [], [], x0
    for _ in range(horizon):
        u = (k * x).sum(-1)
        ys.append((c * x).sum(-1))
        us.append(u)
        x = (A @ x.unsqueeze(-1)).squeeze(-1) + b * u.unsqueeze(-1)
    return torch.stack(ys, -1), torch.stack(us, -1)
