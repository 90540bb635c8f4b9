// CUDA Vandermonde kernels for diagonal SSMs (S4D, S4-PTD), device code only.
//
//   vandermonde:       out[r, l] = 2 Re sum_n v[r,n] exp(x[r,n] l),          l = 0..L-1
//   vandermonde_sums:  S[r, n]   = sum_l u[r,l] exp(x[r,n] l)
//                      T[r, n]   = sum_l u[r,l] l exp(x[r,n] l)   (optional)
//
// Same mathematics as csrc/cpu/vandermonde_cpu.cpp. Every term evaluates exp(x l) directly and
// accurately (see exp_xl): the phase Im(x) l is formed and reduced modulo 2 pi in double before
// sin/cos, so large l keeps full accuracy in single precision too.
//
// vandermonde: a 1-D grid over (row, block of kFwdThreads values of l) tasks; one thread per l,
// the row's poles staged through shared memory in tiles of kFwdTile.
//
// vandermonde_sums: deterministic, no atomics. A 1-D grid over (row, group of kPoles poles,
// chunk of kChunk values of l) tasks; block (32, kPoles): threadIdx.y picks the pole,
// threadIdx.x strides over the chunk; each warp (= one pole) reduces with shuffles and lane 0
// writes partial[r, n, chunk, 0:NQ]; the host sums the chunk axis (vandermonde_host.h).
//
// All grids are grid-stride loops over 64-bit task indices, so any number of tasks works.
//
// No ATen or CUDA runtime headers: nvcc compiles this for the GPU (vandermonde_cuda.cu), the
// host compiler compiles the same text for the CPU emulation (csrc/emulation/cuda_shim.h).
#pragma once

#include <cstdint>

#include "launch.cuh"

