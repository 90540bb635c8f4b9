// Fused CPU kernels for the chunked state bank of per-channel SSM layers at generation time
// (ssm::siso_bank_begin, ssm::siso_bank_end; the Python reference is _SisoBank in
// ssm/models/generation.py, and the math is in its docstring).
//
// Layouts (K*H = R rows, one per layer and channel; n complex modes; m functionals; T steps per
// chunk; B batch), all contiguous:
//   X   (R, 2n, B)      the state at the chunk start: rows [0, n) real parts, [n, 2n) imaginary
//   FT  (R, T*m, 2n)    row j*m+q: the real functional Re(F_q E^j .) in the [Re; Im] layout
//   U   (R, 2n, T*m)    column s*m+p: [Re; Im] of E^(T-1-s) U_p
//   Acc (T, m, R, B)    psi of every step of the chunk (the state part, then the pushes)
//   Kd  (T-1, m, m, R)  Kd[d, p, q]: coefficient of psi_hat_s[p] in psi_{s+1+d}[q]
//   ETr, ETi (R, n)     E^T, real and imaginary parts
//
// The Python path runs these as a bmm plus a transposing copy (begin), m addcmul_ (each step)
// and a complex rotation in four elementwise passes plus a transposing copy and a baddbmm
// (chunk end). The per-row products are tiny (T*m x 2n by 2n x B), and the tables do not fit in
// cache, so here every row is done in one pass while its state block (2n x B) sits in L1: the
// bank's memory traffic drops to one read of the tables and one read and write of the state.
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "../parallel.h"
#include "small_gemm.h"

