// The GPU launcher for the op templates of cauchy_host.h / vandermonde_host.h: a <<<>>> launch on
// the current stream with the geometry the host code computed, then the launch error check.
#pragma once

#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>

#include <utility>

#include "launch.cuh"

namespace ssm {
namespace cuda {

struct CudaLaunch {
  int64_t max_grid = kMaxGrid;

  template <typename... P, typename... A>
  void operator()(void (*kernel)(P...), const Geometry& g, A&&... args) const {
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    kernel<<<g.grid, dim3(g.block_x, g.block_y), 0, stream>>>(std::forward<A>(args)...);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
};

}  // namespace cuda
}  // namespace ssm
