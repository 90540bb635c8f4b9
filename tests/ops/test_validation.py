"""Bad input: a clear ValueError/TypeError naming the argument and the expected shape/dtype/device."""

import pytest
import torch

from ssm.ops import cauchy, fftconv, scan, vandermonde, vandermonde_transpose

C64, C128 = torch.complex64, torch.complex128


def c(*shape, dtype=C64):
    return torch.randn(*shape, dtype=dtype)


@pytest.mark.parametrize(
    "args,kwargs,error,pattern",
    [
        ((c(2, 3), c(5), c(2, 4)), {}, ValueError, r"`v` and `w` must have the same state size N.*\(2, 3\) and \(2, 4\)"),
        ((c(2, 3), c(5), c(2, 3, dtype=C128)), {}, TypeError, r"share one dtype.*`w`: torch.complex128"),
        ((torch.randn(2, 3), c(5), c(2, 3)), {}, TypeError, r"`v` must be complex64 or complex128, got torch.float32"),
        ((c(2, 3), c(5, 1), c(2, 3)), {}, ValueError, r"`z` must be 1-D \(L,\), got shape \(5, 1\)"),
        ((c(2, 0), c(5), c(2, 0)), {}, ValueError, r"`v` is empty"),
        ((c(2, 3), c(0), c(2, 3)), {}, ValueError, r"`z` is empty"),
        ((c(2, 3), c(5), c(3, 3)), {}, ValueError, r"batch dims .* must broadcast"),
        (([1, 2], c(5), c(2, 3)), {}, TypeError, r"`v` must be a torch.Tensor, got list"),
        ((c(2, 3), c(5), c(2, 3)), {"backend": "gpu"}, ValueError, r"backend must be one of auto, cuda, cpp, keops, torch; got 'gpu'"),
    ],
)
def test_cauchy_errors(args, kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        cauchy(*args, **kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_wrong_device_names_the_device():
    meta = torch.empty(2, 3, dtype=C64, device="meta")
    with pytest.raises(ValueError, match=r"inputs must be on one device, got `v`: cpu, `z`: cpu, `w`: meta"):
        cauchy(c(2, 3), c(5), meta)


@pytest.mark.parametrize(
    "args,error,pattern",
    [
        ((c(2, 3), c(2, 4), 5), ValueError, r"same state size N"),
        ((c(2, 3), c(2, 3), 0), ValueError, r"`L` must be >= 1, got 0"),
        ((c(2, 3), c(2, 3), 5.0), TypeError, r"`L` must be an int, got float"),
        ((c(2, 3), c(2, 3, dtype=C128), 5), TypeError, r"share one dtype"),
    ],
)
def test_vandermonde_errors(args, error, pattern):
    with pytest.raises(error, match=pattern):
        vandermonde(*args)


def test_vandermonde_transpose_errors():
    with pytest.raises(TypeError, match=r"`u` must be torch.float32 to match `x` \(torch.complex64\), got torch.float64"):
        vandermonde_transpose(torch.randn(2, 5, dtype=torch.float64), c(2, 3), c(2, 3))
    with pytest.raises(TypeError, match=r"`u` must be a floating-point tensor"):
        vandermonde_transpose(torch.ones(2, 5, dtype=torch.int64), c(2, 3), c(2, 3))


@pytest.mark.parametrize(
    "args,kwargs,error,pattern",
    [
        ((torch.randn(3, 5), torch.randn(3, 5)), {}, ValueError, r"`u` must be \(B, H, L\), got shape \(3, 5\)"),
        ((torch.randn(2, 3, 5), torch.randn(4, 5)), {}, ValueError, r"`k` must be \(H, Lk\) with H=3"),
        ((torch.randn(2, 3, 5), torch.randn(3, 5)), {"bidirectional": True}, ValueError, r"`k` must be \(2, H, Lk\) with H=3 \(bidirectional=True\)"),
        ((torch.randn(2, 3, 5), torch.randn(3, 5), torch.randn(4)), {}, ValueError, r"`D` must be \(H,\) = \(3,\), got shape \(4,\)"),
        ((torch.ones(2, 3, 5, dtype=torch.int32), torch.randn(3, 5)), {}, TypeError, r"`u` must be a floating-point tensor, got torch.int32"),
    ],
)
def test_fftconv_errors(args, kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        fftconv(*args, **kwargs)


def test_scan_errors():
    with pytest.raises(ValueError, match=r"`b` must be \(\.\.\., L, N\), got shape \(4,\)"):
        scan(torch.rand(4), torch.rand(4))
    with pytest.raises(ValueError, match=r"`a` \(5, 3\) must broadcast against `b` \(4, 3\)"):
        scan(torch.rand(5, 3), torch.rand(4, 3))
    with pytest.raises(ValueError, match=r"`x0` must broadcast to \(\.\.\., N\)"):
        scan(torch.rand(4, 3), torch.rand(4, 3), torch.rand(5))
    with pytest.raises(TypeError, match=r"`a` must be a floating-point or complex tensor, got torch.int64"):
        scan(torch.ones(4, 3, dtype=torch.int64), torch.rand(4, 3))
