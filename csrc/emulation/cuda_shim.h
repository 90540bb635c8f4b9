// A CPU emulation of CUDA execution, enough to run the UNCHANGED kernel headers of csrc/cuda
// (cauchy_kernels.cuh, vandermonde_kernels.cuh, launch.cuh) with the host C++ compiler.
//
// Execution model (what makes a missing barrier or a wrong shuffle give a wrong result):
//  - blocks run one after another; the threads of one block run concurrently as fibers
//    (ucontext: makecontext/swapcontext), one fiber per CUDA thread, on the calling OS thread;
//  - a fiber runs until it reaches __syncthreads() or a warp shuffle, then the next ready fiber
//    runs (in thread order, or reversed order: EmulatedLaunch::reverse). Switching only at the
//    synchronisation points is deterministic: the same launch gives the same result every time;
//  - __syncthreads() is a real barrier over all threads of the block: nobody passes it before
//    everybody arrived. A thread that exits while others wait, or a barrier reached by only part
//    of the block, is reported as a deadlock (undefined behaviour on a GPU);
//  - __shared__ variables exist once per block (blocks run in sequence, so one static instance
//    serves each block in turn);
//  - warp shuffles are an exchange among the 32 lanes of a warp (warp = 32 consecutive linear
//    thread ids), every lane waiting for all lanes to contribute, with CUDA's rules for lanes
//    whose source is out of range (the caller's own value comes back, see shuffle_source);
//  - math functions are the host's <cmath> ones (the accurate, non-intrinsic CUDA functions are
//    within a few ulps of them).
// Limits: only full-warp masks (0xffffffff) are supported; a partial mask is reported as an error.
// Shared memory keeps what the previous block left in it (on a GPU its contents are undefined),
// so a read of shared memory before any write can go unnoticed when the stale values happen to be
// the right ones; the tests' shapes stage different data in consecutive tiles and tasks. Threads
// switch only at barriers and shuffles, so a race between two plain memory accesses with no
// barrier between them is not interleaved here (compute-sanitizer's racecheck, in gpucheck,
// covers that on a GPU).
// Errors inside a fiber cannot unwind across swapcontext: the fiber records the message and stops;
// launch() then throws it as a std::runtime_error.
#pragma once

#include <ucontext.h>

#include <cmath>
#include <math.h>  // expf, sincosf, sincos, rint, fma at global scope, as CUDA device code has them
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

// ---- the CUDA language surface the kernels use ---------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __launch_bounds__(...)
// One instance per block: blocks run in sequence on one OS thread. thread_local so that two OS
// threads emulating at the same time never share a block's memory.
#define __shared__ static thread_local
// __restrict__ is a GNU C++ keyword already.

struct uint3 {
  unsigned x = 0, y = 0, z = 0;
};
struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

inline thread_local uint3 threadIdx;
inline thread_local uint3 blockIdx;
inline thread_local dim3 blockDim;
inline thread_local dim3 gridDim;

