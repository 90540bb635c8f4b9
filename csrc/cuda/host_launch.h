// What the host side of the CUDA ops needs from a "launcher", and small tensor helpers.
//
// The host logic of each op (cauchy_host.h, vandermonde_host.h) is written once, as a template
// over a Launch object:
//   launch.max_grid                      cap on gridDim.x handed to the geometry functions;
//   launch(kernel, geometry, args...)    run `kernel` over geometry.grid blocks of
//                                        (geometry.block_x, geometry.block_y) threads.
// The CUDA library's launcher (*_cuda.cu) uses <<<>>> on the current stream; the CPU emulation
// (csrc/emulation) runs the same kernel text block by block on the host. Both therefore share
// the allocation, the empty-size edges, the geometry and the host-side reduction.
// Only ATen's device-independent headers: this compiles under nvcc and the host compiler alike.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/view_as_complex.h>

namespace ssm {
namespace cuda {

template <typename T>
const T* const_ptr(const at::Tensor& t) {
  return reinterpret_cast<const T*>(t.const_data_ptr());
}

template <typename T>
T* mutable_ptr(at::Tensor& t) {
  return reinterpret_cast<T*>(t.mutable_data_ptr());
}

inline at::ScalarType real_type_of(const at::Tensor& t) {
  return t.scalar_type() == at::kComplexFloat ? at::kFloat : at::kDouble;
}

// (R, N, NQ) real -> the complex (R, N) tensor made of components [first, first + 2).
inline at::Tensor complex_pair(const at::Tensor& sums, int64_t first) {
  return at::view_as_complex(sums.narrow(2, first, 2).contiguous()).contiguous();
}

}  // namespace cuda
}  // namespace ssm
