// The CPU library's own diagnostics. The schemas of the numerical ops are defined in Python
// (ssm/ops/_schemas.py), next to their fake kernels and autograd formulas; the .cpp/.cu files hold
// only their implementations (TORCH_LIBRARY_IMPL(ssm, CPU|CUDA, ...)).
#include <torch/library.h>

#include "parallel.h"

namespace {

// Distinct pool threads that ran loop bodies of the compiled CPU ops since the last call; the
// record is kept while `enable` is true (csrc/parallel.h). For tests of the thread scaling.
int64_t thread_probe(bool enable) {
  const uint64_t seen = ssm::probe::seen().exchange(0);
  ssm::probe::enabled().store(enable);
  return __builtin_popcountll(seen);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(ssm, m) {
  // Whether at::parallel_for in this library really forks (compiled with OpenMP, csrc/parallel.h).
  m.def("built_with_openmp() -> bool", [] { return ssm::kBuiltWithOpenMP; });
  m.def("thread_probe(bool enable) -> int", &thread_probe);
}
