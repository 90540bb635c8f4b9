"""S4 core: diagonal-plus-low-rank state matrix, Cauchy kernel + Woodbury (arXiv 2111.00396),
in the Hurwitz form A = Lambda - P P* with Re(Lambda) < 0 used by SaShiMi (arXiv 2202.09729).

Only one member of each conjugate pair is stored (n = d_state/2). The full state is
X = [x; conj x] and the output y = 2 Re(C x) + D u. Discretisation is bilinear:
dA = (2/dt - A)^-1 (2/dt + A), dB = (2/dt - A)^-1 2B.

Convolution kernel of length L (Sec. 3.3 of the paper): at z = exp(-2 pi i k/L), k <= L/2,

    K^(z) = 2/(1+z) [k_CB - k_CP (1 + k_PP)^-1 k_PB],   k_uv(z) = sum_full u_n v_n / (g(z) - lambda_n)

with g(z) = (2/dt)(1-z)/(1+z); each k is one ``ssm.ops.cauchy`` call on the Delta-free nodes
2(1-z)/(1+z) and poles dt*Lambda. K = irfft(K^). The node z = -1 (even L) is the limit
K^(-1) = dt Re sum_n c_n b_n. The stored parameter is C~ = C (I - dA^L), "C-tilde": it makes the
truncated generating function exact for length L. It is set for ``l_max`` (or the first input
length) and doubled, C~_2L = C~_L (I + dA^L), when a longer input arrives.

Stepping is the O(n r) bilinear update, the Woodbury solve for (2/dt - A)^-1 folded into
``step_form``; the true C is recovered there by a linear solve with (I - dA^L). State passing uses the same
kernel machinery for the initial state's contribution and dense powers of dA for the final state
(float64, (H, 2n, 2n) per call).
"""

from __future__ import annotations

import torch
from torch import nn

from .. import hippo, ops
from ..optim import set_hint
from .base import SSMCore, StepForm
from ..checks import check_choice
from .diagonal import DtTransform, _complex, _real_param, dt_parameter, positive


def _full(v: torch.Tensor) -> torch.Tensor:
    """Half-conjugate vector (..., n) -> full (..., 2n) = [v, conj v]."""
    return torch.cat([v, v.conj()], dim=-1)


def _matrix_power(M: torch.Tensor, L: int) -> torch.Tensor:
    """M^L for a batch of square matrices by repeated squaring."""
    result = torch.eye(M.shape[-1], dtype=M.dtype, device=M.device).expand_as(M).clone()
    base = M
    while L:
        if L & 1:
            result = result @ base
        L >>= 1
        if L:
            base = base @ base
    return result


