// Schemas of the ssm:: custom ops. Compiled into the CPU library, which is always loaded first;
// the CUDA library only adds TORCH_LIBRARY_IMPL(ssm, CUDA, ...) kernels for the same schemas.
//
// All ops work on flattened, broadcast inputs; ssm/ops/*.py does the reshaping, validation,
// autograd and fake-tensor registration.
#include <torch/library.h>

#include "parallel.h"

namespace {

// Distinct pool threads that ran loop bodies of the compiled CPU ops since the last call; the
// record is kept while `enable` is true (csrc/parallel.h). For tests of the thread scaling.
int64_t thread_probe(bool enable) {
  const uint64_t seen = ssm::probe::seen().exchange(0);
  ssm::probe::enabled().store(enable);
  return __builtin_popcountll(seen);
}

}  // namespace

TORCH_LIBRARY(ssm, m) {
  // out[r, l] = sum_n v[r,n] / (z[l] - w[r,n]) + conj(v[r,n]) / (z[l] - conj(w[r,n]))
  m.def("cauchy(Tensor v, Tensor z, Tensor w) -> Tensor");
  // Vector-Jacobian product of cauchy for v and w (z gets no gradient).
  m.def("cauchy_backward(Tensor grad, Tensor v, Tensor z, Tensor w) -> (Tensor, Tensor)");
  // out[r, l] = 2 Re sum_n v[r,n] exp(x[r,n] * l),  l = 0..L-1   (real output)
  m.def("vandermonde(Tensor v, Tensor x, int L) -> Tensor");
  // S[r, n] = sum_l u[r,l] exp(x[r,n] l);  T[r, n] = sum_l u[r,l] l exp(x[r,n] l) if weighted,
  // else T is empty. The building block of the Vandermonde backward and transpose.
  m.def("vandermonde_sums(Tensor u, Tensor x, bool weighted) -> (Tensor, Tensor)");
  // The depth-sequential part of one SaShiMi tier's generation step (CPU only; see
  // csrc/cpu/residual_chain_cpu.cpp). kinds[j]: 0 feed-forward, 1 per-channel SSM, 2 S5;
  // activation: 0 identity, 1 gelu, 2 silu, 3 relu, 4 tanh; final: 0 none, 1 linear, 2 GLU.
  // Writes each SSM layer's input into us[i]; returns the new x.
  m.def("residual_chain(Tensor x, Tensor[] params, Tensor[] ys, Tensor(a!)[] us, int[] kinds, float[] eps, "
        "int activation, int final, Tensor(b!)[] collect, Tensor[] add) -> Tensor");
  // The chunked state bank of per-channel SSM layers at generation time (CPU only; layouts in
  // csrc/cpu/siso_bank_cpu.cpp). begin: Acc[j, q] = Re(F_q E^j X) for the chunk's steps;
  // end(j): push step j's psi into the later steps, or (j = T-1) advance X by the whole chunk.
  m.def("siso_bank_begin(Tensor FT, Tensor X, Tensor(a!) Acc) -> ()");
  m.def("siso_bank_end(Tensor(a!) X, Tensor(b!) Acc, Tensor Kd, Tensor U, Tensor ETr, Tensor ETi, int j) -> ()");
  // Whether at::parallel_for in this library really forks (compiled with OpenMP, csrc/parallel.h).
  m.def("built_with_openmp() -> bool", [] { return ssm::kBuiltWithOpenMP; });
  m.def("thread_probe(bool enable) -> int", &thread_probe);
}
