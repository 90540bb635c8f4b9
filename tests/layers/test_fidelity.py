"""Initialisations, dt parameterisation, precision and the continuous-time ``rate``, against the
published code (state-spaces/s4 commit e757cef, lindermanlab/S5 commit 3c18fdb) and float64.

Each test here failed on the behaviour before the fidelity fixes: C drawn at half variance, S5's B
with fan-in H, S5's C at other scales, no softplus dt, bilinear log dA as a difference of log1p,
no ``rate``."""

from __future__ import annotations

import math

import pytest
import torch

import ssm
from ssm.kernels.diagonal import DiagonalSSM
from ssm.kernels.dplr import DPLRSSM
from ssm.kernels.s5 import S5SSM
from ssm.models import SequenceModel

from helpers import BILINEAR_16K, ROUNDOFF, SIGMAS, SIGNAL, ZERO_SHOT_RATE, assert_close, rel_err


def _mean_sq(z: torch.Tensor) -> float:
    return z.abs().pow(2).mean().item()


def _within_sampling_error(value: float, expected: float, n: int, what: str) -> None:
    """|value - expected| within SIGMAS standard errors of a mean of n |z|^2 draws (relative sd <= 1 for
    the (truncated) normals used here), and far from the half/double a wrong formula would give."""
    tol = SIGMAS * expected / math.sqrt(n)
    assert abs(value - expected) <= tol, f"{what}: {value:.4g} vs {expected:.4g} +- {tol:.2g} (n={n})"


# ---- C initialisation of the S4 family ----------------------------------------------------------


@pytest.mark.parametrize("core", ["s4", "s4d"])
def test_s4_family_C_is_complex_standard_normal(core):
    """E|C_n|^2 = 1: the reference draws torch.randn(..., dtype=cfloat) (ssm.py init_ssm_dplr)."""
    torch.manual_seed(0)
    H, N = 256, 64
    m = DPLRSSM(H, N) if core == "s4" else DiagonalSSM(H, N)  # no l_max: C is the plain C
    C = torch.view_as_complex(m.C.detach().double())
    _within_sampling_error(_mean_sq(C), 1.0, C.numel(), f"{core} E|C|^2")
    # real and imaginary parts share the variance: each sample variance (of 1/2) has standard error
    # sqrt(1/(2n)), their difference 1/sqrt(n)
    assert abs(C.real.var().item() - C.imag.var().item()) < SIGMAS / math.sqrt(C.numel())


# ---- S5: B and C as the official code draws them ------------------------------------------------


def _s5(C_init: str, H=48, P=64, blocks=4):
    torch.manual_seed(0)
    core = S5SSM(H, P, blocks=blocks, conj_sym=False, C_init=C_init).double()
    from ssm import hippo
    _, V, V_inv = hippo.s5_init(P, blocks, conj_sym=False)
    return core, V.to(torch.complex128), V_inv.to(torch.complex128)


def test_s5_B_is_lecun_normal_with_fan_in_P():
    """B = V^-1 B_raw with B_raw (P, H) lecun_normal: fan-in P (s5/ssm.py B_shape=(local_P, H))."""
    core, V, _ = _s5("trunc_standard_normal")
    B_raw = V @ torch.view_as_complex(core.B.detach())  # (P, H): undo V^-1 (V is square here)
    assert B_raw.imag.abs().max() < ROUNDOFF[torch.float64]  # a real draw (|B_raw| <= 0.3), V V^-1 in float64
    P, H = B_raw.shape
    _within_sampling_error(_mean_sq(B_raw), 1 / P, B_raw.numel(), "S5 Var B")


@pytest.mark.parametrize("C_init, expected", [("trunc_standard_normal", lambda P, H: 2 / P),
                                              ("lecun_normal", lambda P, H: 2 / (P * H)),
                                              ("complex_normal", lambda P, H: 1.0)])
