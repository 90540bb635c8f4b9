"""SaShiMi (arXiv 2202.09729): conv == whole-stack stepping over thousands of samples, fast stepping
== reference stepping, causality (and its loss without the UpPool shift), pooling shapes, the
variants, and the sampling loop (top-p, temperature, exact log-likelihood)."""

import functools
from pathlib import Path

import pytest
import torch
from helpers import ROUNDOFF, RTOL, SAMPLING, SIGNAL, assert_close, rel_err

import ssm
from ssm.models.generation import FastStepper, sample, sample_token
from ssm.models.sashimi import DownPool, SaShiMi, SaShiMiState, UpPool


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Stepping is thousands of tiny ops: intra-op threads only add contention on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


LAYERS = {
    "S4": functools.partial(ssm.S4, d_state=16),
    "S4D": functools.partial(ssm.S4D, d_state=16),
    "S4PTD": functools.partial(ssm.S4PTD, d_state=8),
    "S5": functools.partial(ssm.S5, d_state=16),
    "S4-rank2": functools.partial(ssm.S4, d_state=16, rank=2),
}


class _DelayLayer(torch.nn.Module):
    """A causal layer outside the package's SSM cores: y_t = w * x_{t-1} (state: x_{t-1}).

    It exercises FastStepper's generic path (the layer's own step)."""

    causal = True

    def __init__(self, d_model: int):
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(d_model))

    def forward(self, x, state=None):  # (B, L, H)
        prev = torch.zeros_like(x[:, :1]) if state is None else state.unsqueeze(1)
        shifted = torch.cat([prev, x[:, :-1]], 1)
        return self.w * shifted, (x[:, -1] if state is not None else None)

    def default_state(self, batch, *, device=None):
        return torch.zeros(batch, self.w.shape[0], device=device)

    def setup_step(self):
        pass

    def step(self, x_t, state):
        return self.w * state, x_t


def make(layer="S4D", *, d_model=8, n_layers=1, seed=0, **kw) -> SaShiMi:
    torch.manual_seed(seed)
    factory = _DelayLayer if layer == "delay" else LAYERS[layer]
    return SaShiMi(d_model, n_layers, layer=factory, **kw).eval()


def step_all(model, x, state=None):
    """Reference: model.step once per sample -> (B, L, d_output), final state."""
    state = model.default_state(x.shape[0]) if state is None else state
    ys = []
    for t in range(x.shape[1]):
        y, state = model.step(x[:, t], state)
        ys.append(y)
    return torch.stack(ys, 1), state


def fast_all(model, x, **kw):
    stepper = FastStepper(model, x.shape[0], **kw)
    stepper.reset()
    return torch.stack([stepper.step(x[:, t]).clone() for t in range(x.shape[1])], 1), stepper


# ---- convolution == stepping ------------------------------------------------------------------------


@pytest.mark.parametrize("layer", ["S4", "S4D"])
def test_forward_equals_whole_stack_stepping_long(layer):
    """4096 samples (256 coarsest steps): the s4 repo's conv-vs-step check, and the issue's
    'forward and step diverge on long series'. Default dt range, so the S4 memory is long."""
    model = make(layer)
    x = torch.randint(0, 256, (2, 4096))
    with torch.inference_mode():
        y = model(x)
        y_step, _ = step_all(model, x)
        y_fast, _ = fast_all(model, x)
    # 4096 samples: the recurrences' round-off grows with the length (measured up to 5e-6)
    assert_close(y_step, y, torch.float32, "step vs forward", factor=5)
    assert_close(y_fast, y, torch.float32, "fast step vs forward", factor=5)


@pytest.mark.parametrize("layer", ["S4", "S4D", "S5", "delay"])
@pytest.mark.parametrize("unet", [False, True])
def test_forward_with_state_matches_stepping_and_chunks(layer, unet):
    model = make(layer, n_layers=2, unet=unet)
    x = torch.randint(0, 256, (3, 96))
    with torch.inference_mode():
        y = model(x)
        y_step, state_step = step_all(model, x)
        y1, s1 = model(x[:, :32], model.default_state(3))
        y2, s2 = model(x[:, 32:], s1)
    assert_close(y_step, y, torch.float32, "step vs forward")
    assert_close(torch.cat([y1, y2], 1), y, torch.float32, "chunked forward vs forward")
    assert s2.t == state_step.t == 96
    for a, b in zip(s2.center, state_step.center, strict=True):
        if a is not None:
            assert_close(a, b, torch.complex64 if a.is_complex() else torch.float32, "center state")
    assert_close(s2.tiers[1].queue, state_step.tiers[1].queue, torch.float32, "UpPool queue")
    # a state in the middle of a coarse step cannot be continued by forward
    with torch.inference_mode():
        _, mid = step_all(model, x[:, :5])
    with pytest.raises(ValueError, match=r"multiple of prod\(pool\)=16 samples, got state.t=5"):
        model(x[:, :16], mid)


