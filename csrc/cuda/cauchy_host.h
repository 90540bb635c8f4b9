// Host side of the CUDA Cauchy ops, generic over the launcher (see host_launch.h).
// Inputs arrive checked (checks.h), contiguous and on the launcher's device.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mul.h>
#include <ATen/ops/sum.h>

#include <tuple>

#include "cauchy_kernels.cuh"
#include "host_launch.h"

namespace ssm {
namespace cuda {

// v, w: (R, N) complex; z: (L,) complex -> (R, L) complex.
template <class Launch>
at::Tensor cauchy_forward(const at::Tensor& v, const at::Tensor& z, const at::Tensor& w,
                          const Launch& launch) {
  const int64_t R = v.size(0), N = v.size(1), L = z.size(0);
  auto out = at::empty({R, L}, v.options());
  if (R == 0 || L == 0) return out;
  // N == 0 needs no special case: the kernel writes zeros.
  const FwdGeometry g = fwd_geometry(R, L, launch.max_grid);
  if (v.scalar_type() == at::kComplexFloat) {
    launch(cauchy_fwd_kernel<float>, g, const_ptr<float>(v), const_ptr<float>(z),
           const_ptr<float>(w), mutable_ptr<float>(out), R, N, L, g.nblk);
  } else {
    launch(cauchy_fwd_kernel<double>, g, const_ptr<double>(v), const_ptr<double>(z),
           const_ptr<double>(w), mutable_ptr<double>(out), R, N, L, g.nblk);
  }
  return out;
}

// grad_v[r,n] = sum_l g/(conj z - conj w) + conj(g)/(z - conj w)
// grad_w[r,n] = conj(v) * sum_l g/(conj z - conj w)^2 + conj(g)/(z - conj w)^2
// (PyTorch's convention: g is dL/d(conj out), the result is dL/d(conj input).)
template <class Launch>
std::tuple<at::Tensor, at::Tensor> cauchy_backward(const at::Tensor& grad, const at::Tensor& v,
                                                   const at::Tensor& z, const at::Tensor& w,
                                                   const Launch& launch) {
  const int64_t R = v.size(0), N = v.size(1), L = z.size(0);
  if (R == 0 || N == 0) {
    return {at::empty({R, N}, v.options()), at::empty({R, N}, v.options())};
  }
  const SumsGeometry g = sums_geometry(R, N, L, launch.max_grid);
  // nchunks == 0 when L == 0: the sums below are then 0.
  auto partial = at::empty({R, N, g.nchunks, 4}, v.options().dtype(real_type_of(v)));
  if (g.tasks > 0) {
    if (v.scalar_type() == at::kComplexFloat) {
      launch(cauchy_bwd_kernel<float>, g, const_ptr<float>(grad), const_ptr<float>(z),
             const_ptr<float>(w), mutable_ptr<float>(partial), R, N, L, g.ngroups, g.nchunks);
    } else {
      launch(cauchy_bwd_kernel<double>, g, const_ptr<double>(grad), const_ptr<double>(z),
             const_ptr<double>(w), mutable_ptr<double>(partial), R, N, L, g.ngroups, g.nchunks);
    }
  }
  const auto sums = partial.sum(2);  // (R, N, 4), deterministic reduction over the chunks
  auto gv = complex_pair(sums, 0);
  auto gw = at::mul(v.conj(), complex_pair(sums, 2)).resolve_conj().contiguous();
  return {gv, gw};
}

}  // namespace cuda
}  // namespace ssm
