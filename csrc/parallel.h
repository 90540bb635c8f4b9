// Parallel loops of the CPU kernels, on torch's own intra-op thread pool.
//
// at::parallel_for is an inline template: it only forks when the translation unit that
// instantiates it is compiled with OpenMP (ATen/ParallelOpenMP.h defines INTRA_OP_PARALLEL under
// _OPENMP; without it the loop body runs once, serially, on the calling thread). So the library is
// compiled with -fopenmp (ssm/ops/_extension.py) but not linked against an OpenMP runtime of its
// own: the GOMP_* symbols resolve to the runtime torch itself loaded (the wheel's libgomp), so the
// process has one thread pool, sized by torch.set_num_threads, and DataLoader workers (which torch
// sets to one thread) stay serial.
//
// Every compiled CPU op parallelises through ssm::parallel_for below. Tasks write disjoint
// outputs and never split a reduction across threads, so results do not depend on the number of
// threads. The grain keeps small calls serial: a chunk handed to a thread holds at least
// kMinParallelWork inner-loop terms, far more than a fork of the pool costs.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstdint>

namespace ssm {

#ifdef _OPENMP
constexpr bool kBuiltWithOpenMP = true;
#else
constexpr bool kBuiltWithOpenMP = false;
#endif

// Inner-loop terms (one Cauchy pair at one l, one Vandermonde term, ...) a thread gets at least.
constexpr int64_t kMinParallelWork = int64_t(1) << 15;

// Tasks per chunk so that a chunk does at least kMinParallelWork terms.
inline int64_t grain_for(int64_t work_per_task) {
  return std::max<int64_t>(1, kMinParallelWork / std::max<int64_t>(1, work_per_task));
}

// A test-only record of which pool threads ran loop bodies (ssm::thread_probe): one relaxed load
// per chunk while disabled.
namespace probe {
inline std::atomic<bool>& enabled() {
  static std::atomic<bool> flag{false};
  return flag;
}
inline std::atomic<uint64_t>& seen() {
  static std::atomic<uint64_t> mask{0};
  return mask;
}
inline void record() {
  if (enabled().load(std::memory_order_relaxed)) {
    seen().fetch_or(uint64_t(1) << (at::get_thread_num() & 63), std::memory_order_relaxed);
  }
}
}  // namespace probe

template <class F>
void parallel_for(int64_t begin, int64_t end, int64_t grain, const F& f) {
  at::parallel_for(begin, end, grain, [&](int64_t b, int64_t e) {
    probe::record();
    f(b, e);
  });
}

}  // namespace ssm
