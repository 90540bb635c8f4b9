// Input checks shared by the CPU and CUDA implementations of the ssm:: ops.
// The Python wrappers in ssm/ops validate first and raise ValueError/TypeError with the
// argument's name; these checks are the safety net for direct torch.ops.ssm.* calls.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

namespace ssm {

inline void check_complex_2d(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.dim() == 2, "ssm: `", name, "` must be 2-D (rows, N), got shape ", t.sizes());
  TORCH_CHECK(t.scalar_type() == at::kComplexFloat || t.scalar_type() == at::kComplexDouble,
              "ssm: `", name, "` must be complex64 or complex128, got ", t.scalar_type());
}

inline void check_same(const at::Tensor& a, const char* an, const at::Tensor& b, const char* bn) {
  TORCH_CHECK(a.scalar_type() == b.scalar_type(), "ssm: `", an, "` and `", bn,
              "` must share a dtype, got ", a.scalar_type(), " and ", b.scalar_type());
  TORCH_CHECK(a.device() == b.device(), "ssm: `", an, "` and `", bn,
              "` must be on one device, got ", a.device(), " and ", b.device());
}

// v, w: (R, N) complex; z: (L,) complex.
inline void check_cauchy(const at::Tensor& v, const at::Tensor& z, const at::Tensor& w) {
  check_complex_2d(v, "v");
  check_complex_2d(w, "w");
  TORCH_CHECK(v.sizes() == w.sizes(), "ssm: `v` and `w` must have equal shapes, got ", v.sizes(),
              " and ", w.sizes());
  TORCH_CHECK(z.dim() == 1, "ssm: `z` must be 1-D (L,), got shape ", z.sizes());
  check_same(v, "v", w, "w");
  check_same(v, "v", z, "z");
}

// v, x: (R, N) complex.
inline void check_vandermonde(const at::Tensor& v, const at::Tensor& x, int64_t L) {
  check_complex_2d(v, "v");
  check_complex_2d(x, "x");
  TORCH_CHECK(v.sizes() == x.sizes(), "ssm: `v` and `x` must have equal shapes, got ", v.sizes(),
              " and ", x.sizes());
  check_same(v, "v", x, "x");
  TORCH_CHECK(L >= 0, "ssm: `L` must be non-negative, got ", L);
}

// u: (R, L) real of x's precision; x: (R, N) complex.
inline void check_vandermonde_sums(const at::Tensor& u, const at::Tensor& x) {
  check_complex_2d(x, "x");
  TORCH_CHECK(u.dim() == 2 && u.size(0) == x.size(0), "ssm: `u` must be (rows, L) with rows=",
              x.size(0), ", got shape ", u.sizes());
  const auto want = x.scalar_type() == at::kComplexFloat ? at::kFloat : at::kDouble;
  TORCH_CHECK(u.scalar_type() == want, "ssm: `u` must be ", want, " to match `x`, got ",
              u.scalar_type());
  TORCH_CHECK(u.device() == x.device(), "ssm: `u` and `x` must be on one device, got ",
              u.device(), " and ", x.device());
}

}  // namespace ssm
