// The cell's math on SIMD vectors (AVX-512 or AVX2 where the build enables it, see
// tools/build_flags.py), and the loops that run a formula over a range of cells in vectors.
#pragma once

#include "../cell_math.h"

#include <ATen/OpMathType.h>
#include <ATen/cpu/vec/vec.h>

#include <cstdint>
#include <limits>
#include <type_traits>

namespace lstm1997 {

// The cell's formulas on SIMD vectors (AVX-512 or AVX2 where the build enables it; see setup.py).
template <typename T>
struct ElementwiseMath<at::vec::Vectorized<T>> {
  using V = at::vec::Vectorized<T>;
  static V tanh(V x) { return x.tanh(); }
  static V exp(V x) { return x.exp(); }
  static V reciprocal(V x) { return V(1) / x; }
};

#if defined(CPU_CAPABILITY_AVX512)
// exp and 1/x for 16 floats, inline, to about 1 ulp (measured against float64: exp at most 0.93
// ulp, 1/x 0.53 ulp). Inline, a row's cells can interleave in the pipeline; Sleef's out-of-line
// exp and vector division keep them apart.
// exp: x = n ln2 + r, |r| <= ln2/2, with ln2 in two parts so that r is exact to float precision;
// exp(r) by its Taylor polynomial of degree 7 (truncation error below 5e-9 relative); 2^n by
// scalef, which gives inf, denormals and 0 where exp does. x is first clamped into [-104, 89]
// (exp is inf or 0 beyond), with the operand order that lets NaN through.
inline __m512 exp_avx512(__m512 x) {
  x = _mm512_min_ps(_mm512_set1_ps(89.0f), x);
  x = _mm512_max_ps(_mm512_set1_ps(-104.0f), x);
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187045e-06f), r);
  __m512 p = _mm512_set1_ps(1.0f / 5040);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

// 1/d from the 14-bit estimate and one Newton step (about 28 bits before rounding). rcp14 gives 0
// for inf and inf for 0, which the Newton step would turn into NaN: those lanes keep the estimate.
inline __m512 reciprocal_avx512(__m512 d) {
  const __m512 estimate = _mm512_rcp14_ps(d);
  const __m512 error = _mm512_fnmadd_ps(d, estimate, _mm512_set1_ps(1.0f));
  const __m512 refined = _mm512_fmadd_ps(estimate, error, estimate);
  const __mmask16 finite = _mm512_cmp_ps_mask(
      _mm512_abs_ps(estimate), _mm512_set1_ps(std::numeric_limits<float>::infinity()), _CMP_LT_OQ);
  const __mmask16 nonzero = _mm512_cmp_ps_mask(estimate, _mm512_setzero_ps(), _CMP_NEQ_UQ);
  return _mm512_mask_blend_ps(finite & nonzero, estimate, refined);
}
#elif defined(CPU_CAPABILITY_AVX2)
// exp for 8 floats, inline, the same method as exp_avx512 (measured against float64 exp at 1.5e7
// points of [-104, 89]: at most 0.93 ulp where the result is a normal float, 0.85 of the smallest
// denormal below; inf, 0 and NaN where exp gives them). AVX2 has no scalef: 2^n is made from its
// exponent bits as 2^(n - m) 2^m with m = n / 2, so that both factors stay normal floats from
// n = -150 (a denormal or 0 result) to n = 128 (inf). x is clamped into [-104, 89] first, with
// the operand order that lets NaN through.
inline __m256 exp_avx2(__m256 x) {
  x = _mm256_min_ps(_mm256_set1_ps(89.0f), x);
  x = _mm256_max_ps(_mm256_set1_ps(-104.0f), x);
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428606765330187045e-06f), r);
  __m256 p = _mm256_set1_ps(1.0f / 5040);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  const __m256i whole = _mm256_cvtps_epi32(n);
  const __m256i half = _mm256_srai_epi32(whole, 1);
  const __m256i bias = _mm256_set1_epi32(127);
  const __m256 first = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(half, bias), 23));
  const __m256 second = _mm256_castsi256_ps(
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(whole, half), bias), 23));
  return _mm256_mul_ps(_mm256_mul_ps(p, first), second);
}
#endif

