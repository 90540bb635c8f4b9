// Fused CPU Cauchy kernel with conjugate-pair symmetry, forward and backward.
//
//   out[r, l] = sum_n v[r,n] / (z[l] - w[r,n]) + conj(v[r,n]) / (z[l] - conj(w[r,n]))
//
// Work is split into (row, block of l) tasks for the forward and (row, block of n) tasks for the
// backward; each task keeps a small accumulator, so extra memory is O(threads * block), never the
// (rows, N, L) tensor that the naive PyTorch path materialises. The two fractions are kept
// separate (two divisions per pair) because the combined single-fraction form loses accuracy.
// Complex numbers are split into real/imaginary arrays so the l-loop vectorises.
#include <ATen/ops/empty.h>
#include <ATen/ops/imag.h>
#include <ATen/ops/real.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>
#include <vector>

#include "../checks.h"
#include "../parallel.h"

namespace ssm {
namespace {

constexpr int64_t kBlockL = 256;  // forward: l values per task (accumulators stay in L1)
constexpr int64_t kBlockN = 4;    // backward: poles per task

template <typename T>
void cauchy_fwd_kernel(const T* v, const T* zr, const T* zi, const T* w, T* out, int64_t R,
                       int64_t N, int64_t L) {
  const int64_t nblk = (L + kBlockL - 1) / kBlockL;
  ssm::parallel_for(0, R * nblk, grain_for(N * kBlockL), [&](int64_t begin, int64_t end) {
    alignas(64) T accr[kBlockL];
    alignas(64) T acci[kBlockL];
    for (int64_t task = begin; task < end; ++task) {
      const int64_t r = task / nblk;
      const int64_t l0 = (task % nblk) * kBlockL;
      const int64_t len = std::min(kBlockL, L - l0);
      const T* zrb = zr + l0;
      const T* zib = zi + l0;
      std::fill(accr, accr + len, T(0));
      std::fill(acci, acci + len, T(0));
      const T* vrow = v + 2 * r * N;
      const T* wrow = w + 2 * r * N;
      for (int64_t n = 0; n < N; ++n) {
        const T vr = vrow[2 * n], vi = vrow[2 * n + 1];
        const T wr = wrow[2 * n], wi = wrow[2 * n + 1];
#pragma omp simd
        for (int64_t j = 0; j < len; ++j) {
          const T dr = zrb[j] - wr;
          const T d1i = zib[j] - wi;  // z - w
          const T d2i = zib[j] + wi;  // z - conj(w)
          const T inv1 = T(1) / (dr * dr + d1i * d1i);
          const T inv2 = T(1) / (dr * dr + d2i * d2i);
          // v / (z - w) = v conj(d1) / |d1|^2 ;  conj(v) / (z - conj w) = conj(v) conj(d2) / |d2|^2
          accr[j] += (vr * dr + vi * d1i) * inv1 + (vr * dr - vi * d2i) * inv2;
          acci[j] += (vi * dr - vr * d1i) * inv1 - (vi * dr + vr * d2i) * inv2;
        }
      }
      T* o = out + 2 * (r * L + l0);
      for (int64_t j = 0; j < len; ++j) {
        o[2 * j] = accr[j];
        o[2 * j + 1] = acci[j];
      }
    }
  });
}

// The four sums of one pole over l: s = sum_l p + q, t = sum_l p / a + q / b, with
// p = g / a, q = conj(g) / b, a = conj(z) - conj(w), b = z - conj(w). A function of its own, its
// pointers __restrict__ parameters: written inline in the parallel_for lambda, GCC 12 with
// -fopenmp compiled this loop into code 6x slower than without OpenMP (measured, single thread).
template <typename T>
void pole_sums(const T* __restrict__ gr, const T* __restrict__ gi, const T* __restrict__ zr,
               const T* __restrict__ zi, int64_t L, T wr, T wi, T out[4]) {
  T sr = 0, si = 0, tr = 0, ti = 0;
#pragma omp simd reduction(+ : sr, si, tr, ti)
  for (int64_t l = 0; l < L; ++l) {
    const T dr = zr[l] - wr;
    const T d1i = zi[l] - wi;  // a = conj(z) - conj(w) = dr - i d1i
    const T d2i = zi[l] + wi;  // b = z - conj(w)       = dr + i d2i
    const T inv1 = T(1) / (dr * dr + d1i * d1i);
    const T inv2 = T(1) / (dr * dr + d2i * d2i);
    // p = g / a = g (dr + i d1i) / |a|^2
    const T pr = (gr[l] * dr - gi[l] * d1i) * inv1;
    const T pi = (gr[l] * d1i + gi[l] * dr) * inv1;
    // q = conj(g) / b = (gr - i gi)(dr - i d2i) / |b|^2
    const T qr = (gr[l] * dr - gi[l] * d2i) * inv2;
    const T qi = -(gr[l] * d2i + gi[l] * dr) * inv2;
    sr += pr + qr;
    si += pi + qi;
    // p / a and q / b
    tr += (pr * dr - pi * d1i) * inv1 + (qr * dr + qi * d2i) * inv2;
    ti += (pr * d1i + pi * dr) * inv1 + (qi * dr - qr * d2i) * inv2;
  }
  out[0] = sr;
  out[1] = si;
  out[2] = tr;
  out[3] = ti;
}

// grad_v[r,n] = sum_l g/(conj z - conj w) + conj(g)/(z - conj w)
// grad_w[r,n] = conj(v) * sum_l g/(conj z - conj w)^2 + conj(g)/(z - conj w)^2
// (PyTorch's convention: g is dL/d(conj out), the result is dL/d(conj input).)
template <typename T>
void cauchy_bwd_kernel(const T* g, const T* v, const T* zr, const T* zi, const T* w, T* gv, T* gw,
                       int64_t R, int64_t N, int64_t L) {
  const int64_t nblk = (N + kBlockN - 1) / kBlockN;
  ssm::parallel_for(0, R * nblk, grain_for(kBlockN * L), [&](int64_t begin, int64_t end) {
    std::vector<T> gr(L), gi(L);
    int64_t cached_row = -1;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t r = task / nblk;
      const int64_t n_begin = (task % nblk) * kBlockN;
      const int64_t n_end = std::min(N, n_begin + kBlockN);
      if (r != cached_row) {  // de-interleave this row's gradient once per row
        const T* grow = g + 2 * r * L;
        for (int64_t l = 0; l < L; ++l) {
          gr[l] = grow[2 * l];
          gi[l] = grow[2 * l + 1];
        }
        cached_row = r;
      }
      for (int64_t n = n_begin; n < n_end; ++n) {
        const int64_t k = 2 * (r * N + n);
        T st[4];  // s (real, imag), t (real, imag)
        pole_sums<T>(gr.data(), gi.data(), zr, zi, L, w[k], w[k + 1], st);
        gv[k] = st[0];
        gv[k + 1] = st[1];
        const T vr = v[k], vi = v[k + 1];
        // conj(v) * t
        gw[k] = vr * st[2] + vi * st[3];
        gw[k + 1] = vr * st[3] - vi * st[2];
      }
    }
  });
}

std::tuple<at::Tensor, at::Tensor> split_z(const at::Tensor& z) {
  return {at::real(z).contiguous(), at::imag(z).contiguous()};
}

at::Tensor cauchy_cpu(const at::Tensor& v_, const at::Tensor& z_, const at::Tensor& w_) {
  check_cauchy(v_, z_, w_);
  const auto v = v_.contiguous(), z = z_.contiguous(), w = w_.contiguous();
  const int64_t R = v.size(0), N = v.size(1), L = z.size(0);
  auto out = at::empty({R, L}, v.options());
  if (R == 0 || L == 0) return out;
  auto [zr, zi] = split_z(z);
  if (v.scalar_type() == at::kComplexFloat) {
    cauchy_fwd_kernel<float>(reinterpret_cast<const float*>(v.const_data_ptr()),
                             zr.const_data_ptr<float>(), zi.const_data_ptr<float>(),
                             reinterpret_cast<const float*>(w.const_data_ptr()),
                             reinterpret_cast<float*>(out.mutable_data_ptr()), R, N, L);
  } else {
    cauchy_fwd_kernel<double>(reinterpret_cast<const double*>(v.const_data_ptr()),
                              zr.const_data_ptr<double>(), zi.const_data_ptr<double>(),
                              reinterpret_cast<const double*>(w.const_data_ptr()),
                              reinterpret_cast<double*>(out.mutable_data_ptr()), R, N, L);
  }
  return out;
}

std::tuple<at::Tensor, at::Tensor> cauchy_backward_cpu(const at::Tensor& grad_,
                                                       const at::Tensor& v_,
                                                       const at::Tensor& z_,
                                                       const at::Tensor& w_) {
  check_cauchy(v_, z_, w_);
  TORCH_CHECK(grad_.dim() == 2 && grad_.size(0) == v_.size(0) && grad_.size(1) == z_.size(0),
              "ssm: `grad` must be (rows, L) = (", v_.size(0), ", ", z_.size(0), "), got ",
              grad_.sizes());
  check_same(grad_, "grad", v_, "v");
  const auto g = grad_.contiguous(), v = v_.contiguous(), z = z_.contiguous(),
             w = w_.contiguous();
  const int64_t R = v.size(0), N = v.size(1), L = z.size(0);
  auto gv = at::empty({R, N}, v.options());
  auto gw = at::empty({R, N}, v.options());
  if (R == 0 || N == 0) return {gv, gw};
  auto [zr, zi] = split_z(z);
  if (v.scalar_type() == at::kComplexFloat) {
    cauchy_bwd_kernel<float>(
        reinterpret_cast<const float*>(g.const_data_ptr()),
        reinterpret_cast<const float*>(v.const_data_ptr()), zr.const_data_ptr<float>(),
        zi.const_data_ptr<float>(), reinterpret_cast<const float*>(w.const_data_ptr()),
        reinterpret_cast<float*>(gv.mutable_data_ptr()),
        reinterpret_cast<float*>(gw.mutable_data_ptr()), R, N, L);
  } else {
    cauchy_bwd_kernel<double>(
        reinterpret_cast<const double*>(g.const_data_ptr()),
        reinterpret_cast<const double*>(v.const_data_ptr()), zr.const_data_ptr<double>(),
        zi.const_data_ptr<double>(), reinterpret_cast<const double*>(w.const_data_ptr()),
        reinterpret_cast<double*>(gv.mutable_data_ptr()),
        reinterpret_cast<double*>(gw.mutable_data_ptr()), R, N, L);
  }
  return {gv, gw};
}

}  // namespace

TORCH_LIBRARY_IMPL(ssm, CPU, m) {
  m.impl("cauchy", &cauchy_cpu);
  m.impl("cauchy_backward", &cauchy_backward_cpu);
}

}  // namespace ssm