namespace ssm {
namespace {

void check_real(const at::Tensor& t, const at::Tensor& like, const char* name, int64_t dim) {
  TORCH_CHECK(t.dim() == dim, "ssm.siso_bank: `", name, "` must be ", dim, "-D, got shape ", t.sizes());
  TORCH_CHECK(t.scalar_type() == like.scalar_type() && t.device() == like.device(), "ssm.siso_bank: `", name,
              "` must be ", like.scalar_type(), " on ", like.device(), ", got ", t.scalar_type(), " on ", t.device());
  TORCH_CHECK(t.is_contiguous(), "ssm.siso_bank: `", name, "` must be contiguous");
}

// X, the state, sets the dtype and device every other argument is checked against.
void check_state(const at::Tensor& X, const char* op) {
  check_real(X, X, "X", 3);
  TORCH_CHECK(X.scalar_type() == at::kFloat || X.scalar_type() == at::kDouble, "ssm.siso_bank_", op,
              ": `X` must be float32 or float64, got ", X.scalar_type());
}

// Acc[j, q, r, :] = sum_i FT[r, j*m+q, i] X[r, i, :] for every step j of the chunk: per row r a
// (T*m x 2n) @ (2n x B) product whose output rows lie R*B apart in Acc.
template <typename T>
void begin_kernel(const T* FT, const T* X, T* Acc, int64_t R, int64_t n2, int64_t Tm, int64_t B) {
  ssm::parallel_for(0, R, grain_for(Tm * n2 * B), [&](int64_t r0, int64_t r1) {
    std::vector<T> col(n2);
    for (int64_t r = r0; r < r1; ++r)
      small_gemm<T>(FT + r * Tm * n2, n2, X + r * n2 * B, B, Acc + r * B, R * B, Tm, B, n2, false, col.data());
  });
}

// Acc[j+1+d, q, r, :] += sum_p Kd[d, p, q, r] Acc[j, p, r, :] for d < T-1-j.
template <typename T>
void push_kernel(T* Acc, const T* Kd, int64_t j, int64_t Tc, int64_t m, int64_t R, int64_t B) {
  const int64_t later = Tc - 1 - j;
  ssm::parallel_for(0, R, grain_for(later * m * m * B), [&](int64_t r0, int64_t r1) {
    for (int64_t d = 0; d < later; ++d) {
      for (int64_t q = 0; q < m; ++q) {
        T* dst = Acc + (((j + 1 + d) * m + q) * R) * B;
        for (int64_t p = 0; p < m; ++p) {
          const T* src = Acc + ((j * m + p) * R) * B;
          const T* k = Kd + ((d * m + p) * m + q) * R;
          for (int64_t r = r0; r < r1; ++r) {
            const T kr = k[r];
            T* o = dst + r * B;
            const T* s = src + r * B;
#pragma omp simd
            for (int64_t b = 0; b < B; ++b) o[b] += kr * s[b];
          }
        }
      }
    }
  });
}

// X <- E^T X + U Acc^T: per row, the rotation of the n complex modes, then the chunk's inputs.
template <typename T>
void end_kernel(T* X, const T* Acc, const T* U, const T* ETr, const T* ETi, int64_t R, int64_t n, int64_t Tm,
                int64_t B) {
  const int64_t n2 = 2 * n;
  ssm::parallel_for(0, R, grain_for(n2 * B * (Tm + 1)), [&](int64_t r0, int64_t r1) {
    std::vector<T> col(Tm);
    for (int64_t r = r0; r < r1; ++r) {
      T* Xr = X + r * n2 * B;
      const T* er = ETr + r * n;
      const T* ei = ETi + r * n;
      for (int64_t i = 0; i < n; ++i) {
        T* xre = Xr + i * B;
        T* xim = Xr + (n + i) * B;
        const T c = er[i], s = ei[i];
#pragma omp simd
        for (int64_t b = 0; b < B; ++b) {
          const T a = xre[b], bb = xim[b];
          xre[b] = c * a - s * bb;
          xim[b] = c * bb + s * a;
        }
      }
      // X_r (2n x B) += U_r (2n x T*m) @ Acc_r (T*m x B), Acc_r's rows R*B apart
      small_gemm<T>(U + r * n2 * Tm, Tm, Acc + r * B, R * B, Xr, B, n2, B, Tm, true, col.data());
    }
  });
}

void siso_bank_begin_cpu(const at::Tensor& FT, const at::Tensor& X, const at::Tensor& Acc) {
  check_state(X, "begin");
  check_real(FT, X, "FT", 3);
  check_real(Acc, X, "Acc", 4);
  const int64_t R = X.size(0), n2 = X.size(1), B = X.size(2);
  const int64_t Tc = Acc.size(0), m = Acc.size(1);
  TORCH_CHECK(FT.size(0) == R && FT.size(1) == Tc * m && FT.size(2) == n2, "ssm.siso_bank_begin: `FT` must be (",
              R, ", ", Tc * m, ", ", n2, "), got ", FT.sizes());
  TORCH_CHECK(Acc.size(2) == R && Acc.size(3) == B, "ssm.siso_bank_begin: `Acc` must be (T, m, ", R, ", ", B,
              "), got ", Acc.sizes());
  AT_DISPATCH_FLOATING_TYPES(X.scalar_type(), "siso_bank_begin_cpu", [&] {
    begin_kernel<scalar_t>(FT.data_ptr<scalar_t>(), X.data_ptr<scalar_t>(), Acc.data_ptr<scalar_t>(), R, n2,
                           Tc * m, B);
  });
}

void siso_bank_end_cpu(const at::Tensor& X, const at::Tensor& Acc, const at::Tensor& Kd, const at::Tensor& U,
                       const at::Tensor& ETr, const at::Tensor& ETi, int64_t j) {
  check_state(X, "end");
  check_real(Acc, X, "Acc", 4);
  check_real(Kd, X, "Kd", 4);
  check_real(U, X, "U", 3);
  check_real(ETr, X, "ETr", 2);
  check_real(ETi, X, "ETi", 2);
  const int64_t R = X.size(0), n2 = X.size(1), B = X.size(2), n = n2 / 2;
  const int64_t Tc = Acc.size(0), m = Acc.size(1);
  TORCH_CHECK(n2 % 2 == 0, "ssm.siso_bank_end: `X` must be (R, 2n, B), got ", X.sizes());
  TORCH_CHECK(Acc.size(2) == R && Acc.size(3) == B, "ssm.siso_bank_end: `Acc` must be (T, m, ", R, ", ", B,
              "), got ", Acc.sizes());
  TORCH_CHECK(Kd.size(0) == std::max<int64_t>(Tc - 1, 1) && Kd.size(1) == m && Kd.size(2) == m && Kd.size(3) == R,
              "ssm.siso_bank_end: `Kd` must be (", std::max<int64_t>(Tc - 1, 1), ", ", m, ", ", m, ", ", R, "), got ",
              Kd.sizes());
  TORCH_CHECK(U.size(0) == R && U.size(1) == n2 && U.size(2) == Tc * m, "ssm.siso_bank_end: `U` must be (", R, ", ",
              n2, ", ", Tc * m, "), got ", U.sizes());
  TORCH_CHECK(ETr.size(0) == R && ETr.size(1) == n && ETi.sizes() == ETr.sizes(),
              "ssm.siso_bank_end: `ETr` and `ETi` must be (", R, ", ", n, "), got ", ETr.sizes(), " and ", ETi.sizes());
  TORCH_CHECK(j >= 0 && j < Tc, "ssm.siso_bank_end: `j` must be in [0, ", Tc, "), got ", j);
  AT_DISPATCH_FLOATING_TYPES(X.scalar_type(), "siso_bank_end_cpu", [&] {
    if (j + 1 < Tc) {
      push_kernel<scalar_t>(Acc.data_ptr<scalar_t>(), Kd.data_ptr<scalar_t>(), j, Tc, m, R, B);
    } else {
      end_kernel<scalar_t>(X.data_ptr<scalar_t>(), Acc.data_ptr<scalar_t>(), U.data_ptr<scalar_t>(),
                           ETr.data_ptr<scalar_t>(), ETi.data_ptr<scalar_t>(), R, n, Tc * m, B);
    }
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(ssm, CPU, m) {
  m.impl("siso_bank_begin", &siso_bank_begin_cpu);
  m.impl("siso_bank_end", &siso_bank_end_cpu);
}

}  // namespace ssm
