// Fused CPU Vandermonde kernels for diagonal SSMs (S4D, S4-PTD).
//
//   vandermonde:       out[r, l] = 2 Re sum_n v[r,n] exp(x[r,n] l),          l = 0..L-1
//   vandermonde_sums:  S[r, n]   = sum_l u[r,l] exp(x[r,n] l)
//                      T[r, n]   = sum_l u[r,l] l exp(x[r,n] l)   (optional)
//
// exp(x l) is never evaluated term by term: l is split into blocks of kBlock, l = l0 + j, and
// exp(x l) = exp(x l0) * P[j] with the table P[j] = exp(x j) built once per pole in double
// precision. The block anchors exp(x l0) advance by a double-precision multiply and are
// recomputed directly every kReanchor blocks, so rounding cannot build up along long sequences.
// The inner loops are then two fused multiply-adds per term over contiguous arrays.
// Extra memory is O(threads * N * kBlock), independent of L.
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <complex>
#include <tuple>
#include <vector>

#include "../checks.h"
#include "../parallel.h"

namespace ssm {
namespace {

constexpr int64_t kBlock = 256;
constexpr int64_t kReanchor = 16;

using cd = std::complex<double>;

inline cd cexp_at(double xr, double xi, double l) {
  const double mag = std::exp(xr * l);
  return {mag * std::cos(xi * l), mag * std::sin(xi * l)};
}

// table[j] = exp(x j), j < kBlock, stored split into re/im arrays of T.
template <typename T>
void power_table(double xr, double xi, T* re, T* im) {
  const cd e = cexp_at(xr, xi, 1.0);
  cd p = 1.0;
  for (int64_t j = 0; j < kBlock; ++j) {
    re[j] = static_cast<T>(p.real());
    im[j] = static_cast<T>(p.imag());
    p *= e;
  }
}

template <typename T>
void vandermonde_fwd_kernel(const T* v, const T* x, T* out, int64_t R, int64_t N, int64_t L) {
  const int64_t nblk = (L + kBlock - 1) / kBlock;
  // A task is one row's chunk of kReanchor blocks, so that small R still fills every thread. The
  // chunks start on re-anchoring points, so every anchor is the same whichever thread computes
  // it, and the output does not depend on the number of threads.
  constexpr int64_t chunk = kReanchor;  // blocks per task
  const int64_t chunks_per_row = (nblk + chunk - 1) / chunk;
  ssm::parallel_for(0, R * chunks_per_row, grain_for(N * chunk * kBlock), [&](int64_t begin, int64_t end) {
    std::vector<T> tre(N * kBlock), tim(N * kBlock);
    std::vector<cd> anchor(N), step(N);
    alignas(64) T acc[kBlock];
    int64_t table_row = -1;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t r = task / chunks_per_row;
      const int64_t b_begin = (task % chunks_per_row) * chunk;
      const int64_t b_end = std::min(nblk, b_begin + chunk);
      const T* vrow = v + 2 * r * N;
      const T* xrow = x + 2 * r * N;
      if (table_row != r) {
        for (int64_t n = 0; n < N; ++n) {
          power_table<T>(xrow[2 * n], xrow[2 * n + 1], &tre[n * kBlock], &tim[n * kBlock]);
          step[n] = cexp_at(xrow[2 * n], xrow[2 * n + 1], double(kBlock));
        }
        table_row = r;
      }
      for (int64_t b = b_begin; b < b_end; ++b) {
        const int64_t l0 = b * kBlock;
        const int64_t len = std::min(kBlock, L - l0);
        std::fill(acc, acc + len, T(0));
        for (int64_t n = 0; n < N; ++n) {
          if (b == b_begin) {  // a re-anchoring point (b_begin is a multiple of kReanchor)
            anchor[n] = cexp_at(xrow[2 * n], xrow[2 * n + 1], double(l0));
          } else {
            anchor[n] *= step[n];
          }
          const cd s = cd(vrow[2 * n], vrow[2 * n + 1]) * anchor[n];
          const T sr = static_cast<T>(s.real()), si = static_cast<T>(s.imag());
          const T* pr = &tre[n * kBlock];
          const T* pi = &tim[n * kBlock];
#pragma omp simd
          for (int64_t j = 0; j < len; ++j) acc[j] += sr * pr[j] - si * pi[j];
        }
        T* o = out + r * L + l0;
        for (int64_t j = 0; j < len; ++j) o[j] = T(2) * acc[j];
      }
    }
  });
}

template <typename T>
void vandermonde_sums_kernel(const T* u, const T* x, T* S, T* Tw, int64_t R, int64_t N,
                             int64_t L) {
  const int64_t nblk = (L + kBlock - 1) / kBlock;
  const bool weighted = Tw != nullptr;
  ssm::parallel_for(0, R * N, grain_for(L), [&](int64_t begin, int64_t end) {
    alignas(64) T pre[kBlock], pim[kBlock], jpre[kBlock], jpim[kBlock];
    for (int64_t task = begin; task < end; ++task) {
      const int64_t r = task / N;
      const double xr = x[2 * task], xi = x[2 * task + 1];
      power_table<T>(xr, xi, pre, pim);
      for (int64_t j = 0; j < kBlock; ++j) {
        jpre[j] = T(j) * pre[j];
        jpim[j] = T(j) * pim[j];
      }
      const cd step = cexp_at(xr, xi, double(kBlock));
      const T* urow = u + r * L;
      cd s_tot = 0.0, t_tot = 0.0, anchor = 1.0;
      for (int64_t b = 0; b < nblk; ++b) {
        const int64_t l0 = b * kBlock;
        const int64_t len = std::min(kBlock, L - l0);
        anchor = (b % kReanchor == 0) ? cexp_at(xr, xi, double(l0)) : anchor * step;
        const T* ub = urow + l0;
        T ar = 0, ai = 0, br = 0, bi = 0;
        if (weighted) {
#pragma omp simd reduction(+ : ar, ai, br, bi)
          for (int64_t j = 0; j < len; ++j) {
            ar += ub[j] * pre[j];
            ai += ub[j] * pim[j];
            br += ub[j] * jpre[j];
            bi += ub[j] * jpim[j];
          }
        } else {
#pragma omp simd reduction(+ : ar, ai)
          for (int64_t j = 0; j < len; ++j) {
            ar += ub[j] * pre[j];
            ai += ub[j] * pim[j];
          }
        }
        const cd inner(ar, ai);
        s_tot += anchor * inner;
        // sum_j u (l0 + j) x^(l0+j) = x^l0 (l0 * inner + sum_j u j x^j)
        if (weighted) t_tot += anchor * (double(l0) * inner + cd(br, bi));
      }
      S[2 * task] = static_cast<T>(s_tot.real());
      S[2 * task + 1] = static_cast<T>(s_tot.imag());
      if (weighted) {
        Tw[2 * task] = static_cast<T>(t_tot.real());
        Tw[2 * task + 1] = static_cast<T>(t_tot.imag());
      }
    }
  });
}

at::ScalarType real_type_of(const at::Tensor& t) {
  return t.scalar_type() == at::kComplexFloat ? at::kFloat : at::kDouble;
}

at::Tensor vandermonde_cpu(const at::Tensor& v_, const at::Tensor& x_, int64_t L) {
  check_vandermonde(v_, x_, L);
  const auto v = v_.contiguous(), x = x_.contiguous();
  const int64_t R = v.size(0), N = v.size(1);
  auto out = at::empty({R, L}, v.options().dtype(real_type_of(v)));
  if (R == 0 || L == 0) return out;
  if (v.scalar_type() == at::kComplexFloat) {
    vandermonde_fwd_kernel<float>(reinterpret_cast<const float*>(v.const_data_ptr()),
                                  reinterpret_cast<const float*>(x.const_data_ptr()),
                                  out.mutable_data_ptr<float>(), R, N, L);
  } else {
    vandermonde_fwd_kernel<double>(reinterpret_cast<const double*>(v.const_data_ptr()),
                                   reinterpret_cast<const double*>(x.const_data_ptr()),
                                   out.mutable_data_ptr<double>(), R, N, L);
  }
  return out;
}

std::tuple<at::Tensor, at::Tensor> vandermonde_sums_cpu(const at::Tensor& u_,
                                                        const at::Tensor& x_, bool weighted) {
  check_vandermonde_sums(u_, x_);
  const auto u = u_.contiguous(), x = x_.contiguous();
  const int64_t R = x.size(0), N = x.size(1), L = u.size(1);
  auto S = at::empty({R, N}, x.options());
  auto Tw = weighted ? at::empty({R, N}, x.options()) : at::empty({0}, x.options());
  if (R == 0 || N == 0) return {S, Tw};
  if (x.scalar_type() == at::kComplexFloat) {
    vandermonde_sums_kernel<float>(
        u.const_data_ptr<float>(), reinterpret_cast<const float*>(x.const_data_ptr()),
        reinterpret_cast<float*>(S.mutable_data_ptr()),
        weighted ? reinterpret_cast<float*>(Tw.mutable_data_ptr()) : nullptr, R, N, L);
  } else {
    vandermonde_sums_kernel<double>(
        u.const_data_ptr<double>(), reinterpret_cast<const double*>(x.const_data_ptr()),
        reinterpret_cast<double*>(S.mutable_data_ptr()),
        weighted ? reinterpret_cast<double*>(Tw.mutable_data_ptr()) : nullptr, R, N, L);
  }
  return {S, Tw};
}

}  // namespace

TORCH_LIBRARY_IMPL(ssm, CPU, m) {
  m.impl("vandermonde", &vandermonde_cpu);
  m.impl("vandermonde_sums", &vandermonde_sums_cpu);
}

}  // namespace ssm
