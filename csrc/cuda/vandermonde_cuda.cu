// CUDA Vandermonde ops (vandermonde, vandermonde_sums): input checks, device guard, registration.
// The kernels are in vandermonde_kernels.cuh, the host logic (allocation, geometry, reduction of
// the partial sums) in vandermonde_host.h, shared with the CPU emulation (csrc/emulation).
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <tuple>

#include "../checks.h"
#include "cuda_launcher.cuh"
#include "vandermonde_host.h"

namespace ssm {
namespace {

at::Tensor vandermonde_cuda(const at::Tensor& v_, const at::Tensor& x_, int64_t L) {
  check_vandermonde(v_, x_, L);
  TORCH_CHECK(v_.is_cuda(), "ssm: vandermonde (CUDA) needs CUDA tensors, got ", v_.device());
  c10::cuda::CUDAGuard device_guard(v_.device());
  return cuda::vandermonde_forward(v_.contiguous(), x_.contiguous(), L, cuda::CudaLaunch{});
}

std::tuple<at::Tensor, at::Tensor> vandermonde_sums_cuda(const at::Tensor& u_,
                                                         const at::Tensor& x_, bool weighted) {
  check_vandermonde_sums(u_, x_);
  TORCH_CHECK(x_.is_cuda(), "ssm: vandermonde_sums (CUDA) needs CUDA tensors, got ",
              x_.device());
  c10::cuda::CUDAGuard device_guard(x_.device());
  return cuda::vandermonde_sums(u_.contiguous(), x_.contiguous(), weighted, cuda::CudaLaunch{});
}

}  // namespace

TORCH_LIBRARY_IMPL(ssm, CUDA, m) {
  m.impl("vandermonde", &vandermonde_cuda);
  m.impl("vandermonde_sums", &vandermonde_sums_cuda);
}

}  // namespace ssm
