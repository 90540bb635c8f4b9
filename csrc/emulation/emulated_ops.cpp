// The CUDA ops' kernels and host code, run on the CPU through the CUDA emulation (cuda_shim.h),
// registered as torch.ops.ssm_emu.* for the tests and `python -m ssm.ops.emulate --check`.
//
// The kernel headers and the host templates (csrc/cuda/*_kernels.cuh, *_host.h) are included
// unchanged; only the launcher differs from the CUDA library's: EmulatedLaunch runs the kernel
// through ssm_emu::launch with the geometry the shared host code computed, and max_grid can be
// lowered so that the grid-stride loops wrap. Test infrastructure: never used to serve an op.
#include "cuda_shim.h"  // first: defines __global__, threadIdx, ... for the kernel headers

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <tuple>
#include <utility>
#include <vector>

#include "../checks.h"
#include "../cuda/cauchy_host.h"
#include "../cuda/vandermonde_host.h"

namespace ssm_emu {
namespace {

struct EmulatedLaunch {
  int64_t max_grid;
  bool reverse;  // run the ready threads in reverse order (a second interleaving)

  template <typename... P, typename... A>
  void operator()(void (*kernel)(P...), const ssm::cuda::Geometry& g, A&&... args) const {
    const std::function<void()> body = [&] { kernel(args...); };
    launch(dim3(g.grid), dim3(g.block_x, g.block_y), body, reverse);
  }
};

EmulatedLaunch launcher(int64_t max_grid, int64_t schedule) {
  TORCH_CHECK(max_grid >= 1, "ssm_emu: `max_grid` must be >= 1, got ", max_grid);
  TORCH_CHECK(schedule == 0 || schedule == 1,
              "ssm_emu: `schedule` must be 0 (thread order) or 1 (reversed), got ", schedule);
  return EmulatedLaunch{max_grid, schedule == 1};
}

void check_cpu(const at::Tensor& t, const char* op) {
  TORCH_CHECK(t.device().is_cpu(), "ssm_emu: ", op, " emulates the CUDA kernel on CPU tensors, got ",
              t.device());
}

// Runtime errors of the emulation (deadlock, unsupported mask) become Python RuntimeErrors.
template <typename F>
auto guarded(F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const std::runtime_error& e) {
    TORCH_CHECK(false, e.what());
  }
}

at::Tensor cauchy(const at::Tensor& v, const at::Tensor& z, const at::Tensor& w, int64_t max_grid,
                  int64_t schedule) {
  ssm::check_cauchy(v, z, w);
  check_cpu(v, "cauchy");
  const auto launch = launcher(max_grid, schedule);
  return guarded([&] {
    return ssm::cuda::cauchy_forward(v.contiguous(), z.contiguous(), w.contiguous(), launch);
  });
}

std::tuple<at::Tensor, at::Tensor> cauchy_backward(const at::Tensor& grad, const at::Tensor& v,
                                                   const at::Tensor& z, const at::Tensor& w,
                                                   int64_t max_grid, int64_t schedule) {
  ssm::check_cauchy(v, z, w);
  TORCH_CHECK(grad.dim() == 2 && grad.size(0) == v.size(0) && grad.size(1) == z.size(0),
              "ssm_emu: `grad` must be (rows, L) = (", v.size(0), ", ", z.size(0), "), got ",
              grad.sizes());
  ssm::check_same(grad, "grad", v, "v");
  check_cpu(v, "cauchy_backward");
  const auto launch = launcher(max_grid, schedule);
  return guarded([&] {
    return ssm::cuda::cauchy_backward(grad.contiguous(), v.contiguous(), z.contiguous(),
                                      w.contiguous(), launch);
  });
}

at::Tensor vandermonde(const at::Tensor& v, const at::Tensor& x, int64_t L, int64_t max_grid,
                       int64_t schedule) {
  ssm::check_vandermonde(v, x, L);
  check_cpu(v, "vandermonde");
  const auto launch = launcher(max_grid, schedule);
  return guarded([&] { return ssm::cuda::vandermonde_forward(v.contiguous(), x.contiguous(), L, launch); });
}

std::tuple<at::Tensor, at::Tensor> vandermonde_sums(const at::Tensor& u, const at::Tensor& x,
                                                    bool weighted, int64_t max_grid,
                                                    int64_t schedule) {
  ssm::check_vandermonde_sums(u, x);
  check_cpu(x, "vandermonde_sums");
  const auto launch = launcher(max_grid, schedule);
  return guarded([&] {
    return ssm::cuda::vandermonde_sums(u.contiguous(), x.contiguous(), weighted, launch);
  });
}

// The shared launch geometry, so tests can see that a shape makes the grid-stride loops wrap.
// kind: "fwd" (per-l kernels) or "sums" (partial-sum kernels). Returns [grid, block_x, block_y,
// tasks].
std::vector<int64_t> geometry(c10::string_view kind, int64_t R, int64_t N, int64_t L,
                              int64_t max_grid) {
  ssm::cuda::Geometry g{};
  if (kind == "fwd") {
    g = ssm::cuda::fwd_geometry(R, L, max_grid);
  } else {
    TORCH_CHECK(kind == "sums", "ssm_emu: `kind` must be 'fwd' or 'sums', got ", kind);
    g = ssm::cuda::sums_geometry(R, N, L, max_grid);
  }
  return {g.grid, g.block_x, g.block_y, g.tasks};
}

// A probe of the emulated shuffles: one warp, lane i contributes i; returns what each lane got.
// kind: 0 __shfl_sync, 1 __shfl_up_sync, 2 __shfl_down_sync, 3 __shfl_xor_sync.
__global__ void shuffle_probe_kernel(int kind, int arg, int width, int64_t* out) {
  const int lane = static_cast<int>(threadIdx.x);
  int got = 0;
  switch (kind) {
    case 0: got = __shfl_sync(0xffffffffu, lane, arg, width); break;
    case 1: got = __shfl_up_sync(0xffffffffu, lane, static_cast<unsigned>(arg), width); break;
    case 2: got = __shfl_down_sync(0xffffffffu, lane, static_cast<unsigned>(arg), width); break;
    default: got = __shfl_xor_sync(0xffffffffu, lane, arg, width); break;
  }
  out[lane] = got;
}

at::Tensor shuffle_probe(int64_t kind, int64_t arg, int64_t width) {
  TORCH_CHECK(kind >= 0 && kind <= 3, "ssm_emu: `kind` must be 0..3, got ", kind);
  auto out = at::empty({ssm::cuda::kWarp}, at::TensorOptions().dtype(at::kLong));
  int64_t* p = out.mutable_data_ptr<int64_t>();
  const std::function<void()> body = [&] {
    shuffle_probe_kernel(static_cast<int>(kind), static_cast<int>(arg), static_cast<int>(width), p);
  };
  guarded([&] {
    launch(dim3(1), dim3(ssm::cuda::kWarp), body);
    return 0;
  });
  return out;
}

// A probe of the emulated barrier: thread t writes s[t], then reads its neighbour's s[t + 1].
// With the barrier every read sees the write (out[t] = (t + 1) % n + 1); without it the reads
// come first (out = 0). Thread `exit_early` returns before the barrier: a deadlock.
__global__ void barrier_probe_kernel(bool sync, int exit_early, int64_t* out) {
  __shared__ int64_t s[1024];
  const int t = static_cast<int>(threadIdx.x), n = static_cast<int>(blockDim.x);
  if (t == exit_early) return;
  s[t] = t + 1;
  if (sync) __syncthreads();
  out[t] = s[(t + 1) % n];
  if (sync) __syncthreads();
  s[t] = 0;  // leave the block's shared memory as it was found, for the next probe
}

at::Tensor barrier_probe(int64_t threads, bool sync, int64_t exit_early) {
  TORCH_CHECK(threads >= 1 && threads <= 1024, "ssm_emu: `threads` must be in 1..1024, got ", threads);
  auto out = at::zeros({threads}, at::TensorOptions().dtype(at::kLong));
  int64_t* p = out.mutable_data_ptr<int64_t>();
  const std::function<void()> body = [&] { barrier_probe_kernel(sync, static_cast<int>(exit_early), p); };
  guarded([&] {
    launch(dim3(1), dim3(static_cast<unsigned>(threads)), body);
    return 0;
  });
  return out;
}

}  // namespace

TORCH_LIBRARY(ssm_emu, m) {
  m.def("cauchy(Tensor v, Tensor z, Tensor w, int max_grid, int schedule) -> Tensor", &cauchy);
  m.def("cauchy_backward(Tensor grad, Tensor v, Tensor z, Tensor w, int max_grid, int schedule)"
        " -> (Tensor, Tensor)",
        &cauchy_backward);
  m.def("vandermonde(Tensor v, Tensor x, int L, int max_grid, int schedule) -> Tensor",
        &vandermonde);
  m.def("vandermonde_sums(Tensor u, Tensor x, bool weighted, int max_grid, int schedule)"
        " -> (Tensor, Tensor)",
        &vandermonde_sums);
  m.def("geometry(str kind, int R, int N, int L, int max_grid) -> int[]", &geometry);
  m.def("shuffle_probe(int kind, int arg, int width) -> Tensor", &shuffle_probe);
  m.def("barrier_probe(int threads, bool sync, int exit_early) -> Tensor", &barrier_probe);
}

}  // namespace ssm_emu
