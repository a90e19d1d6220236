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
// The squashers' exp, inline (a row's cells can then interleave in the pipeline; Sleef's
// out-of-line exp keeps them apart): exp(-x) for 16 floats, x first clamped into [-89, 104]
// (exp(-x) is inf or 0 beyond; the operand order lets NaN through). n = round(-x log2e) and
// r = x + n ln2 (ln2 in two parts, so that r is exact to float precision; |r| <= ln2/2), so
// exp(-x) = 2^n exp(-r): 2^n by scalef, which gives inf, denormals and 0 where exp does; exp(-r)
// by its Taylor polynomial of degree 7 (truncation error below 5e-9 relative), evaluated by
// Estrin's scheme: three multiply-adds deep where Horner's rule is seven. In a recurrent layer
// each step waits on two squashers one after the other (the gates', then h(s_t)'s), so their
// latency is the time of a small layer's step (benchmarks/README.md, "Issue #20, sixth session").
inline __m512 exp_negated_avx512(__m512 x) {
  x = _mm512_min_ps(_mm512_set1_ps(104.0f), x);
  x = _mm512_max_ps(_mm512_set1_ps(-89.0f), x);
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(-1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
  r = _mm512_fmadd_ps(n, _mm512_set1_ps(1.428606765330187045e-06f), r);
  // exp(-r) = (1 - r) + r^2 (1/2 - r/6) + r^4 ((1/24 - r/120) + r^2 (1/720 - r/5040))
  const __m512 r2 = _mm512_mul_ps(r, r);
  const __m512 r4 = _mm512_mul_ps(r2, r2);
  const __m512 terms01 = _mm512_sub_ps(_mm512_set1_ps(1.0f), r);
  const __m512 terms23 = _mm512_fnmadd_ps(r, _mm512_set1_ps(1.0f / 6), _mm512_set1_ps(0.5f));
  const __m512 terms45 =
      _mm512_fnmadd_ps(r, _mm512_set1_ps(1.0f / 120), _mm512_set1_ps(1.0f / 24));
  const __m512 terms67 =
      _mm512_fnmadd_ps(r, _mm512_set1_ps(1.0f / 5040), _mm512_set1_ps(1.0f / 720));
  const __m512 terms0to3 = _mm512_fmadd_ps(r2, terms23, terms01);
  const __m512 terms4to7 = _mm512_fmadd_ps(r2, terms67, terms45);
  return _mm512_scalef_ps(_mm512_fmadd_ps(r4, terms4to7, terms0to3), n);
}

// a / (1 + e) - c (kScaled; else 1 / (1 + e), with no multiply by 1 or subtraction of 0) for
// e >= 0 (exp_negated_avx512's results) or NaN: the 14-bit estimate of 1 / (1 + e) and one Newton
// step, whose last multiply-add also scales and shifts. Where 1 + e is inf (exp overflowed) the
// estimate is 0 and the Newton step NaN: those lanes take -c.
template <bool kScaled>
inline __m512 scaled_reciprocal_avx512(__m512 e, float a = 1.0f, float c = 0.0f) {
  const __m512 d = _mm512_add_ps(_mm512_set1_ps(1.0f), e);
  const __m512 estimate = _mm512_rcp14_ps(d);
  const __m512 error = _mm512_fnmadd_ps(d, estimate, _mm512_set1_ps(1.0f));
  __m512 scaled = estimate, shifted = estimate;
  if constexpr (kScaled) {
    scaled = _mm512_mul_ps(_mm512_set1_ps(a), estimate);
    shifted = _mm512_sub_ps(scaled, _mm512_set1_ps(c));
  }
  const __mmask16 overflowed =
      _mm512_cmp_ps_mask(d, _mm512_set1_ps(std::numeric_limits<float>::infinity()), _CMP_EQ_OQ);
  return _mm512_mask_blend_ps(overflowed, _mm512_fmadd_ps(scaled, error, shifted), shifted);
}
#elif defined(CPU_CAPABILITY_AVX2)
// exp for 8 floats, inline, the same method as exp_negated_avx512 for exp(x), with Horner's rule
// (measured against float64 exp at 1.5e7 points of [-104, 89]: at most 0.93 ulp where the result
// is a normal float, 0.85 of the smallest denormal below; inf, 0 and NaN where exp gives them). AVX2 has no scalef: 2^n is made from its
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
  // Fused (HasFusedSquashes in cell_math.h): sigmoid(x) = 1 / (1 + exp(-x)) and
  // scale tanh(slope x) = 2 scale / (1 + exp(-2 slope x)) - scale. Measured against float64 at
  // every 97th float (benchmarks/squash_chain.cpp): sigmoid within 8.9e-8, tanh 1.5e-7, the
  // paper's g (2 tanh(x/2)) 3.0e-7, absolute; composed from exp (Horner's rule), reciprocal and
  // tanh, as they were before 2026-12-02: 8.9e-8, 1.8e-7, 3.6e-7.
  static V sigmoid(V x) {
    return V(scaled_reciprocal_avx512<false>(exp_negated_avx512(x)));
  }
  static V scaled_tanh(V x, float scale, float slope) {
    const __m512 argument = _mm512_mul_ps(x, _mm512_set1_ps(2 * slope));
    return V(scaled_reciprocal_avx512<true>(exp_negated_avx512(argument), 2 * scale, scale));
  }
  static V tanh(V x) { return scaled_tanh(x, 1.0f, 1.0f); }
#else
#if defined(CPU_CAPABILITY_AVX2)
  static V exp(V x) { return V(exp_avx2(x)); }
#else
  static V exp(V x) { return x.exp(); }
#endif
  static V reciprocal(V x) { return V(1) / x; }
  static V tanh(V x) { return V(2) * reciprocal(V(1) + exp(V(-2) * x)) - V(1); }
#endif
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
