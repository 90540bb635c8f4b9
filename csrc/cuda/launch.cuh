// Launch shapes and warp helpers shared by the CUDA kernels of csrc/cuda.
//
// Two kernel shapes are used throughout:
//  - "per-l" kernels (forward ops): a 1-D grid over (row, block of kFwdThreads values of l);
//    each thread owns one l, the row's poles are staged through shared memory kFwdTile at a time;
//  - "partial-sum" kernels (reductions over l): a 1-D grid over (row, group of kPoles poles,
//    chunk of kChunk values of l), block (kWarp, kPoles); a warp reduces one pole's chunk and
//    lane 0 writes it to a workspace that the host sums over chunks (deterministic, no atomics).
// All grids are grid-stride loops over 64-bit task indices, capped at kMaxGrid blocks.
#pragma once

#include <algorithm>
#include <cstdint>

namespace ssm {
namespace cuda {

constexpr int kWarp = 32;
constexpr int64_t kMaxGrid = 2147483647;  // gridDim.x limit; larger task counts loop

constexpr int kFwdThreads = 256;  // per-l kernels: one l per thread
constexpr int kFwdTile = 128;     // poles staged in shared memory at a time

constexpr int kPoles = 8;                            // partial-sum kernels: poles per block (blockDim.y)
constexpr int kItems = 64;                           // l values per thread per chunk
constexpr int64_t kChunk = int64_t(kWarp) * kItems;  // l values per chunk (2048)

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

inline unsigned grid_for(int64_t tasks) {
  return static_cast<unsigned>(std::min<int64_t>(std::max<int64_t>(tasks, 1), kMaxGrid));
}

template <typename T>
__device__ __forceinline__ T warp_sum(T x) {
  // Full-warp reduction; lane 0 ends with the total. Every lane of the warp must call it.
#pragma unroll
  for (int off = kWarp / 2; off > 0; off >>= 1) x += __shfl_down_sync(0xffffffffu, x, off);
  return x;
}

}  // namespace cuda
}  // namespace ssm