# ---- fast path == reference -------------------------------------------------------------------------


@pytest.mark.parametrize("layer", ["S4", "S4D", "S4PTD", "S5", "S4-rank2", "delay"])
@pytest.mark.parametrize("chunk", [1, 3, 8])
@pytest.mark.parametrize("backend", ["torch", pytest.param("cpp", marks=pytest.mark.compiled)])
def test_fast_step_equals_reference_step(layer, chunk, backend):
    model = make(layer, n_layers=2, unet=(layer == "S4-rank2"))
    with torch.no_grad():  # larger dt: states that decay within the test, so transfer errors show
        for m in model.modules():
            for name in ("inv_dt", "log_dt"):  # S4-family / S5 (log dt under dt_transform="exp")
                if hasattr(m, name):
                    getattr(m, name).uniform_(-3, -0.5)
    x = torch.randint(0, 256, (3, 83))  # not a multiple of the period or the chunk
    with torch.inference_mode():
        y_ref, state = step_all(model, x)
        y_fast, stepper = fast_all(model, x, chunk=chunk, backend=backend)
        y64, _ = fast_all(model, x, chunk=chunk, dtype=torch.float64, backend=backend)
        exported = stepper.export_state()
    assert stepper.backend == backend
    assert_close(y_fast, y_ref, torch.float32, "fast vs reference")
    assert_close(y64, y_ref, torch.float32, "float64 fast vs reference")
    assert exported.t == state.t == 83
    for got, want in [(exported.tiers[0].up, state.tiers[0].up), (exported.center, state.center)]:
        for a, b in zip(got, want, strict=True):
            if a is not None:
                assert_close(a, b, torch.complex64 if a.is_complex() else torch.float32, "exported state")
    for got, want in zip(exported.tiers, state.tiers, strict=True):
        assert_close(got.buffer, want.buffer, torch.float32, "DownPool buffer")
        assert_close(got.queue, want.queue, torch.float32, "UpPool queue")


@pytest.mark.compiled
@pytest.mark.parametrize("batch", [1, 5, 20])  # the compiled products' narrow-column tail, 8- and 16-wide blocks
@pytest.mark.parametrize("layer,activation,final", [("S4", "gelu", "glu"), ("S4D", "silu", "linear"),
                                                    ("S4-rank2", "relu", "identity"), ("S5", "tanh", "glu"),
                                                    ("S4PTD", "identity", "linear")])
def test_compiled_step_ops_equal_the_pytorch_path(batch, layer, activation, final):
    """backend='cpp' (ssm.ops.step: residual_chain, siso_bank_begin/_end) against backend='torch', in
    float64 so that any indexing slip shows far above rounding: outputs at every step and the
    exported state, for every activation and output map the fused chain implements."""
    torch.manual_seed(1)
    factory = functools.partial(LAYERS[layer], activation=activation, final=final)
    model = SaShiMi(8, 2, layer=factory, unet=(layer == "S4D")).eval()
    with torch.no_grad():
        for m in model.modules():
            for name in ("inv_dt", "log_dt"):  # S4-family / S5 (log dt under dt_transform="exp")
                if hasattr(m, name):
                    getattr(m, name).uniform_(-3, -0.5)
    x = torch.randint(0, 256, (batch, 45))
    with torch.inference_mode():
        y_cpp, s_cpp = fast_all(model, x, chunk=3, dtype=torch.float64, backend="cpp")
        y_torch, s_torch = fast_all(model, x, chunk=3, dtype=torch.float64, backend="torch")
        e_cpp, e_torch = s_cpp.export_state(), s_torch.export_state()
    assert s_cpp.backend == "cpp" and s_torch.backend == "torch"
    assert all(t.fused is not None for t in s_cpp._all_tiers()) and all(t.fused is None for t in s_torch._all_tiers())
    assert rel_err(y_cpp, y_torch) <= RTOL[torch.float64], (y_cpp - y_torch).abs().max()
    for a, b in zip(e_cpp.center + e_cpp.tiers[0].up, e_torch.center + e_torch.tiers[0].up, strict=True):
        if a is not None:
            assert torch.allclose(a, b, rtol=ROUNDOFF[torch.complex64], atol=0)  # float64 states exported as complex64