def test_s5_C_inits_match_the_official_scales(C_init, expected):
    core, _, V_inv = _s5(C_init)
    C = torch.view_as_complex(core.C.detach()[0])  # (H, P)
    H, P = C.shape
    C_raw = C if C_init == "complex_normal" else C @ V_inv  # undo the map to the eigenbasis
    _within_sampling_error(_mean_sq(C_raw), expected(P, H), C_raw.numel(), f"S5 {C_init} E|C|^2")
    # both parts drawn, with one variance: the difference of their sample variances has a standard error
    # of expected/sqrt(n) (less for truncated normals)
    assert abs(C_raw.real.var().item() - C_raw.imag.var().item()) < SIGMAS * expected(P, H) / math.sqrt(C_raw.numel())


def test_s5_default_C_init_is_the_official_default():
    assert S5SSM.__init__.__kwdefaults__["C_init"] == "trunc_standard_normal"
    assert ssm.S5.__init__.__kwdefaults__["C_init"] == "trunc_standard_normal"


# ---- dt_transform ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["S4", "S4D", "S4PTD"])
def test_softplus_dt_is_log_uniform_and_gives_the_same_layer(name):
    torch.manual_seed(0)
    soft = getattr(ssm, name)(512, 8, dt_transform="softplus", dt_min=1e-3, dt_max=1e-1)
    dt = torch.nn.functional.softplus(soft.core.inv_dt.detach().double())
    # within [dt_min, dt_max] up to the float32 round-off of the stored inv_dt
    assert dt.min() >= 1e-3 * (1 - ROUNDOFF[torch.float32]) and dt.max() <= 1e-1 * (1 + ROUNDOFF[torch.float32])
    # log-uniform: mean log dt at the centre, within SIGMAS standard errors (sd of U over width 4.6 is 1.33)
    assert abs(dt.log().mean().item() - (math.log(1e-3) + math.log(1e-1)) / 2) < SIGMAS * 1.33 / math.sqrt(512)
    # the same dt through exp gives the same kernel: only the parameterisation differs
    torch.manual_seed(0)
    expo = getattr(ssm, name)(512, 8, dt_transform="exp")
    with torch.no_grad():
        expo.load_state_dict(soft.state_dict())
        expo.core.inv_dt.copy_(dt.log().float())
    assert_close(expo.core.kernel(50), soft.core.kernel(50), torch.float32, f"{name} exp vs softplus kernel")
    with pytest.raises(ValueError, match="`dt_transform` must be one of 'exp', 'softplus'"):
        getattr(ssm, name)(8, 8, dt_transform="sigmoid")


# ---- bilinear precision -----------------------------------------------------------------------------


def test_s4d_bilinear_layer_is_within_1e4_of_float64_at_16k():
    """log dA = 2 atanh(dtA/2) keeps slowly decaying modes accurate; log1p(x) - log1p(-x) was 2.9e-4."""
    torch.manual_seed(0)
    L = 16384
    layer = ssm.S4D(8, 64, disc="bilinear").eval()
    ref = ssm.S4D(8, 64, disc="bilinear").double().eval()
    ref.load_state_dict({k: v.double() for k, v in layer.state_dict().items()})
    x = torch.randn(1, L, 8)
    with torch.no_grad():
        y, y64 = layer(x)[0], ref(x.double())[0]
        k, k64 = layer.core.kernel(L), ref.core.kernel(L)
    assert rel_err(k, k64) < BILINEAR_16K
    assert rel_err(y, y64) < BILINEAR_16K


# ---- the continuous-time rate ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["S4D", "S4PTD", "S4D-bilinear"])
@pytest.mark.parametrize("rate", [0.5, 2.0])
def test_diagonal_kernel_at_rate_is_the_kernel_with_scaled_dt(name, rate):
    torch.manual_seed(0)
    make = (lambda: ssm.S4D(6, 8, disc="bilinear")) if name == "S4D-bilinear" else (lambda: getattr(ssm, name)(6, 8))
    layer, other = make().double(), make().double()
    with torch.no_grad():
        other.load_state_dict(layer.state_dict())
        other.core.inv_dt.add_(math.log(rate))
    assert_close(layer.core.kernel(64, rate=rate), other.core.kernel(64), torch.float64, f"{name} rate {rate}")
    assert rel_err(layer.core.kernel(64), other.core.kernel(64)) > SIGNAL  # rate changes the kernel


