// Launch shapes, launch geometry and warp helpers shared by the CUDA kernels of csrc/cuda.
//
// Two kernel shapes are used throughout:
//  - "per-l" kernels (forward ops): a 1-D grid over (row, block of kFwdThreads values of l);
//    each thread owns one l, the row's poles are staged through shared memory kFwdTile at a time;
//  - "partial-sum" kernels (reductions over l): a 1-D grid over (row, group of kPoles poles,
//    chunk of kChunk values of l), block (kWarp, kPoles); a warp reduces one pole's chunk and
//    lane 0 writes it to a workspace that the host sums over chunks (deterministic, no atomics).
// All grids are grid-stride loops over 64-bit task indices, capped at max_grid blocks.
//
// The geometry functions (fwd_geometry, sums_geometry) are the one definition of a kernel's
// grid, block and task decomposition: the real launchers (*_cuda.cu) and the CPU emulation
// (csrc/emulation) both take their launch from them. The emulation lowers max_grid so that the
// grid-stride loops wrap; on a GPU it is kMaxGrid.
//
// This header is plain C++ apart from warp_sum's __device__ marker: no CUDA or ATen headers.
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

inline unsigned grid_for(int64_t tasks, int64_t max_grid = kMaxGrid) {
  return static_cast<unsigned>(std::min<int64_t>(std::max<int64_t>(tasks, 1), max_grid));
}

// A 1-D grid of (block_x, block_y) blocks looping over `tasks` tasks.
struct Geometry {
  unsigned grid;
  unsigned block_x;
  unsigned block_y;
  int64_t tasks;
};

// Per-l kernels over (R, L): nblk blocks of kFwdThreads values of l per row.
struct FwdGeometry : Geometry {
  int64_t nblk;
};

inline FwdGeometry fwd_geometry(int64_t R, int64_t L, int64_t max_grid = kMaxGrid) {
  FwdGeometry g{};
  g.nblk = ceil_div(L, kFwdThreads);
  g.tasks = R * g.nblk;
  g.grid = grid_for(g.tasks, max_grid);
  g.block_x = kFwdThreads;
  g.block_y = 1;
  return g;
}

// Partial-sum kernels over (R, N poles, L): ngroups groups of kPoles poles, nchunks chunks of l.
// nchunks is 0 when L == 0 (no task: the host's sum over the empty chunk axis gives 0).
struct SumsGeometry : Geometry {
  int64_t ngroups;
  int64_t nchunks;
};

inline SumsGeometry sums_geometry(int64_t R, int64_t N, int64_t L, int64_t max_grid = kMaxGrid) {
  SumsGeometry g{};
  g.ngroups = ceil_div(N, kPoles);
  g.nchunks = ceil_div(L, kChunk);
  g.tasks = R * g.ngroups * g.nchunks;
  g.grid = grid_for(g.tasks, max_grid);
  g.block_x = kWarp;
  g.block_y = kPoles;
  return g;
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
