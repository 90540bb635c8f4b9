"""SpaceTime (arXiv 2303.09489): shapes, the auxiliary losses, causality of the encoder, the fixed
preprocessing, the AR(p) data it is tested on, and (slow) that it learns a seasonal series."""

import pytest
import torch
from helpers import ESTIMATE, ROUNDOFF, SIGNAL, rel_err

from ssm.data.autoregressive import (
    ARProcess,
    impulse_response,
    random_stable_coefficients,
)
from ssm.data.synthetic import SeasonalSeries
from ssm.models.spacetime import SpaceTime, preprocessing_kernels
from ssm.ops import fftconv


def small(**overrides):
    torch.manual_seed(0)
    kwargs = {"lag": 40, "horizon": 12, "d_model": 16, "d_state": 8, "n_kernels": 4, "ma_windows": (4, 5, 6, 7)}
    kwargs.update(overrides)
    return SpaceTime(**kwargs)


@pytest.mark.parametrize("overrides", [{}, {"n_blocks": 2, "embedding": "linear", "dropout": 0.1},
                                       {"preprocess": False, "center": False, "d_input": 2, "d_output": 3, "w1": 0.0}])
def test_shapes_and_eval_mode_has_no_aux_loss(overrides):
    model = small(**overrides)
    x = torch.randn(5, 40, model.d_input)
    y = model(x)
    assert y.shape == (5, 12, model.d_output)
    assert torch.isfinite(y).all()
    aux = model.aux_loss()
    assert aux.dim() == 0 and torch.isfinite(aux) and aux > 0
    model.eval()
    model(x)
    assert model.aux_loss().item() == 0.0


def test_aux_loss_backward_reaches_every_parameter_with_finite_gradients():
    model = small()
    x, target = torch.randn(4, 40, 1), torch.randn(4, 12, 1)
    loss = torch.nn.functional.mse_loss(model(x), target) + model.aux_loss()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
    assert model.decoder.k.grad.abs().sum() > 0  # k is trained by the next-input loss
    # preprocessing kernels are fixed buffers, not parameters
    assert "encoder.0.pre.kernel" in dict(model.named_buffers())
    assert not any("pre" in n for n, _ in model.named_parameters())


def test_aux_loss_weights_and_paper_loss():
    x, target = torch.randn(3, 40, 1), torch.randn(3, 12, 1)
    m0 = small(w1=0.0, w2=0.0)
    m0(x)
    assert m0.aux_loss().item() == 0.0
    m1 = small(w1=2.0, w2=0.0)
    forecast = m1(x)
    m2 = small(w1=1.0, w2=0.0)
    m2(x)
    assert rel_err(m1.aux_loss(), 2 * m2.aux_loss()) <= ROUNDOFF[torch.float32]
    rmse = torch.sqrt(((forecast - target) ** 2).mean())
    assert rel_err(m1.loss(forecast, target), rmse + m1.aux_loss()) <= ROUNDOFF[torch.float32]


def test_forecast_step0_is_head_of_open_loop_last_step():
    model = small(dropout=0.0, center=False)
    x = torch.randn(2, 40, 1)
    with torch.no_grad():
        h = model.encode(x)
        out = model.decoder(h, 12, open_loop=True)
        forecast = model(x)
    assert rel_err(forecast[:, 0], model.head(out.open_loop[:, -1])) <= ROUNDOFF[torch.float32]


def test_encoder_is_causal():
    model = small(n_blocks=2).eval()
    x = torch.randn(2, 40, 1)
    x2 = x.clone()
    x2[:, 25] += 1.0
    with torch.no_grad():
        h1, h2 = model.encode(x), model.encode(x2)
    # FFT rounding only, of a length-80 transform: ~log2(80) roundings per output, so 10 x ROUNDOFF
    assert (h1[:, :25] - h2[:, :25]).abs().max() <= 10 * ROUNDOFF[torch.float32] * h1.abs().max()
    assert (h1[:, 25:] - h2[:, 25:]).abs().max() > SIGNAL


def test_centering_makes_forecasts_shift_equivariant():
    model = small().eval()
    x = torch.randn(2, 40, 1)
    with torch.no_grad():
        assert rel_err(model(x + 5.0), model(x) + 5.0) <= ROUNDOFF[torch.float32]  # x + 5 rounds in float32


def test_preprocessing_kernels_annihilate_what_they_should():
    K = preprocessing_kernels((5,))
    assert K.shape == (5, 64)
    t = torch.arange(30, dtype=torch.float64)
    for order in range(4):  # difference of order k kills polynomials of degree k - 1
        if order == 0:
            continue
        poly = t ** (order - 1)
        out = fftconv(poly.view(1, 1, -1), K[order : order + 1].double())[0, 0]
        assert out[order:].abs().max() <= ROUNDOFF[torch.float64] * poly.abs().max(), order
    const = torch.full((1, 1, 30), 3.0, dtype=torch.float64)
    ma = fftconv(const, K[4:5].double())[0, 0]
    assert ma[4:].abs().max() <= ROUNDOFF[torch.float64]
    assert ma[0] == pytest.approx(3.0 * (1 - 1 / 5), rel=ROUNDOFF[torch.float32])  # K holds float32 weights
    assert torch.equal(K[0, :5], torch.tensor([1.0, 0, 0, 0, 0])) and not K[:, 5:].any()