namespace ssm {
namespace cuda {

// 2 pi split for Cody-Waite reduction: kTwoPiHi = 2 pi rounded to double, kTwoPiLo = the rest.
constexpr double kTwoPiHi = 6.283185307179586232e+00;
constexpr double kTwoPiLo = 2.449293598294706414e-16;
constexpr double kInvTwoPi = 1.591549430918953358e-01;

// Accurate (non-intrinsic) math in the precision of T.
__device__ __forceinline__ float exp_t(float a) { return expf(a); }
__device__ __forceinline__ double exp_t(double a) { return exp(a); }
__device__ __forceinline__ void sincos_t(float a, float* s, float* c) { sincosf(a, s, c); }
__device__ __forceinline__ void sincos_t(double a, double* s, double* c) { sincos(a, s, c); }

// (er, ei) = exp((xr + i xi) * l).
// The products with l are formed in double; the phase is reduced to about [-pi, pi] in double
// (k = rint(phase / 2 pi), phase - k * 2 pi with a two-part 2 pi) before sin/cos in T.
// NaN or Inf in x gives NaN/Inf out exactly as the direct formula mag * (cos + i sin) would.
template <typename T>
__device__ __forceinline__ void exp_xl(T xr, T xi, int64_t l, T& er, T& ei) {
  const double dl = static_cast<double>(l);
  const T mag = exp_t(static_cast<T>(static_cast<double>(xr) * dl));
  const double ph = static_cast<double>(xi) * dl;
  const double k = rint(ph * kInvTwoPi);
  double red = fma(-k, kTwoPiHi, ph);
  red = fma(-k, kTwoPiLo, red);
  T s, c;
  sincos_t(static_cast<T>(red), &s, &c);
  er = mag * c;
  ei = mag * s;
}

// v, x: (R, N) interleaved complex; out: (R, L) real.
template <typename T>
__global__ void __launch_bounds__(kFwdThreads)
    vandermonde_fwd_kernel(const T* __restrict__ v, const T* __restrict__ x, T* __restrict__ out,
                           int64_t R, int64_t N, int64_t L, int64_t nblk) {
  __shared__ T s_vr[kFwdTile];
  __shared__ T s_vi[kFwdTile];
  __shared__ T s_xr[kFwdTile];
  __shared__ T s_xi[kFwdTile];
  const int64_t tasks = R * nblk;
  for (int64_t task = blockIdx.x; task < tasks; task += gridDim.x) {
    const int64_t r = task / nblk;
    const int64_t l = (task % nblk) * kFwdThreads + threadIdx.x;
    const bool active = l < L;
    const T* vrow = v + 2 * r * N;
    const T* xrow = x + 2 * r * N;
    T acc = 0;
    for (int64_t n0 = 0; n0 < N; n0 += kFwdTile) {
      const int len = static_cast<int>(N - n0 < kFwdTile ? N - n0 : kFwdTile);
      __syncthreads();  // every thread is done with the previous tile (of this or the last task)
      for (int j = threadIdx.x; j < len; j += blockDim.x) {
        const int64_t k = 2 * (n0 + j);
        s_vr[j] = vrow[k];
        s_vi[j] = vrow[k + 1];
        s_xr[j] = xrow[k];
        s_xi[j] = xrow[k + 1];
      }
      __syncthreads();  // tile is staged
      if (active) {
        for (int j = 0; j < len; ++j) {
          T er, ei;
          exp_xl<T>(s_xr[j], s_xi[j], l, er, ei);
          acc += s_vr[j] * er - s_vi[j] * ei;  // Re(v exp(x l))
        }
      }
    }
    if (active) out[r * L + l] = T(2) * acc;
  }
}

// u: (R, L) real; x: (R, N) interleaved complex.
// partial: (R, N, nchunks, NQ) real with NQ = 4 if WEIGHTED else 2:
//   [S.re, S.im (, T.re, T.im)] of one chunk of l.
template <typename T, bool WEIGHTED>
__global__ void __launch_bounds__(kWarp * kPoles)
    vandermonde_sums_kernel(const T* __restrict__ u, const T* __restrict__ x,
                            T* __restrict__ partial, int64_t R, int64_t N, int64_t L,
                            int64_t ngroups, int64_t nchunks) {
  constexpr int NQ = WEIGHTED ? 4 : 2;
  const int64_t tasks = R * ngroups * nchunks;
  for (int64_t task = blockIdx.x; task < tasks; task += gridDim.x) {
    const int64_t grp = task % ngroups;
    const int64_t rest = task / ngroups;
    const int64_t c = rest % nchunks;
    const int64_t r = rest / nchunks;
    const int64_t n = grp * kPoles + threadIdx.y;
    const bool valid = n < N;  // uniform over the warp (one warp = one threadIdx.y)
    T sr = 0, si = 0, tr = 0, ti = 0;
    if (valid) {
      const T xr = x[2 * (r * N + n)], xi = x[2 * (r * N + n) + 1];
      const T* urow = u + r * L;
      const int64_t l_begin = c * kChunk;
      const int64_t l_end = L - l_begin < kChunk ? L : l_begin + kChunk;
      for (int64_t l = l_begin + threadIdx.x; l < l_end; l += kWarp) {
        T er, ei;
        exp_xl<T>(xr, xi, l, er, ei);
        const T ul = urow[l];
        sr += ul * er;
        si += ul * ei;
        if (WEIGHTED) {
          const T ulw = ul * static_cast<T>(l);
          tr += ulw * er;
          ti += ulw * ei;
        }
      }
    }
    sr = warp_sum(sr);
    si = warp_sum(si);
    if (WEIGHTED) {
      tr = warp_sum(tr);
      ti = warp_sum(ti);
    }
    if (valid && threadIdx.x == 0) {
      T* p = partial + ((r * N + n) * nchunks + c) * NQ;
      p[0] = sr;
      p[1] = si;
      if (WEIGHTED) {
        p[2] = tr;
        p[3] = ti;
      }
    }
  }
}

}  // namespace cuda
}  // namespace ssm