@pytest.mark.compiled
def test_fast_stepper_backend_choice(monkeypatch):
    model = make("S4D", n_layers=1)
    assert FastStepper(model, 2).backend == "cpp"  # CPU, compiled library present
    monkeypatch.setenv("SSM_BACKEND", "torch")
    assert FastStepper(model, 2).backend == "torch"
    monkeypatch.delenv("SSM_BACKEND")
    with pytest.raises(RuntimeError, match="backend='cpp' cannot run this call: compile=True traces the Python chain"):
        FastStepper(model, 2, compile=True, backend="cpp")
    with pytest.raises(ValueError, match="backend must be one of"):
        FastStepper(model, 2, backend="fused")


@pytest.mark.compiled
def test_compiled_step_ops_reject_bad_input_and_change_nothing():
    model = make("S4D", n_layers=2)
    with torch.inference_mode():
        stepper = FastStepper(model, 3, backend="cpp")
        tier = stepper.tiers[0].up
        params, kinds, eps, act, final = tier.fused
        ys, us = tier.bank.slot_lists[0]
        x = torch.randn(3, 8)
        before = [t.clone() for t in us]
        bad = list(params)
        bad[2] = bad[2][:5]  # block 0's d: (5,) instead of (8,)
        with pytest.raises(RuntimeError, match=r"block 0: `d` must have shape \[8\]"):
            torch.ops.ssm.residual_chain(x, bad, ys, us, kinds, eps, act, final, [], [])
        with pytest.raises(RuntimeError, match=r"`x` must be \(B, H\)"):
            torch.ops.ssm.residual_chain(x[0], params, ys, us, kinds, eps, act, final, [], [])
        with pytest.raises(RuntimeError, match="`activation` must be one of identity, gelu, silu, relu, tanh, got 'swish'"):
            torch.ops.ssm.residual_chain(x, params, ys, us, kinds, eps, "swish", final, [], [])
        with pytest.raises(RuntimeError, match="`final` must be one of identity, linear, glu, got 'relu'"):
            torch.ops.ssm.residual_chain(x, params, ys, us, kinds, eps, act, "relu", [], [])
        with pytest.raises(RuntimeError, match="each of `kinds` must be one of feed_forward, channel_ssm, dense_ssm"):
            torch.ops.ssm.residual_chain(x, params, ys, us, ["ssm", *kinds[1:]], eps, act, final, [], [])
        assert all(torch.equal(a, b) for a, b in zip(us, before, strict=True))  # validated before anything is written
        bank = tier.bank
        with pytest.raises(RuntimeError, match=r"`j` must be in \[0, 8\)"):
            torch.ops.ssm.siso_bank_end(bank.Xr, bank.Acc, bank.Kd, bank.Ur, bank.ETr, bank.ETi, 8)
        with pytest.raises(RuntimeError, match="`FT` must be"):
            torch.ops.ssm.siso_bank_begin(bank.FTr[:, :4], bank.Xr, bank.Acc)
        with pytest.raises(RuntimeError, match="`X` must be float32 or float64"):
            torch.ops.ssm.siso_bank_begin(bank.FTr, bank.Xr.half(), bank.Acc)


def test_fast_stepper_continues_from_a_model_state():
    model = make("S4", n_layers=2)
    x = torch.randint(0, 256, (2, 50))
    with torch.inference_mode():
        y_ref, _ = step_all(model, x)
        _, state = step_all(model, x[:, :21])  # mid coarse step
        stepper = FastStepper(model, 2)
        stepper.reset(state)
        y_rest = torch.stack([stepper.step(x[:, t]).clone() for t in range(21, 50)], 1)
    assert_close(y_rest, y_ref[:, 21:], torch.float32, "continued fast stepping")