def test_state_dict_loads_into_a_fresh_model_with_other_random_windows():
    torch.manual_seed(1)
    a = SpaceTime(lag=20, horizon=4, d_model=16, d_state=4, n_kernels=4)
    torch.manual_seed(2)
    b = SpaceTime(lag=20, horizon=4, d_model=16, d_state=4, n_kernels=4)
    assert not torch.equal(a.encoder[0].pre.kernel, b.encoder[0].pre.kernel)
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 20, 1)
    assert torch.equal(a.eval()(x), b.eval()(x))


def test_bad_inputs_are_named():
    model = small()
    with pytest.raises(ValueError, match="pad_horizon=false"):
        model(torch.randn(2, 52, 1))
    with pytest.raises(ValueError, match="multiple of the 8 preprocessing kernels"):
        SpaceTime(lag=10, horizon=2, d_model=12, n_kernels=4, ma_windows=(4, 5, 6, 7))
    with pytest.raises(ValueError, match="need d_output == d_input"):
        SpaceTime(d_input=1, d_output=2, lag=10, horizon=2, d_model=16, n_kernels=4)
    with pytest.raises(ValueError, match="`lag` must be an int >= 1"):
        SpaceTime(lag=0, horizon=2)
    with pytest.raises(ValueError, match="`embedding` must be one of"):
        SpaceTime(lag=10, horizon=2, embedding="conv")


# -- the AR(p) data ------------------------------------------------------------------------------


def test_ar_process_is_deterministic_and_its_oracle_is_right():
    kwargs = {"order": 4, "lag": 32, "horizon": 8, "size": 3000, "seed": 3}
    ds = ARProcess("test", **kwargs)
    again = ARProcess("test", **kwargs)
    assert torch.equal(ds.x, again.x) and torch.equal(ds.coefficients, ARProcess("train", **kwargs).coefficients)
    assert not torch.equal(ds.x[:5], ARProcess("val", **kwargs).x[:5])
    x, y = ds[0]
    assert x.shape == (32, 1) and y.shape == (8, 1) and x.dtype == torch.float32
    assert abs(ds.stationary_variance - 1.0) <= ROUNDOFF[torch.float64]
    assert abs(ds.x.var().item() - 1.0) <= ESTIMATE / 2  # 750 windows of a unit-variance process, all 32 lags pooled
    err = ((ds.oracle_forecast(ds.x) - ds.y.double()) ** 2).mean(0).squeeze(-1)  # (horizon,)
    expected = ds.oracle_mse()
    assert (err / expected - 1).abs().max() <= ESTIMATE
    assert err[0] < err[-1]  # harder further out


def test_ar_coefficients():
    g = torch.Generator().manual_seed(0)
    for p in (1, 4, 7):
        phi = random_stable_coefficients(p, generator=g)
        companion = torch.diag(torch.ones(p - 1, dtype=torch.float64), -1)
        companion[0] = phi
        assert torch.linalg.eigvals(companion).abs().max() <= 0.95 + ROUNDOFF[torch.float64]
    psi = impulse_response(torch.tensor([0.5], dtype=torch.float64), 5)
    assert rel_err(psi, 0.5 ** torch.arange(5, dtype=torch.float64)) <= ROUNDOFF[torch.float64]
    with pytest.raises(ValueError, match="not stable"):
        ARProcess(coefficients=[1.1])
    with pytest.raises(ValueError, match="`lag` \\(2\\) must be >= the order p = 3"):
        ARProcess(coefficients=[0.1, 0.1, 0.1], lag=2)


# -- learning (slow) -----------------------------------------------------------------------------


@pytest.mark.slow
def test_learns_a_seasonal_series_better_than_naive_forecasts():
    """A short plain-torch run beats repeating the last value and repeating the last season."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        lag, horizon, period = 96, 24, 24
        train = SeasonalSeries("train", lag=lag, horizon=horizon, period=period, stride=4)
        test = SeasonalSeries("test", lag=lag, horizon=horizon, period=period)
        last = ((test.x[:, -1:] - test.y) ** 2).mean().item()
        season = ((test.x[:, -period:] - test.y) ** 2).mean().item()  # horizon == period
        model = SpaceTime(lag=lag, horizon=horizon, d_model=32, d_state=16, n_kernels=8, dropout=0.0)
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
        for _ in range(6):
            model.train()
            for idx in torch.randperm(len(train)).split(32):
                loss = torch.nn.functional.mse_loss(model(train.x[idx]), train.y[idx]) + model.aux_loss()
                opt.zero_grad()
                loss.backward()
                opt.step()
        model.eval()
        with torch.no_grad():
            mse = ((model(test.x) - test.y) ** 2).mean().item()
    finally:
        torch.set_num_threads(threads)
    assert mse < season < last, (mse, season, last)