namespace ssm_emu {

constexpr int kWarpSize = 32;
constexpr size_t kStackBytes = 256 * 1024;

enum class State { Ready, AtBarrier, AtShuffle, Done, Failed };

struct Fiber {
  ucontext_t ctx;
  std::unique_ptr<char[]> stack;
  uint3 tid;
  State state = State::Ready;
  unsigned shuffles = 0;  // this lane's shuffle count: picks one of two slot buffers
};

struct Warp {
  int size = 0;     // lanes present (the last warp of a block may be partial)
  int arrived = 0;  // lanes waiting in the current shuffle
  // Double-buffered: a lane can be at most one shuffle ahead of the slowest lane of its warp
  // (the next shuffle waits for everybody), so shuffle k may use buffer k % 2.
  uint64_t slots[2][kWarpSize] = {};
};

// One launch: the fibers of the block being run, its barriers, its warps.
struct Block {
  std::vector<Fiber> fibers;
  std::vector<Warp> warps;
  ucontext_t scheduler;
  int current = -1;
  int arrived = 0;  // threads waiting at __syncthreads
  const std::function<void()>* body = nullptr;
  std::string error;
};

inline thread_local Block* g_block = nullptr;

inline Fiber& self() { return g_block->fibers[g_block->current]; }

inline int linear_id(const uint3& t) {
  return static_cast<int>(t.x + blockDim.x * (t.y + blockDim.y * t.z));
}

// Stop the current fiber with an error; the launch throws it once the scheduler regains control.
[[noreturn]] inline void fail(const std::string& what) {
  Block& b = *g_block;
  if (b.error.empty()) {
    const uint3 t = self().tid;
    b.error = "CUDA emulation: block (" + std::to_string(blockIdx.x) + "," +
              std::to_string(blockIdx.y) + "," + std::to_string(blockIdx.z) + ") thread (" +
              std::to_string(t.x) + "," + std::to_string(t.y) + "," + std::to_string(t.z) +
              "): " + what;
  }
  self().state = State::Failed;
  swapcontext(&self().ctx, &b.scheduler);
  __builtin_unreachable();  // a failed fiber is never resumed
}

inline void yield_to_scheduler() {
  Block& b = *g_block;
  swapcontext(&b.fibers[b.current].ctx, &b.scheduler);
}

inline void syncthreads() {
  Block& b = *g_block;
  self().state = State::AtBarrier;
  if (++b.arrived == static_cast<int>(b.fibers.size())) {
    b.arrived = 0;
    for (Fiber& f : b.fibers) f.state = State::Ready;  // everybody is at the barrier
  }
  yield_to_scheduler();
}

// Source lane of a shuffle, or -1 when CUDA hands back the caller's own value.
// kind: 0 = __shfl_sync (src lane), 1 = __shfl_up_sync, 2 = __shfl_down_sync, 3 = __shfl_xor_sync.
inline int shuffle_source(int kind, int lane, int arg, int width) {
  const int base = (lane / width) * width;  // first lane of the caller's width-segment
  switch (kind) {
    case 0:
      return base + ((arg % width) + width) % width;
    case 1:
      return lane - base >= arg ? lane - arg : -1;
    case 2:
      return lane - base + arg < width ? lane + arg : -1;
    default: {
      const int src = lane ^ arg;
      return src < base + width ? src : -1;  // later segments are out of reach, earlier ones not
    }
  }
}

template <typename T>
T shuffle(int kind, unsigned mask, T var, int arg, int width) {
  static_assert(sizeof(T) <= sizeof(uint64_t) && std::is_trivially_copyable<T>::value,
                "CUDA emulation: shuffles of types up to 8 bytes only");
  Block& b = *g_block;
  Fiber& me = self();
  const int id = linear_id(me.tid);
  const int lane = id % kWarpSize;
  Warp& w = b.warps[id / kWarpSize];
  if (mask != 0xffffffffu) fail("only full-warp shuffle masks (0xffffffff) are emulated");
  if (width <= 0 || width > kWarpSize || (width & (width - 1)) != 0)
    fail("shuffle width must be a power of two <= 32, got " + std::to_string(width));
  if (w.size != kWarpSize) fail("a full mask needs a full warp; this block has a partial warp");
  const int buf = me.shuffles++ % 2;
  std::memcpy(&w.slots[buf][lane], &var, sizeof(T));
  me.state = State::AtShuffle;
  if (++w.arrived == w.size) {  // the whole warp has contributed: release it
    w.arrived = 0;
    const int first = (id / kWarpSize) * kWarpSize;
    for (int k = 0; k < w.size; ++k) b.fibers[first + k].state = State::Ready;
  }
  yield_to_scheduler();
  const int src = shuffle_source(kind, lane, arg, width);
  T out = var;
  if (src >= 0) std::memcpy(&out, &w.slots[buf][src], sizeof(T));
  return out;
}

inline void fiber_entry() {
  (*g_block->body)();
  self().state = State::Done;  // uc_link returns to the scheduler
}

// Run body() as every thread of every block of a (grid, block) launch.
inline void launch(dim3 grid, dim3 block, const std::function<void()>& body, bool reverse = false) {
  const size_t nthreads = size_t(block.x) * block.y * block.z;
  if (nthreads == 0 || nthreads > 1024) {
    throw std::runtime_error("CUDA emulation: block of " + std::to_string(nthreads) +
                             " threads (1..1024 allowed)");
  }
  if (g_block != nullptr) throw std::runtime_error("CUDA emulation: nested launch");
  Block b;
  b.body = &body;
  b.fibers.resize(nthreads);
  for (Fiber& f : b.fibers) f.stack.reset(new char[kStackBytes]);
  b.warps.resize((nthreads + kWarpSize - 1) / kWarpSize);
  for (size_t w = 0; w < b.warps.size(); ++w) {
    b.warps[w].size = static_cast<int>(std::min<size_t>(kWarpSize, nthreads - w * kWarpSize));
  }
  gridDim = grid;
  blockDim = block;
  g_block = &b;
  struct Reset {
    ~Reset() { g_block = nullptr; }
  } reset;
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        blockIdx = uint3{bx, by, bz};
        b.arrived = 0;
        for (Warp& w : b.warps) w.arrived = 0;
        for (size_t i = 0; i < nthreads; ++i) {
          Fiber& f = b.fibers[i];
          const unsigned id = static_cast<unsigned>(i);
          f.tid = uint3{id % block.x, (id / block.x) % block.y, id / (block.x * block.y)};
          f.state = State::Ready;
          f.shuffles = 0;
          getcontext(&f.ctx);
          f.ctx.uc_stack.ss_sp = f.stack.get();
          f.ctx.uc_stack.ss_size = kStackBytes;
          f.ctx.uc_link = &b.scheduler;
          makecontext(&f.ctx, &fiber_entry, 0);
        }
        for (;;) {
          bool ran = false, finished = true;
          for (size_t k = 0; k < nthreads; ++k) {
            const int i = static_cast<int>(reverse ? nthreads - 1 - k : k);
            if (b.fibers[i].state == State::Ready) {
              b.current = i;
              threadIdx = b.fibers[i].tid;
              swapcontext(&b.scheduler, &b.fibers[i].ctx);
              ran = true;
            }
            if (!b.error.empty()) throw std::runtime_error(b.error);
            if (b.fibers[i].state != State::Done) finished = false;
          }
          if (finished) break;
          if (!ran) {
            int waiting_barrier = 0, waiting_shuffle = 0, done = 0;
            for (const Fiber& f : b.fibers) {
              waiting_barrier += f.state == State::AtBarrier;
              waiting_shuffle += f.state == State::AtShuffle;
              done += f.state == State::Done;
            }
            throw std::runtime_error(
                "CUDA emulation: deadlock in block " + std::to_string(bx) + ": " +
                std::to_string(waiting_barrier) + " threads wait at __syncthreads, " +
                std::to_string(waiting_shuffle) + " at a warp shuffle, " + std::to_string(done) +
                " have exited (a barrier or shuffle not reached by every thread)");
          }
        }
      }
}

}  // namespace ssm_emu

inline void __syncthreads() { ssm_emu::syncthreads(); }

template <typename T>
T __shfl_sync(unsigned mask, T var, int src_lane, int width = ssm_emu::kWarpSize) {
  return ssm_emu::shuffle(0, mask, var, src_lane, width);
}
template <typename T>
T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = ssm_emu::kWarpSize) {
  return ssm_emu::shuffle(1, mask, var, static_cast<int>(delta), width);
}
template <typename T>
T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = ssm_emu::kWarpSize) {
  return ssm_emu::shuffle(2, mask, var, static_cast<int>(delta), width);
}
template <typename T>
T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = ssm_emu::kWarpSize) {
  return ssm_emu::shuffle(3, mask, var, lane_mask, width);
}
