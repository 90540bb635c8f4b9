"""The schemas of the compiled ops ``torch.ops.ssm.*``, defined at import.

A leaf module (it imports torch only): every Python wrapper that registers a fake (meta) kernel
or an autograd formula for an op imports it first, so those registrations exist whether or not
the compiled library is loaded, and however it is loaded (our loader, ``torch.ops.load_library``,
an installed ``ssm._C``). The libraries in ``csrc/`` hold only the implementations
(``TORCH_LIBRARY_IMPL(ssm, CPU|CUDA, ...)``), as pytorch/extension-cpp does; a library loaded
before this module is imported is fine too (the dispatcher keeps kernels for an op defined later).

All ops work on flattened, broadcast inputs; the wrappers in ``ssm/ops`` reshape and validate.
"""

from __future__ import annotations

import torch

# The two diagnostics of the CPU library's build (built_with_openmp, thread_probe) are defined in
# C++ with their implementation (csrc/registration.cpp): they describe the library itself.
_LIB = torch.library.Library("ssm", "FRAGMENT")

SCHEMAS = {
    # out[r, l] = sum_n v[r,n] / (z[l] - w[r,n]) + conj(v[r,n]) / (z[l] - conj(w[r,n]))
    "cauchy": "cauchy(Tensor v, Tensor z, Tensor w) -> Tensor",
    # Vector-Jacobian product of cauchy for v and w (z gets no gradient).
    "cauchy_backward": "cauchy_backward(Tensor grad, Tensor v, Tensor z, Tensor w) -> (Tensor, Tensor)",
    # out[r, l] = 2 Re sum_n v[r,n] exp(x[r,n] * l),  l = 0..L-1   (real output)
    "vandermonde": "vandermonde(Tensor v, Tensor x, int L) -> Tensor",
    # S[r, n] = sum_l u[r,l] exp(x[r,n] l);  T[r, n] = sum_l u[r,l] l exp(x[r,n] l) if weighted,
    # else T is empty. The building block of the Vandermonde backward and transpose.
    "vandermonde_sums": "vandermonde_sums(Tensor u, Tensor x, bool weighted) -> (Tensor, Tensor)",
    # The depth-sequential part of one SaShiMi tier's generation step (CPU only; see
    # csrc/cpu/residual_chain_cpu.cpp and ssm.ops.step). Writes each SSM layer's input into us[i].
    "residual_chain": ("residual_chain(Tensor x, Tensor[] params, Tensor[] ys, Tensor(a!)[] us, str[] kinds, "
                       "float[] eps, str activation, str final, Tensor(b!)[] collect, Tensor[] add) -> Tensor"),
    # The chunked state bank of per-channel SSM layers at generation time (CPU only; layouts in
    # csrc/cpu/siso_bank_cpu.cpp). begin: Acc[j, q] = Re(F_q E^j X) for the chunk's steps;
    # end(j): push step j's psi into the later steps, or (j = T-1) advance X by the whole chunk.
    "siso_bank_begin": "siso_bank_begin(Tensor FT, Tensor X, Tensor(a!) Acc) -> ()",
    "siso_bank_end": "siso_bank_end(Tensor(a!) X, Tensor(b!) Acc, Tensor Kd, Tensor U, Tensor ETr, Tensor ETi, int j) -> ()",
}

for _schema in SCHEMAS.values():
    _LIB.define(_schema)