def test_fast_and_reference_sampling_draw_the_same_samples():
    model = make("S4", n_layers=2)
    prompt = torch.randint(0, 256, (4, 37))  # forward for 32 samples, then steps
    out = {}
    for fast in (False, True):
        g = torch.Generator().manual_seed(7)
        out[fast] = sample(model, 4, 100, temperature=0.9, top_p=0.95, prompt=prompt, generator=g, fast=fast)
    assert torch.equal(out[False][0], out[True][0])
    assert torch.equal(out[True][0][:, :37], prompt)
    # sums of the two paths' float32 log-probabilities, which differ by rounding
    assert rel_err(out[True][1], out[False][1]) <= ROUNDOFF[torch.float32]


# ---- causality --------------------------------------------------------------------------------------


def _leak(model, x, t):
    """(max change of outputs before t, max change at/after t) when the input at t changes."""
    x2 = x.clone()
    x2[:, t] = (x2[:, t] + 97) % 256
    with torch.inference_mode():
        y1, y2 = model(x), model(x2)
    return (y1[:, :t] - y2[:, :t]).abs().max().item(), (y1[:, t:] - y2[:, t:]).abs().max().item()


@pytest.mark.parametrize("unet", [False, True])
def test_causal_and_the_shift_is_what_makes_it_causal(unet):
    model = make("S4D", n_layers=2, unet=unet)
    x = torch.randint(0, 256, (2, 64))
    for t in (5, 16, 37, 47):
        before, after = _leak(model, x, t)
        # FFT rounding only, of a length-128 transform: ~log2(128) roundings per output, so 10 x ROUNDOFF
        assert before <= 10 * ROUNDOFF[torch.float32], f"output before t={t} changed by {before}"
        assert after > SIGNAL, "the change does not arrive"
    for tier in model.tiers:  # without the shift the coarse path sees the rest of its block
        tier.up_pool.shift = False
    leaks = [_leak(model, x, t)[0] for t in (5, 37, 47)]
    assert min(leaks) > SIGNAL, f"the causality check missed the leak without the UpPool shift: {leaks}"


# ---- shapes, variants, errors -----------------------------------------------------------------------


