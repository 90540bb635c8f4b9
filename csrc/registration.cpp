// Schemas of the ssm:: custom ops. Compiled into the CPU library, which is always loaded first;
// the CUDA library only adds TORCH_LIBRARY_IMPL(ssm, CUDA, ...) kernels for the same schemas.
//
// All ops work on flattened, broadcast inputs; ssm/ops/*.py does the reshaping, validation,
// autograd and fake-tensor registration.
#include <torch/library.h>

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
}