// float: tanh(x) = 2 / (1 + exp(-2x)) - 1, from the same accurate exp the sigmoids use; at about
// half the cost of a vector tanh, with an absolute error below 2e-7 (relative error grows only for
// |x| < 1e-3, where tanh is below 1e-3 itself). Saturates exactly: +-inf give +-1.
template <>
struct ElementwiseMath<at::vec::Vectorized<float>> {
  using V = at::vec::Vectorized<float>;
#if defined(CPU_CAPABILITY_AVX512)
  static V exp(V x) { return V(exp_avx512(x)); }
  static V reciprocal(V x) { return V(reciprocal_avx512(x)); }
#elif defined(CPU_CAPABILITY_AVX2)
  static V exp(V x) { return V(exp_avx2(x)); }
  static V reciprocal(V x) { return V(1) / x; }
#else
  static V exp(V x) { return x.exp(); }
  static V reciprocal(V x) { return V(1) / x; }
#endif
  static V tanh(V x) { return V(2) * reciprocal(V(1) + exp(V(-2) * x)) - V(1); }
};

namespace cpu {


// A run of adjacent cells computed together: a whole SIMD vector, a partly filled vector (the
// last cells of a range), or one opmath value (half types, stored as something else than opmath).
// Float and double cells always go through the vector math, whatever vector they fall in, so that
// how at::parallel_for splits a range (it depends on the thread count) cannot change a result bit.
template <typename V, bool kPartial>
struct Lanes {
  using Value = V;
  int64_t count;  // the valid lanes of a partial vector
  template <typename T>
  V load(const T* data) const {
    if constexpr (std::is_arithmetic_v<V>) {
      return static_cast<V>(*data);
    } else if constexpr (kPartial) {
      return V::loadu(data, count);
    } else {
      return V::loadu(data);
    }
  }
  template <typename T>
  void store(const V& value, T* data) const {
    if constexpr (std::is_arithmetic_v<V>) {
      *data = static_cast<T>(value);
    } else if constexpr (kPartial) {
      value.store(data, count);
    } else {
      value.store(data);
    }
  }
};

// Runs body(j, lanes) over [begin, end) in Lanes: SIMD vectors of opmath_t when the stored type is
// opmath_t itself (float, double), otherwise one opmath_t value at a time.
template <typename scalar_t, typename Body>
inline void for_each_lane(int64_t begin, int64_t end, const Body& body) {
  using opmath_t = at::opmath_type<scalar_t>;
  int64_t j = begin;
  if constexpr (std::is_same_v<scalar_t, opmath_t>) {
    using Vec = at::vec::Vectorized<opmath_t>;
#pragma GCC unroll 4
    for (; j + Vec::size() <= end; j += Vec::size()) {
      body(j, Lanes<Vec, false>{Vec::size()});
    }
    if (j < end) {
      body(j, Lanes<Vec, true>{end - j});
    }
  } else {
    for (; j < end; ++j) {
      body(j, Lanes<opmath_t, false>{1});
    }
  }
}

// target += scale * values, over `width` values, in vectors (an axpy on a row).
template <typename scalar_t>
inline void add_scaled(scalar_t* target, scalar_t scale, const scalar_t* values, int64_t width) {
  using Vec = at::vec::Vectorized<scalar_t>;
  int64_t f = 0;
  for (; f + Vec::size() <= width; f += Vec::size()) {
    at::vec::fmadd(Vec(scale), Vec::loadu(values + f), Vec::loadu(target + f)).store(target + f);
  }
  for (; f < width; ++f) {
    target[f] += scale * values[f];
  }
}

}  // namespace cpu
}  // namespace lstm1997