class DPLRSSM(SSMCore):
    """The S4 core: (B, H, L) -> (B, H, L), causal or bidirectional."""

    form_kind = "channel"
    renamed_parameters = {"A_real": "A_real_raw", "log_dt": "inv_dt"}

    def __init__(
        self,
        d_model: int,
        d_state: int = 64,
        *,
        rank: int = 1,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        dt_transform: DtTransform = "exp",
        lr: float | None = 1e-3,
        n_ssm: int = 1,
        bidirectional: bool = False,
        l_max: int | None = None,
        device=None,
        dtype=None,
    ):
        """``dt_transform``: dt = exp(inv_dt) or softplus(inv_dt) (the s4 reference's layer config
        uses softplus). ``l_max``: the length C~ is prepared for at construction; a longer input
        extends it (doubling) and gets the exact kernel of its own length."""
        super().__init__()
        name = type(self).__name__
        check_choice(name, "dt_transform", dt_transform, DtTransform)
        self.dt_transform = dt_transform
        if d_model % n_ssm:
            raise ValueError(f"{name}: `n_ssm` ({n_ssm}) must divide d_model ({d_model})")
        if l_max is not None and l_max < 1:
            raise ValueError(f"{name}: `l_max` must be >= 1 or None, got {l_max}")
        self.d_model, self.n_ssm, self.rank = d_model, n_ssm, rank
        self.causal = not bidirectional
        Lambda, P, B, _ = hippo.nplr("legs", d_state, rank=rank)  # (n,), (r, n), (n,), (N, n)
        n = Lambda.shape[0]
        self.n_modes = n  # d_state/2: one mode per conjugate pair
        # Hurwitz form: Re(Lambda) = -exp(A_real_raw) < 0 (the diagonal core's A_real_raw with
        # real_transform="exp"), Q tied to P
        self.A_real_raw = nn.Parameter(torch.log(-Lambda.real).float().repeat(n_ssm, 1))  # (n_ssm, n)
        self.A_imag = nn.Parameter(Lambda.imag.float().repeat(n_ssm, 1))  # (n_ssm, n)
        self.P = _real_param(P.unsqueeze(1).repeat(1, n_ssm, 1))  # (r, n_ssm, n, 2)
        self.B = _real_param(B.repeat(n_ssm, 1))  # (n_ssm, n, 2)
        channels = 2 if bidirectional else 1
        # complex standard normal, E|C_n|^2 = 1 (state-spaces/s4 src/models/sequence/kernels/ssm.py,
        # init_ssm_dplr, commit e757cef: torch.randn of a complex dtype)
        self.C = _real_param(torch.randn(channels, d_model, n, dtype=torch.complex128))  # (c, H, n, 2)
        self.D = nn.Parameter(torch.randn(d_model))  # (H,)
        self.inv_dt = nn.Parameter(dt_parameter(d_model, dt_min, dt_max, dt_transform))  # (H,)
        if lr is not None:
            for p in (self.A_real_raw, self.A_imag, self.P, self.B, self.inv_dt):
                set_hint(p, lr=lr, weight_decay=0.0)
        # Length that C currently encodes as C~ = C (I - dA^L); 0 = C is still the plain C.
        self.register_buffer("l_kernel", torch.tensor(0), persistent=True)
        self._place(device, dtype)
        if l_max is not None:
            self._set_length(l_max)

    # -- the DPLR system -----------------------------------------------------------------------

    def system(self, rate: float = 1.0):
        """(dt (H,), Lambda (H, n), P (r, H, n), B (H, n)), complex64 (complex128 for a float64 core);
        dt times ``rate`` (the same continuous-time system sampled ``rate`` times more coarsely)."""
        rep, rd = self.d_model // self.n_ssm, self.real_dtype
        dt = positive(self.inv_dt.to(rd), self.dt_transform) * rate
        Lam = torch.complex(-torch.exp(self.A_real_raw.to(rd)), self.A_imag.to(rd)).repeat(rep, 1)
        P = _complex(self.P.to(rd)).repeat(1, rep, 1)
        B = _complex(self.B.to(rd)).repeat(rep, 1)
        return dt, Lam, P, B

    def dense(self, dtype=torch.complex128, rate: float = 1.0):
        """Full-basis dense (dA (H, 2n, 2n), dB (H, 2n)) for bookkeeping and tests."""
        dt, Lam, P, B = (t.to(dtype) if t.is_complex() else t.double() for t in self.system(rate))
        A = torch.diag_embed(_full(Lam)) - torch.einsum("rhn,rhm->hnm", _full(P), _full(P).conj())  # (H, 2n, 2n)
        eye = torch.eye(A.shape[-1], dtype=dtype, device=A.device)
        two_dt = (2 / dt).to(dtype)[:, None, None]
        left = two_dt * eye - A
        dA = torch.linalg.solve(left, two_dt * eye + A)
        dB = torch.linalg.solve(left, 2 * _full(B).unsqueeze(-1)).squeeze(-1)
        return dA, dB

    @torch.no_grad()
    def _set_length(self, L: int) -> None:
        """Make C hold C~ for length L: from plain C, or by doubling from the current length."""
        current = int(self.l_kernel)
        C = _complex(self.C).to(torch.complex128)  # (c, H, n)
        dA, _ = self.dense()
        if current == 0:
            Cf = _full(C)
            Ct = Cf - torch.einsum("chn,hnm->chm", Cf, _matrix_power(dA, L))
            new_len = L
        else:
            new_len = current
            Cf = _full(C)
            while new_len < L:
                Cf = Cf + torch.einsum("chn,hnm->chm", Cf, _matrix_power(dA, new_len))
                new_len *= 2
            Ct = Cf
        self.C.copy_(torch.view_as_real(Ct[..., : self.n_modes].to(self.complex_dtype)))
        self.l_kernel.fill_(new_len)

    def true_C(self) -> torch.Tensor:
        """C = C~ (I - dA^L)^-1 for the current length (c, H, n), complex128."""
        C = _complex(self.C).to(torch.complex128)
        L = int(self.l_kernel)
        if L == 0:
            return C
        dA, _ = self.dense()
        eye = torch.eye(dA.shape[-1], dtype=dA.dtype, device=dA.device)
        M = eye - _matrix_power(dA, L)  # (H, 2n, 2n)
        Cf = torch.linalg.solve(M.transpose(-1, -2), _full(C).transpose(0, 1).transpose(-1, -2))  # (H, 2n, c)
        return Cf.transpose(-1, -2).transpose(0, 1)[..., : self.n_modes]

    def _C_tilde(self, rate: float) -> torch.Tensor:
        """C~ for the current length Lk at ``rate``, (c, H, n) in the working precision. At rate 1 it
        is the parameter; otherwise C~_r = C (I - dA_r^Lk) with the true C = C~ (I - dA^Lk)^-1, so
        the rate-r kernel is exactly the kernel of the system with timestep dt * r (differentiable,
        float64, (H, 2n, 2n) dense work: meant for evaluation at another rate)."""
        C = _complex(self.C.to(self.real_dtype))  # (c, H, n)
        Lk = int(self.l_kernel)
        if rate == 1.0 or Lk == 0:
            return C
        dA, _ = self.dense()
        dA_r, _ = self.dense(rate=rate)
        eye = torch.eye(dA.shape[-1], dtype=dA.dtype, device=dA.device)
        # row vectors: C~_r = C~ (I - dA^Lk)^-1 (I - dA_r^Lk), i.e. solve (I - dA^Lk)^T X = (I - dA_r^Lk)^T
        M = torch.linalg.solve((eye - _matrix_power(dA, Lk)).transpose(-1, -2),
                               (eye - _matrix_power(dA_r, Lk)).transpose(-1, -2)).transpose(-1, -2)  # (H, 2n, 2n)
        Cr = torch.einsum("chn,hnm->chm", _full(C.to(torch.complex128)), M)
        return Cr[..., : self.n_modes].to(self.complex_dtype)

    # -- kernel --------------------------------------------------------------------------------

    def _generating_function(self, L: int, Bv: torch.Tensor, rate: float = 1.0, C: torch.Tensor | None = None) -> torch.Tensor:
        """K^ at the rfft nodes for input vectors ``Bv (..., H, n)``: (c, ..., H, L//2+1); C is C~
        for length L at this rate (``_C_tilde(rate)`` when not given)."""
        dt, Lam, P, _ = self.system(rate)
        cd = self.complex_dtype
        C = self._C_tilde(rate) if C is None else C  # (c, H, n)
        m = L // 2 + 1
        k = torch.arange(m, device=dt.device)
        omega = torch.exp(-2j * torch.pi * k.double() / L)  # (m,)
        even_tail = L % 2 == 0  # node z = -1
        nodes = omega[:-1] if even_tail else omega
        z = (2 * (1 - nodes) / (1 + nodes)).to(cd)  # Delta-free bilinear nodes
        w = dt[:, None] * Lam  # (H, n)
        dt_c = dt[:, None].to(cd)
        batch = Bv.shape[:-2]
        r = self.rank
        # vectors: rows [C~ or P*] x columns [B or P]; cauchy sums the conjugate halves itself
        Pc = P.conj()  # (r, H, n)
        Bb = Bv.expand(*batch, *Bv.shape[-2:])  # (..., H, n)
        def k_of(u, v):  # u (..., H, n) * v (..., H, n) -> (..., H, len(z))
            return ops.cauchy(dt_c * u * v, z, w)
        k_CB = k_of(C.reshape(C.shape[0], *([1] * len(batch)), *C.shape[1:]), Bb)  # (c, ..., H, z)
        k_CP = torch.stack([k_of(C, P[i]) for i in range(r)], dim=-2)  # (c, H, r, z)
        k_PB = torch.stack([k_of(Pc[i], Bb) for i in range(r)], dim=-2)  # (..., H, r, z)
        k_PP = torch.stack([torch.stack([k_of(Pc[i], P[j]) for j in range(r)], -2) for i in range(r)], -3)  # (H, r, r, z)
        # Woodbury: k_CB - k_CP (I + k_PP)^-1 k_PB, per node
        eye = torch.eye(r, dtype=k_PP.dtype, device=k_PP.device)
        M = (eye + k_PP.movedim(-1, -3))  # (H, z, r, r)
        sol = torch.linalg.solve(M, k_PB.movedim(-1, -2).unsqueeze(-1)).squeeze(-1)  # (..., H, z, r)
        cp = k_CP.movedim(-1, -2)  # (c, H, z, r)
        cp = cp.reshape(cp.shape[0], *([1] * len(batch)), *cp.shape[1:])
        corr = (cp * sol).sum(-1)  # (c, ..., H, z)
        Khat = (k_CB - corr) * (2 / (1 + nodes)).to(cd)
        if even_tail:
            Ct = C.reshape(C.shape[0], *([1] * len(batch)), *C.shape[1:])
            tail = (dt_c * (Ct * Bb).sum(-1, keepdim=True)).real.to(Khat.dtype)  # (c, ..., H, 1)
            Khat = torch.cat([Khat, tail], dim=-1)
        return Khat

    def kernel(self, L: int, rate: float = 1.0) -> torch.Tensor:
        """Convolution kernel (channels, H, L) for inputs up to the current C~ length."""
        if int(self.l_kernel) < L:
            self._set_length(L)
        Lk = int(self.l_kernel)
        with torch.autocast(self.inv_dt.device.type, enabled=False):
            _, _, _, B = self.system()
            Khat = self._generating_function(Lk, B, rate)  # (c, H, Lk//2+1)
            return torch.fft.irfft(Khat, n=Lk)[..., :L]  # (c, H, L)

    # -- the core contract ---------------------------------------------------------------------

    def forward(self, u: torch.Tensor, state: torch.Tensor | None = None, rate: float = 1.0):
        L = u.shape[-1]  # u (batch, H, L)
        k = self.kernel(L, rate)  # prepares C~ for L (doubling) when L exceeds the current length
        with torch.autocast(u.device.type, enabled=False):
            if not self.causal:
                if state is not None:
                    raise ValueError(f"{type(self).__name__}: a bidirectional layer has no recurrent state; call it with state=None")
                return ops.fftconv(u, k, self.D, bidirectional=True), None
            y = ops.fftconv(u, k[0], self.D)
            if state is None:
                return y, None
            y = y + self._state_output(state, L, rate)
            next_state = self._next_state(state, u, rate)
        return y, next_state

    def _state_output(self, state: torch.Tensor, L: int, rate: float = 1.0) -> torch.Tensor:
        """y_t contribution 2 Re(C dA^{t+1} s), t < L: the kernel with B replaced by B' = s/dt + A s/2."""
        dt, Lam, P, _ = self.system(rate)
        s = state.to(self.complex_dtype)  # (B, H, n)
        As = Lam * s - torch.einsum("rhn,rbh->bhn", P, 2 * torch.einsum("rhn,bhn->rbh", P.conj(), s).real.to(s.dtype))
        Bprime = s / dt[:, None] + As / 2  # (B, H, n)
        Lk = int(self.l_kernel)
        Khat = self._generating_function(Lk, Bprime, rate)  # (c, B, H, Lk//2+1)
        return torch.fft.irfft(Khat[0], n=Lk)[..., :L]  # (B, H, L)

    def _next_state(self, state: torch.Tensor, u: torch.Tensor, rate: float = 1.0) -> torch.Tensor:
        """x_L = dA^L s + sum_t dA^{L-1-t} dB u_t via the Krylov sequence (float64, full basis)."""
        L = u.shape[-1]
        dA, dB = self.dense(rate=rate)  # (H, 2n, 2n), (H, 2n)
        krylov = [dB.unsqueeze(-1)]  # columns dA^j dB, j < L
        power = dA
        while sum(k.shape[-1] for k in krylov) < L:
            block = torch.cat(krylov, -1)
            krylov = [block, power @ block]
            power = power @ power
        K = torch.cat(krylov, -1)[..., :L]  # (H, 2n, L)
        x = torch.einsum("hnl,bhl->bhn", K, u.flip(-1).to(K.dtype))  # (B, H, 2n)
        x = x + torch.einsum("hnm,bhm->bhn", _matrix_power(dA, L), _full(state.to(K.dtype)))
        return x[..., : self.n_modes].to(self.complex_dtype)

    def default_state(self, batch: int, *, device=None) -> torch.Tensor:
        if not self.causal:
            raise ValueError(f"{type(self).__name__}: a bidirectional layer has no recurrent state")
        device = device if device is not None else self.inv_dt.device
        return torch.zeros(batch, self.d_model, self.n_modes, dtype=self.complex_dtype, device=device)


    def step_form(self, rate: float = 1.0) -> StepForm:
        """The bilinear step in the form x' = E x + sum_s Re(F_s . x) G_s + V u, y = 2 Re(C x') + D u.

        With D_l = (2/dt - Lambda)^-1 and the Woodbury factor W = (I + M)^-1,
        M_sr = 2 Re sum conj(P_s) D_l P_r, the step x' = (2/dt - A)^-1 ((2/dt + A) x + 2 B u) is
        E = D_l (2/dt + Lambda), G = -W^T (D_l P), F_s = 2 conj(P_s)(1 + E) and
        V = 2 D_l B - sum_t (W k)_t D_l P_t with k_s = 2 Re sum conj(P_s) 2 D_l B (the correction
        collapses since I - W M = W). O(n r) per step; C is the true C (``true_C``), in complex128."""
        self._check_steppable()
        with torch.no_grad():
            c128 = torch.complex128
            dt, Lam, P, B = self.system(rate)
            dt, Lam, P, B = dt.double(), Lam.to(c128), P.to(c128), B.to(c128)  # P (r, H, n)
            Dl = 1 / (2 / dt[:, None] - Lam)  # (H, n)
            M = 2 * torch.einsum("shn,hn,rhn->hsr", P.conj(), Dl, P).real  # (H, r, r)
            W = torch.linalg.inv(torch.eye(self.rank, dtype=M.dtype, device=M.device) + M)  # (H, r, r)
            E = Dl * (2 / dt[:, None] + Lam)  # (H, n)
            DlP = Dl * P  # (r, H, n)
            G = -torch.einsum("hts,thn->shn", W.to(c128), DlP)  # (r, H, n): coefficient vector of Re(F_s . x)
            k = 2 * (P.conj() * (2 * Dl * B)).sum(-1).real  # (r, H)
            Wk = torch.einsum("hts,sh->th", W, k).to(c128)  # (r, H)
            V = 2 * Dl * B - (Wk[..., None] * DlP).sum(0)  # (H, n)
            return StepForm(dA=E, dB=V, C=self.true_C()[0], D=self.D.detach().double(), scale=2.0,
                            F=2 * P.conj() * (1 + E), G=G)