def test_pool_shapes_round_trip_and_shift():
    torch.manual_seed(0)
    B, L, H, p, e = 2, 24, 5, 4, 3
    down = DownPool(H, e, p)
    up = UpPool(H, e, p, shift=True)
    z = down(torch.randn(B, L, H))
    assert z.shape == (B, L // p, H * e)
    y, last = up(z)
    assert y.shape == (B, L, H) and last.shape == (B, p, H)
    up.shift = False
    y0, last0 = up(z)
    assert torch.equal(y[:, :p], torch.zeros(B, p, H))  # the first coarse step receives zeros
    assert torch.equal(y[:, p:], y0[:, :-p])  # everything else moves one coarse step right
    assert torch.equal(last, last0) and torch.equal(last0, y0[:, -p:])
    queue = torch.randn(B, p, H)
    up.shift = True
    assert torch.equal(up(z, queue)[0][:, :p], queue)


def test_default_configuration():
    model = SaShiMi()
    assert model.causal and model.pool == (4, 4) and model.period == 16 and model.vocab_size == 256
    blocks = list(model.center) + [b for t in model.tiers for b in t.up]
    ssm_layers = [b.f for b in blocks if b.stateful]
    assert len(ssm_layers) == 24 and len(blocks) == 48  # 2 tiers: 24 S4 + 24 FF blocks
    assert all(isinstance(m, ssm.S4) and m.causal and m.core.n_modes == 32 for m in ssm_layers)  # 64 = 2 x 32 pairs
    assert [t.d_model for t in model.tiers] == [64, 128] and model.center[0].f.d_model == 256
    assert all(len(t.down) == 0 for t in model.tiers)
    unet = SaShiMi(8, 2, unet=True, layer=LAYERS["S4D"])
    assert [len(t.down) for t in unet.tiers] == [4, 4]


def test_variant_shapes():
    torch.manual_seed(0)
    x = torch.randint(0, 256, (2, 32))
    assert make("S4", unet=True, d_output=7)(x).shape == (2, 32, 7)
    feats = SaShiMi(8, 1, layer=LAYERS["S4D"], d_input=3, d_output=2, pool=(2, 4, 2))
    assert feats(torch.randn(2, 32, 3)).shape == (2, 32, 2)
    bi = make("S4", causal=False, unet=True)
    assert not bi.causal and all(b.f.causal is False for b in bi.center if b.stateful)
    assert bi(x).shape == (2, 32, 256)
    x2 = x.clone()
    x2[:, 30] = (x2[:, 30] + 1) % 256
    with torch.inference_mode():
        assert (bi(x)[:, :16] - bi(x2)[:, :16]).abs().max() > SIGNAL, "bidirectional model ignores the future"


def test_noncausal_model_refuses_to_step():
    model = make("S4D", causal=False)
    for call in (lambda: model.default_state(2), model.setup_step, lambda: FastStepper(model, 2),
                 lambda: model.step(torch.zeros(2, dtype=torch.long), None)):
        with pytest.raises(ValueError, match="causal=False"):
            call()
    with pytest.raises(ValueError, match="must be causal"):
        sample(model, 2, 10)


def test_bad_inputs_are_named():
    model = make("S4D")
    with pytest.raises(ValueError, match=r"length L=20 must be a positive multiple of prod\(pool\)=16 \(pool=\(4, 4\)\)"):
        model(torch.randint(0, 256, (2, 20)))
    with pytest.raises(ValueError, match=r"tokens must lie in \[0, vocab_size=256\)"):
        model(torch.full((1, 16), 256))
    with pytest.raises(ValueError, match="token input must be int64"):
        model(torch.randn(2, 16))
    with pytest.raises(ValueError, match="not both"):
        SaShiMi(8, 1, layer=LAYERS["S4D"], vocab_size=4, d_input=3)
    with pytest.raises(ValueError, match="causal=True needs causal layers"):
        SaShiMi(8, 1, layer=lambda H: ssm.S4D(H, 8, bidirectional=True))
    with pytest.raises(ValueError, match="`pool` factor must be >= 1"):
        SaShiMi(8, 1, layer=LAYERS["S4D"], pool=(4, 0))
    state = model.default_state(2)
    with pytest.raises(ValueError, match="state is for batch 2, input has batch 3"):
        model.step(torch.zeros(3, dtype=torch.long), state)
    with pytest.raises(TypeError, match="SaShiMiState"):
        model.step(torch.zeros(2, dtype=torch.long), [1, 2])
    assert isinstance(state, SaShiMiState)
    for kwargs, message in [({"temperature": -1.0}, "temperature"), ({"top_p": 0.0}, "top_p"), ({"top_p": 1.5}, "top_p"),
                            ({"prompt": torch.zeros(3, 4, dtype=torch.long)}, "must be 1 or n_samples"),
                            ({"prompt": torch.zeros(2, 9, dtype=torch.long), "length": 5}, "at least the prompt length")]:
        kwargs = {"length": 10, **kwargs}
        with pytest.raises(ValueError, match=message):
            sample(model, 2, kwargs.pop("length"), **kwargs)
    with pytest.raises(ValueError, match="fast=True steps SaShiMi models only"):
        seq = ssm.SequenceModel(None, 11, d_model=8, n_layers=1, layer=LAYERS["S4D"], vocab_size=11, pool="none")
        sample(seq, 2, 5)


# ---- sampling ---------------------------------------------------------------------------------------


def test_top_p_and_temperature():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logits = probs.log().expand(40000, 4)
    g = torch.Generator().manual_seed(0)

    def freq(**kw):
        return torch.bincount(sample_token(logits, generator=g, **kw), minlength=4).double() / logits.shape[0]

    assert (freq() - probs.double()).abs().max() <= SAMPLING
    nucleus = freq(top_p=0.7)  # keeps {0.5, 0.3}, renormalised
    assert nucleus[2:].sum() == 0 and (nucleus[:2] - torch.tensor([0.625, 0.375], dtype=torch.float64)).abs().max() <= SAMPLING
    assert torch.equal(sample_token(logits[:100], top_p=1e-6, generator=g), torch.zeros(100, dtype=torch.long))
    assert torch.equal(sample_token(logits[:100], temperature=0), torch.zeros(100, dtype=torch.long))
    cold, hot = freq(temperature=0.25), freq(temperature=4.0)
    sharpened = probs.double() ** 4 / (probs.double() ** 4).sum()
    flattened = probs.double() ** 0.25 / (probs.double() ** 0.25).sum()  # 0.31 .. 0.18
    assert (cold - sharpened).abs().max() <= SAMPLING
    assert (hot - flattened).abs().max() <= SAMPLING  # near uniform
    # the nucleus is taken after the temperature (s4's generate.py took it before, keeping no token 2):
    # of the flattened probabilities the first three are kept
    assert abs(freq(temperature=4.0, top_p=0.7)[2] - flattened[2] / flattened[:3].sum()) <= SAMPLING


@pytest.mark.parametrize("fast", [False, True])
def test_log_likelihood_is_the_forward_log_probability_of_the_samples(fast):
    model = make("S4", n_layers=2)
    g = torch.Generator().manual_seed(3)
    prompt = torch.randint(0, 256, (3, 5))
    tokens, ll = sample(model, 3, 61, temperature=0.7, top_p=0.9, prompt=prompt, generator=g, fast=fast)
    assert tokens.shape == (3, 61) and ll.shape == (3,) and ll.dtype == torch.float64
    padded = torch.cat([tokens, torch.zeros(3, 3, dtype=torch.long)], 1)  # 64 = multiple of 16; causal
    with torch.inference_mode():
        logp = torch.log_softmax(model(padded).double(), -1)  # (B, L, V)
    chosen = logp[:, 4:60].gather(-1, tokens[:, 5:61, None]).squeeze(-1)  # logits at t-1 predict token t
    assert_close(ll, chosen.sum(1), torch.float32, "log-likelihood")
    assert (ll < 0).all()


def test_progress_and_start_token():
    model = make("S4D").train()
    seen = []
    tokens, _ = sample(model, 2, 20, start_token=3, generator=torch.Generator().manual_seed(0),
                       progress=lambda t, n: seen.append((t, n)))
    assert torch.equal(tokens[:, 0], torch.tensor([3, 3]))
    assert seen == [(t, 20) for t in range(2, 21)]
    assert model.training  # restored after sampling in eval mode


def test_config_composes_to_a_causal_sashimi():
    pytest.importorskip("hydra")
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.utils import instantiate

    config_dir = Path(ssm.__file__).resolve().parent.parent / "configs"
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        cfg = compose("config", overrides=["output_dir=/tmp", "model=sashimi", "model/layer=s4", "data=sine_tokens",
                                           "model.n_layers=1"])
    GlobalHydra.instance().clear()
    model = instantiate(cfg.model)
    assert isinstance(model, SaShiMi) and model.causal and model.pool == (4, 4)
    assert all(isinstance(b.f, ssm.S4) and b.f.causal for b in model.center if b.stateful)  # the layer group's bidirectional is overridden
    assert model(torch.randint(0, 256, (1, 32))).shape == (1, 32, 256)


@pytest.mark.slow
def test_compiled_fast_step_equals_eager():
    pytest.importorskip("torch._dynamo")
    model = make("S4", n_layers=1)
    x = torch.randint(0, 256, (2, 40))
    with torch.inference_mode():
        y_eager, _ = fast_all(model, x, chunk=4)
        y_compiled, _ = fast_all(model, x, chunk=4, compile=True)
    assert_close(y_compiled, y_eager, torch.float32, "compiled vs eager fast step")


def test_bench_generate_rows(tmp_path):
    """`ssm-bench generate` on a tiny SaShiMi: one row per path and batch, the speed-ups relative to
    the reference row, the setup time inside the end-to-end time, and the JSON written."""
    import json

    from ssm.cli.bench import main

    out = tmp_path / "gen.json"
    assert main(["generate", "batches=1,2", "length=9", "repeats=1", "d_model=8", "n_layers=1", "pool=2", "d_state=4",
                 "cpu=true", f"json={out}"]) == 0
    rows = json.loads(out.read_text())["records"]
    paths = ["reference", "fast-torch", "fast"]
    assert [(r["batch"], r["path"]) for r in rows] == [(b, p) for b in (1, 2) for p in paths]
    for ref, *fast in (rows[0:3], rows[3:6]):
        assert ref["speedup"] == 1.0 and ref["steady_speedup"] == 1.0
        for f in fast:
            assert f["speedup"] == pytest.approx(f["samples_per_s"] / ref["samples_per_s"], rel=ROUNDOFF[torch.float64])
            assert f["steady_speedup"] == pytest.approx(f["steady_samples_per_s"] / ref["steady_samples_per_s"],
                                                        rel=ROUNDOFF[torch.float64])
        for r in (ref, *fast):
            assert 0 < r["setup_ms"] and r["samples_per_s"] == pytest.approx(r["batch"] * 8 / (r["median_ms"] / 1e3),
                                                                              rel=ROUNDOFF[torch.float64])
