// CUDA Cauchy kernels with conjugate-pair symmetry, forward and backward (device code only).
//
//   out[r, l] = sum_n v[r,n] / (z[l] - w[r,n]) + conj(v[r,n]) / (z[l] - conj(w[r,n]))
//
// Same mathematics and arithmetic as csrc/cpu/cauchy_cpu.cpp (two separate fractions, each
// written as numerator * conj(denominator) * (1 / |denominator|^2)).
//
// Forward: a 1-D grid over (row, block of kFwdThreads values of l) tasks; each thread owns one l
// of one row and the row's poles are staged through shared memory in tiles of kFwdTile.
//
// Backward: deterministic, no atomics. A 1-D grid over (row, group of kPoles poles, chunk of
// kChunk values of l) tasks; block (32, kPoles): threadIdx.y picks the pole, threadIdx.x strides
// over the chunk. Each warp (= one pole) reduces its two complex sums with shuffles and lane 0
// writes them to partial[r, n, chunk, 0:4]; the host sums the chunk axis (cauchy_host.h).
//
// All grids are grid-stride loops over 64-bit task indices, so any number of tasks works.
//
// No ATen or CUDA runtime headers: nvcc compiles this for the GPU (cauchy_cuda.cu), the host
// compiler compiles the same text for the CPU emulation (csrc/emulation/cuda_shim.h).
#pragma once

#include <cstdint>

#include "launch.cuh"

namespace ssm {
namespace cuda {

// v, w: (R, N) interleaved complex; z: (L,) interleaved complex; out: (R, L) interleaved complex.
template <typename T>
__global__ void __launch_bounds__(kFwdThreads)
    cauchy_fwd_kernel(const T* __restrict__ v, const T* __restrict__ z, const T* __restrict__ w,
                      T* __restrict__ out, int64_t R, int64_t N, int64_t L, int64_t nblk) {
  __shared__ T s_vr[kFwdTile];
  __shared__ T s_vi[kFwdTile];
  __shared__ T s_wr[kFwdTile];
  __shared__ T s_wi[kFwdTile];
  const int64_t tasks = R * nblk;
  for (int64_t task = blockIdx.x; task < tasks; task += gridDim.x) {
    const int64_t r = task / nblk;
    const int64_t l = (task % nblk) * kFwdThreads + threadIdx.x;
    const bool active = l < L;
    T zr = 0, zi = 0;
    if (active) {
      zr = z[2 * l];
      zi = z[2 * l + 1];
    }
    const T* vrow = v + 2 * r * N;
    const T* wrow = w + 2 * r * N;
    T accr = 0, acci = 0;
    for (int64_t n0 = 0; n0 < N; n0 += kFwdTile) {
      const int len = static_cast<int>(N - n0 < kFwdTile ? N - n0 : kFwdTile);
      __syncthreads();  // every thread is done with the previous tile (of this or the last task)
      for (int j = threadIdx.x; j < len; j += blockDim.x) {
        const int64_t k = 2 * (n0 + j);
        s_vr[j] = vrow[k];
        s_vi[j] = vrow[k + 1];
        s_wr[j] = wrow[k];
        s_wi[j] = wrow[k + 1];
      }
      __syncthreads();  // tile is staged
      if (active) {
        for (int j = 0; j < len; ++j) {
          const T vr = s_vr[j], vi = s_vi[j];
          const T wr = s_wr[j], wi = s_wi[j];
          const T dr = zr - wr;
          const T d1i = zi - wi;  // z - w
          const T d2i = zi + wi;  // z - conj(w)
          const T inv1 = T(1) / (dr * dr + d1i * d1i);
          const T inv2 = T(1) / (dr * dr + d2i * d2i);
          // v / (z - w) = v conj(d1) / |d1|^2 ;  conj(v) / (z - conj w) = conj(v) conj(d2) / |d2|^2
          accr += (vr * dr + vi * d1i) * inv1 + (vr * dr - vi * d2i) * inv2;
          acci += (vi * dr - vr * d1i) * inv1 - (vi * dr + vr * d2i) * inv2;
        }
      }
    }
    if (active) {
      const int64_t o = 2 * (r * L + l);
      out[o] = accr;
      out[o + 1] = acci;
    }
  }
}

// g: (R, L) interleaved complex; z: (L,); w: (R, N).
// partial: (R, N, nchunks, 4) real: [S.re, S.im, T.re, T.im] of one chunk of l, where
//   S = sum_l g/(conj z - conj w) + conj(g)/(z - conj w)
//   T = sum_l g/(conj z - conj w)^2 + conj(g)/(z - conj w)^2
template <typename T>
__global__ void __launch_bounds__(kWarp * kPoles)
    cauchy_bwd_kernel(const T* __restrict__ g, const T* __restrict__ z, const T* __restrict__ w,
                      T* __restrict__ partial, int64_t R, int64_t N, int64_t L, int64_t ngroups,
                      int64_t nchunks) {
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
      const T wr = w[2 * (r * N + n)], wi = w[2 * (r * N + n) + 1];
      const T* grow = g + 2 * r * L;
      const int64_t l_begin = c * kChunk;
      const int64_t l_end = L - l_begin < kChunk ? L : l_begin + kChunk;
      for (int64_t l = l_begin + threadIdx.x; l < l_end; l += kWarp) {
        const T gr = grow[2 * l], gi = grow[2 * l + 1];
        const T zr = z[2 * l], zi = z[2 * l + 1];
        const T dr = zr - wr;
        const T d1i = zi - wi;  // a = conj(z) - conj(w) = dr - i d1i
        const T d2i = zi + wi;  // b = z - conj(w)       = dr + i d2i
        const T inv1 = T(1) / (dr * dr + d1i * d1i);
        const T inv2 = T(1) / (dr * dr + d2i * d2i);
        // p = g / a = g (dr + i d1i) / |a|^2
        const T pr = (gr * dr - gi * d1i) * inv1;
        const T pi = (gr * d1i + gi * dr) * inv1;
        // q = conj(g) / b = (gr - i gi)(dr - i d2i) / |b|^2
        const T qr = (gr * dr - gi * d2i) * inv2;
        const T qi = -(gr * d2i + gi * dr) * inv2;
        sr += pr + qr;
        si += pi + qi;
        // p / a and q / b
        tr += (pr * dr - pi * d1i) * inv1 + (qr * dr + qi * d2i) * inv2;
        ti += (pr * d1i + pi * dr) * inv1 + (qi * dr - qr * d2i) * inv2;
      }
    }
    sr = warp_sum(sr);
    si = warp_sum(si);
    tr = warp_sum(tr);
    ti = warp_sum(ti);
    if (valid && threadIdx.x == 0) {
      T* p = partial + ((r * N + n) * nchunks + c) * 4;
      p[0] = sr;
      p[1] = si;
      p[2] = tr;
      p[3] = ti;
    }
  }
}

}  // namespace cuda
}  // namespace ssm
