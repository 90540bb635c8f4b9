// Host side of the CUDA Vandermonde ops, generic over the launcher (see host_launch.h).
// Inputs arrive checked (checks.h), contiguous and on the launcher's device.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/sum.h>

#include <tuple>

#include "host_launch.h"
#include "vandermonde_kernels.cuh"

namespace ssm {
namespace cuda {

// v, x: (R, N) complex -> (R, L) real.
template <class Launch>
at::Tensor vandermonde_forward(const at::Tensor& v, const at::Tensor& x, int64_t L,
                               const Launch& launch) {
  const int64_t R = v.size(0), N = v.size(1);
  auto out = at::empty({R, L}, v.options().dtype(real_type_of(v)));
  if (R == 0 || L == 0) return out;
  // N == 0 needs no special case: the kernel writes zeros.
  const FwdGeometry g = fwd_geometry(R, L, launch.max_grid);
  if (v.scalar_type() == at::kComplexFloat) {
    launch(vandermonde_fwd_kernel<float>, g, const_ptr<float>(v), const_ptr<float>(x),
           mutable_ptr<float>(out), R, N, L, g.nblk);
  } else {
    launch(vandermonde_fwd_kernel<double>, g, const_ptr<double>(v), const_ptr<double>(x),
           mutable_ptr<double>(out), R, N, L, g.nblk);
  }
  return out;
}

template <typename T, bool WEIGHTED, class Launch>
void launch_sums(const at::Tensor& u, const at::Tensor& x, at::Tensor& partial,
                 const SumsGeometry& g, int64_t R, int64_t N, int64_t L, const Launch& launch) {
  launch(vandermonde_sums_kernel<T, WEIGHTED>, g, const_ptr<T>(u), const_ptr<T>(x),
         mutable_ptr<T>(partial), R, N, L, g.ngroups, g.nchunks);
}

// u: (R, L) real; x: (R, N) complex -> S (R, N) complex and, if weighted, T (R, N) (else (0,)).
template <class Launch>
std::tuple<at::Tensor, at::Tensor> vandermonde_sums(const at::Tensor& u, const at::Tensor& x,
                                                    bool weighted, const Launch& launch) {
  const int64_t R = x.size(0), N = x.size(1), L = u.size(1);
  if (R == 0 || N == 0) {
    return {at::empty({R, N}, x.options()),
            weighted ? at::empty({R, N}, x.options()) : at::empty({0}, x.options())};
  }
  const SumsGeometry g = sums_geometry(R, N, L, launch.max_grid);
  const int64_t nq = weighted ? 4 : 2;
  // nchunks == 0 when L == 0: the sums below are then 0.
  auto partial = at::empty({R, N, g.nchunks, nq}, x.options().dtype(real_type_of(x)));
  if (g.tasks > 0) {
    const bool f32 = x.scalar_type() == at::kComplexFloat;
    if (f32 && weighted) {
      launch_sums<float, true>(u, x, partial, g, R, N, L, launch);
    } else if (f32) {
      launch_sums<float, false>(u, x, partial, g, R, N, L, launch);
    } else if (weighted) {
      launch_sums<double, true>(u, x, partial, g, R, N, L, launch);
    } else {
      launch_sums<double, false>(u, x, partial, g, R, N, L, launch);
    }
  }
  const auto sums = partial.sum(2);  // (R, N, nq), deterministic reduction over the chunks
  auto S = complex_pair(sums, 0);
  auto Tw = weighted ? complex_pair(sums, 2) : at::empty({0}, x.options());
  return {S, Tw};
}

}  // namespace cuda
}  // namespace ssm