@pytest.mark.parametrize("rate", [0.5, 2.0])
def test_s5_at_rate_is_s5_with_scaled_dt(rate):
    torch.manual_seed(0)
    layer, other = ssm.S5(6, 8).double(), ssm.S5(6, 8).double()
    with torch.no_grad():
        other.load_state_dict(layer.state_dict())
        other.core.log_dt.add_(math.log(rate))
        x = torch.randn(2, 30, 6, dtype=torch.float64)
        assert_close(layer(x, rate=rate)[0], other(x)[0], torch.float64, "S5 rate")


@pytest.mark.parametrize("name", ["S4", "S4D", "S5"])
def test_step_at_rate_equals_forward_at_rate(name):
    torch.manual_seed(0)
    layer = getattr(ssm, name)(4, 8).double().eval()
    x = torch.randn(2, 12, 4, dtype=torch.float64)
    with torch.no_grad():
        y, _ = layer(x, rate=2.0)
        layer.setup_step(rate=2.0)
        state, ys = layer.default_state(2), []
        for t in range(12):
            yt, state = layer.step(x[:, t], state)
            ys.append(yt)
    assert_close(torch.stack(ys, 1), y, torch.float64, f"{name} step at rate 2")


def test_rate_is_checked_and_discrete_time_layers_refuse_it():
    with pytest.raises(ValueError, match="`rate` must be a finite number > 0"):
        ssm.S4D(4, 8)(torch.randn(1, 5, 4), rate=0)
    with pytest.raises(ValueError, match="`rate` must be 1"):
        ssm.CompanionSSM(4, 8)(torch.randn(1, 5, 4), rate=2.0)


@pytest.mark.parametrize("name", ["S4", "S4D", "S5"])
def test_resampled_signal_at_rate_gives_the_resampled_output(name):
    """A model run on a signal sampled r times more coarsely, with rate=r, outputs (approximately)
    the coarsely sampled outputs of the original: the S4 paper's zero-shot resolution change."""
    torch.manual_seed(0)
    layer = dict(S4=lambda: ssm.S4(4, 16), S4D=lambda: ssm.S4D(4, 16), S5=lambda: ssm.S5(4, 16))[name]().double().eval()
    with torch.no_grad():
        for p_name in ("inv_dt", "log_dt"):  # timesteps such that the fine signal is well resolved
            if hasattr(layer.core, p_name):
                getattr(layer.core, p_name).uniform_(math.log(0.01), math.log(0.03))
        L, r = 2048, 2
        t = torch.arange(L, dtype=torch.float64) / L
        x = torch.stack([torch.sin(2 * math.pi * f * t + ph) for f, ph in [(3, 0.0), (5, 1.0), (7, 2.0), (2, 0.5)]], -1)[None]
        y_fine, _ = layer(x)
        y_coarse, _ = layer(x[:, ::r], rate=float(r))
        y_wrong, _ = layer(x[:, ::r])  # ignoring the rate
    target = y_fine[:, ::r]
    err, wrong = rel_err(y_coarse, target), rel_err(y_wrong, target)
    assert err < ZERO_SHOT_RATE, err
    assert wrong > 5 * err, (wrong, err)


def test_sequence_model_passes_rate_down_and_keeps_it_as_an_attribute():
    torch.manual_seed(0)
    model = SequenceModel(2, 3, 8, 2, layer=lambda d: ssm.S4D(d, 8), pool="none").double().eval()
    x = torch.randn(1, 20, 2, dtype=torch.float64)
    with torch.no_grad():
        by_arg = model(x, rate=2.0)
        model.rate = 2.0
        by_attr = model(x)
        model.rate = 1.0
        plain = model(x)
    assert torch.equal(by_arg, by_attr)
    assert rel_err(plain, by_arg) > SIGNAL
