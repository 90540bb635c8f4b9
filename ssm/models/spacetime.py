"""SpaceTime: an encoder of companion SSMs and a closed-loop companion decoder for forecasting
(arXiv 2303.09489).

    x (B, lag, d_input) -> [subtract the lag mean] -> embedding (repeat to d_model channels)
      -> encoder block 1: fixed preprocessing SSM (differencing and moving-average residual
         kernels) -> companion SSM (with skip D) -> MLP (GELU, dropout, linear, residual)
         -> + skip (over the SSM and MLP)
      -> encoder blocks 2..n_blocks: the same without preprocessing
      -> decoder: ClosedLoopCompanionSSM, rolled out ``horizon`` steps
      -> head (GELU, dropout, linear to d_output) [+ the lag mean] -> (B, horizon, d_output)

Defaults follow the paper's README setting: d_model 128, d_state 64, one encoder block whose
companion SSM has 16 kernels shared by 8 channels each, preprocessing kernels [1], [1,-1],
[1,-2,1], [1,-3,3,-1] and four moving-average residuals (k_0 = 1 - 1/w, k_{1..w-1} = -1/w,
w ~ U{4..63}), each on d_model/8 channels, a decoder with one kernel per channel, dropout 0.25.
With n_blocks > 1 the first block's skip goes around the preprocessing too (as in the paper's
multi-block configs).

Training. The paper's loss (README weights 1, 1, 1) is
``w0 RMSE(forecast) + w1 RMSE(open-loop next step) + w2 RMSE(decoder next input)``:
the decoder's teacher-forced outputs over the lag window should predict the next value of the
series, and its k^T x_t the decoder's next input. ``forward`` computes and stores the last two
(weighted) when the module is in training mode, and ``aux_loss()`` returns them for that call
(a zero tensor after an eval-mode forward), so a trainer adds them to its own task loss:
``loss = task_loss(model(x), y) + model.aux_loss()``. ``ssm-train``'s Forecasting task uses MSE
on the horizon, not the paper's RMSE (same minimiser, different gradient scale);
``loss(forecast, target)`` gives the paper's full RMSE objective for plain training loops.
Both auxiliary terms skip the first ``min(d_state - 1, lag - 2)`` steps (the paper's offset
d - 1) and stop at the lag's end: the paper's open-loop term also scores output lag-1 against
the first horizon value, but that output *is* the forecast's step 0 here, which the task loss
already scores. As in the paper, the next-input target (the encoder's output) is not detached.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from .. import ops
from ..kernels.companion import Method
from ..checks import check_choice
from ..layers.companion import ClosedLoopCompanionSSM, CompanionCore, NormOrder

Embedding = Literal["repeat", "linear"]

__all__ = ["SpaceTime", "preprocessing_kernels"]


def preprocessing_kernels(ma_windows: tuple[int, ...]) -> torch.Tensor:
    """Differencing kernels of orders 0..3 and one moving-average residual per window:
    ``(4 + len(ma_windows), K)`` causal FIR kernels, K = max(64, max window). (The fixed minimum
    keeps the buffer's shape independent of the random default windows, so a checkpoint loads
    into a freshly built model.)"""
    diffs = [[1.0], [1.0, -1.0], [1.0, -2.0, 1.0], [1.0, -3.0, 3.0, -1.0]]
    K = max([64, *ma_windows])
    out = torch.zeros(len(diffs) + len(ma_windows), K)
    for i, k in enumerate(diffs):
        out[i, : len(k)] = torch.tensor(k)
    for j, w in enumerate(ma_windows):
        out[len(diffs) + j, :w] = -1.0 / w
        out[len(diffs) + j, 0] += 1.0  # u_t minus the mean of the last w values
    return out


class _Preprocess(nn.Module):
    """Fixed (buffer, never trained) causal convolutions; kernel i on a block of d_model/n channels."""

    def __init__(self, d_model: int, ma_windows: tuple[int, ...]):
        super().__init__()
        kernels = preprocessing_kernels(ma_windows)  # (n, K)
        n = kernels.shape[0]
        if d_model % n:
            raise ValueError(f"SpaceTime: `d_model` ({d_model}) must be a multiple of the {n} preprocessing kernels "
                             f"(4 differencing + {len(ma_windows)} moving averages); or set preprocess=False")
        self.register_buffer("kernel", kernels.repeat_interleave(d_model // n, dim=0))  # (H, K)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, H)
        return ops.fftconv(x.transpose(1, 2), self.kernel).transpose(1, 2)


class _EncoderBlock(nn.Module):
    def __init__(self, d_model: int, d_state: int, *, n_kernels: int, norm_order: NormOrder, method: Method,
                 dropout: float, lr: float | None, preprocess: _Preprocess | None, skip_preprocess: bool):
        super().__init__()
        self.pre, self.skip_preprocess = preprocess, skip_preprocess
        self.ssm = CompanionCore(d_model, d_state, n_kernels=n_kernels, norm_order=norm_order, skip=True,
                                 method=method, lr=lr)
        self.mlp = nn.Sequential(nn.GELU(), nn.Dropout(dropout), nn.Linear(d_model, d_model))

    def forward(self, u: torch.Tensor) -> torch.Tensor:  # (B, L, H) -> (B, L, H)
        z = self.pre(u) if self.pre is not None else u
        y = self.ssm(z.transpose(1, 2))[0].transpose(1, 2)  # (B, L, H)
        y = y + self.mlp(y)
        return y + (u if self.skip_preprocess else z)


def _rmse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    # the epsilon keeps the gradient finite when the error is exactly zero
    return torch.sqrt(torch.mean((pred - target) ** 2) + 1e-12)


class SpaceTime(nn.Module):
    """SpaceTime forecaster: ``forward(x: (B, lag, d_input)) -> (B, horizon, d_output)``.

    ``n_kernels``: distinct companion SSMs in each encoder block (each on d_model/n_kernels
    channels); ``decoder_kernels``: in the decoder (default one per channel). ``ma_windows``
    fixes the moving-average windows (default: 4 draws from U{4..63} with torch's global RNG;
    the kernels are buffers, so a checkpoint restores them). ``center`` subtracts each series'
    lag mean and adds it back to the outputs. ``w0, w1, w2``: loss weights (module docstring).
    """

    def __init__(
        self,
        d_input: int = 1,
        d_output: int = 1,
        d_model: int = 128,
        *,
        lag: int,
        horizon: int,
        d_state: int = 64,
        n_blocks: int = 1,
        n_kernels: int = 16,
        decoder_kernels: int | None = None,
        preprocess: bool = True,
        ma_windows: tuple[int, ...] | list[int] | None = None,
        embedding: Embedding = "repeat",
        norm_order: NormOrder = 1,
        method: Method = "series",
        dropout: float = 0.25,
        center: bool = True,
        lr: float | None = None,
        w0: float = 1.0,
        w1: float = 1.0,
        w2: float = 1.0,
    ):
        super().__init__()
        name = "SpaceTime"
        check_choice(name, "embedding", embedding, Embedding)
        for arg, value in (("d_input", d_input), ("d_output", d_output), ("d_model", d_model), ("lag", lag),
                           ("horizon", horizon), ("d_state", d_state), ("n_blocks", n_blocks)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: `{arg}` must be an int >= 1, got {value!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"{name}: `dropout` must be in [0, 1), got {dropout}")
        if min(w0, w1, w2) < 0:
            raise ValueError(f"{name}: loss weights must be >= 0, got w0={w0}, w1={w1}, w2={w2}")
        if (center or w1 > 0) and d_output != d_input:
            raise ValueError(f"{name}: `center` and the open-loop loss (w1 > 0) compare outputs with inputs, so they "
                             f"need d_output == d_input; got d_input={d_input}, d_output={d_output}")
        if embedding == "repeat" and d_model % d_input:
            raise ValueError(f"{name}: embedding='repeat' needs d_model ({d_model}) to be a multiple of d_input ({d_input})")
        self.d_input, self.d_output, self.d_model = d_input, d_output, d_model
        self.lag, self.horizon, self.d_state = lag, horizon, d_state
        self.center, self.w0, self.w1, self.w2 = center, w0, w1, w2
        self.embedding = embedding
        self.embed = nn.Linear(d_input, d_model) if embedding == "linear" else None

        pre = None
        if preprocess:
            if ma_windows is None:
                ma_windows = tuple(int(w) for w in torch.randint(4, 64, (4,)))
            windows = tuple(int(w) for w in ma_windows)
            if any(w < 1 for w in windows):
                raise ValueError(f"{name}: `ma_windows` must be positive ints, got {windows}")
            pre = _Preprocess(d_model, windows)
        self.encoder = nn.ModuleList(
            _EncoderBlock(d_model, d_state, n_kernels=n_kernels, norm_order=norm_order, method=method, dropout=dropout,
                          lr=lr, preprocess=pre if i == 0 else None, skip_preprocess=i == 0 and n_blocks > 1)
            for i in range(n_blocks)
        )
        self.decoder = ClosedLoopCompanionSSM(d_model, d_state, n_kernels=decoder_kernels, norm_order=norm_order,
                                              method=method, lr=lr)
        self.head = nn.Sequential(nn.GELU(), nn.Dropout(dropout), nn.Linear(d_model, d_output))
        self._aux: torch.Tensor | None = None

    # -- pieces ----------------------------------------------------------------------------------

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Embedding and encoder blocks, causal in time: (B, L, d_input) -> (B, L, d_model)."""
        h = self.embed(x) if self.embed is not None else x.repeat(1, 1, self.d_model // self.d_input)
        for block in self.encoder:
            h = block(h)
        return h

    def aux_loss(self) -> torch.Tensor:
        """``w1`` open-loop next-step RMSE + ``w2`` next-input RMSE of the last training-mode
        ``forward`` (zero after an eval-mode one)."""
        if self._aux is None:
            return torch.zeros((), device=self.head[-1].weight.device)
        return self._aux

    def loss(self, forecast: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The paper's objective: ``w0 RMSE(forecast, target) + aux_loss()``."""
        return self.w0 * _rmse(forecast, target) + self.aux_loss()

    # -- forward ---------------------------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[1:] != (self.lag, self.d_input):
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(
                f"SpaceTime: input must be (B, lag={self.lag}, d_input={self.d_input}), got {got} (with ssm-train's "
                "Forecasting task set task.pad_horizon=false: SpaceTime forecasts from the lag window alone)"
            )
        mean = x.mean(1, keepdim=True) if self.center else torch.zeros_like(x[:, :1])  # (B, 1, d_input)
        h = self.encode(x - mean)  # (B, lag, H)
        want_aux = self.training and (self.w1 > 0 or self.w2 > 0)
        out = self.decoder(h, self.horizon, open_loop=want_aux)
        forecast = self.head(out.forecast)  # (B, horizon, d_output)
        if self.center:
            forecast = forecast + mean
        self._aux = self._auxiliary(x, h, mean, out) if want_aux else None
        return forecast

    def _auxiliary(self, x, h, mean, out) -> torch.Tensor:
        t0 = max(0, min(self.d_state - 1, self.lag - 2))
        if self.lag - 1 - t0 < 1:
            return torch.zeros((), device=x.device)
        aux = x.new_zeros(())
        if self.w1 > 0:
            y_open = self.head(out.open_loop[:, t0:-1]) + (mean if self.center else 0)  # predicts x[t+1]
            aux = aux + self.w1 * _rmse(y_open, x[:, t0 + 1 :])
        if self.w2 > 0:
            aux = aux + self.w2 * _rmse(out.next_input[:, t0:-1], h[:, t0 + 1 :])
        return aux
