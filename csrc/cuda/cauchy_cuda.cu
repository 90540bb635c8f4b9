// CUDA Cauchy ops (forward and backward): input checks, device guard, registration.
// The kernels are in cauchy_kernels.cuh, the host logic (allocation, geometry, reduction of the
// backward's partial sums) in cauchy_host.h, shared with the CPU emulation (csrc/emulation).
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <tuple>

#include "../checks.h"
#include "cauchy_host.h"
#include "cuda_launcher.cuh"

namespace ssm {
namespace {

at::Tensor cauchy_cuda(const at::Tensor& v_, const at::Tensor& z_, const at::Tensor& w_) {
  check_cauchy(v_, z_, w_);
  TORCH_CHECK(v_.is_cuda(), "ssm: cauchy (CUDA) needs CUDA tensors, got ", v_.device());
  c10::cuda::CUDAGuard device_guard(v_.device());
  return cuda::cauchy_forward(v_.contiguous(), z_.contiguous(), w_.contiguous(), cuda::CudaLaunch{});
}

std::tuple<at::Tensor, at::Tensor> cauchy_backward_cuda(const at::Tensor& grad_,
                                                        const at::Tensor& v_,
                                                        const at::Tensor& z_,
                                                        const at::Tensor& w_) {
  check_cauchy(v_, z_, w_);
  TORCH_CHECK(grad_.dim() == 2 && grad_.size(0) == v_.size(0) && grad_.size(1) == z_.size(0),
              "ssm: `grad` must be (rows, L) = (", v_.size(0), ", ", z_.size(0), "), got ",
              grad_.sizes());
  check_same(grad_, "grad", v_, "v");
  TORCH_CHECK(v_.is_cuda(), "ssm: cauchy_backward (CUDA) needs CUDA tensors, got ", v_.device());
  c10::cuda::CUDAGuard device_guard(v_.device());
  return cuda::cauchy_backward(grad_.contiguous(), v_.contiguous(), z_.contiguous(),
                               w_.contiguous(), cuda::CudaLaunch{});
}

}  // namespace

TORCH_LIBRARY_IMPL(ssm, CUDA, m) {
  m.impl("cauchy", &cauchy_cuda);
  m.impl("cauchy_backward", &cauchy_backward_cuda);
}

}  // namespace ssm
