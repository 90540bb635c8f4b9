// Register-blocked products of small row-major matrices, for the CPU generation kernels.
//
//   C (M x N, row stride ldc) = [C +] A (M x K, row stride lda) @ Bm (K x N, row stride ldb)
//
// The generation kernels multiply thousands of tiny matrices (e.g. 16 x 64 by 64 x 16, one per
// SSM channel) whose rows sit at arbitrary strides inside larger buffers; a BLAS call per matrix
// costs more than its arithmetic. Blocks of MR x NR outputs are accumulated in fixed-size arrays
// the compiler keeps in vector registers (the NR columns are the vector lanes); columns left over
// from the blocks (fewer than 8, e.g. batch 1) become dot products along K.
#pragma once

#include <cstdint>

namespace ssm {

template <typename T, int MR, int NR>
inline void gemm_block(const T* A, int64_t lda, const T* Bm, int64_t ldb, T* C, int64_t ldc, int64_t K,
                       bool accumulate) {
  T acc[MR][NR];
  for (int r = 0; r < MR; ++r) {
#pragma omp simd
    for (int c = 0; c < NR; ++c) acc[r][c] = accumulate ? C[r * ldc + c] : T(0);
  }
  for (int64_t k = 0; k < K; ++k) {
    const T* b = Bm + k * ldb;
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const T a = A[r * lda + k];
#pragma omp simd
      for (int c = 0; c < NR; ++c) acc[r][c] += a * b[c];
    }
  }
  for (int r = 0; r < MR; ++r) {
#pragma omp simd
    for (int c = 0; c < NR; ++c) C[r * ldc + c] = acc[r][c];
  }
}

// Columns [c0, N) one at a time: gather the column of Bm into `col` (K scratch), then dot products.
template <typename T>
inline void gemm_columns(const T* A, int64_t lda, const T* Bm, int64_t ldb, T* C, int64_t ldc, int64_t M,
                         int64_t c0, int64_t N, int64_t K, bool accumulate, T* col) {
  for (int64_t c = c0; c < N; ++c) {
    for (int64_t k = 0; k < K; ++k) col[k] = Bm[k * ldb + c];
    for (int64_t r = 0; r < M; ++r) {
      const T* a = A + r * lda;
      T s = 0;
#pragma omp simd reduction(+ : s)
      for (int64_t k = 0; k < K; ++k) s += a[k] * col[k];
      C[r * ldc + c] = accumulate ? C[r * ldc + c] + s : s;
    }
  }
}

// `col` is scratch of K elements (used only when N % 8 != 0).
template <typename T>
inline void small_gemm(const T* A, int64_t lda, const T* Bm, int64_t ldb, T* C, int64_t ldc, int64_t M, int64_t N,
                       int64_t K, bool accumulate, T* col) {
  constexpr int MR = 4;
  int64_t c = 0;
  for (; c + 16 <= N; c += 16) {
    int64_t r = 0;
    for (; r + MR <= M; r += MR) gemm_block<T, MR, 16>(A + r * lda, lda, Bm + c, ldb, C + r * ldc + c, ldc, K, accumulate);
    for (; r < M; ++r) gemm_block<T, 1, 16>(A + r * lda, lda, Bm + c, ldb, C + r * ldc + c, ldc, K, accumulate);
  }
  for (; c + 8 <= N; c += 8) {
    int64_t r = 0;
    for (; r + MR <= M; r += MR) gemm_block<T, MR, 8>(A + r * lda, lda, Bm + c, ldb, C + r * ldc + c, ldc, K, accumulate);
    for (; r < M; ++r) gemm_block<T, 1, 8>(A + r * lda, lda, Bm + c, ldb, C + r * ldc + c, ldc, K, accumulate);
  }
  if (c < N) gemm_columns<T>(A, lda, Bm, ldb, C, ldc, M, c, N, K, accumulate, col);
}

}  // namespace ssm
