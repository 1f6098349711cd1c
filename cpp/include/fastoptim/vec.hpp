// A thin vector type: the dozen operations an update rule needs, for every width.
//
// Rules are templates over a vector type V, so one source serves every instruction set and
// the scalar tail. Bits are identical across targets because every operation here is one
// IEEE-754 correctly rounded operation (add, sub, mul, div, sqrt) or an exact one (max, min,
// abs, select), with the same NaN behaviour in every width: max(a, b) = a > b ? a : b, which
// is what MAXPS does. No FMA is ever used (-ffp-contract=off keeps the compiler from fusing).
#pragma once

#include <cmath>
#include <cstring>

#include "config.hpp"

#if defined(__SSE2__) || defined(_M_X64)
#include <immintrin.h>
#endif

namespace fastoptim {
FASTOPTIM_TARGET_BEGIN

// ---- one element ------------------------------------------------------------------------
template <class T>
struct Scalar {
    using value_type = T;
    using mask = bool;
    static constexpr int width = 1;
    T x;
    Scalar() = default;
    FASTOPTIM_INLINE Scalar(T v) : x(v) {}
    // memcpy: NumPy arrays need not be aligned, and a misaligned T* access is undefined
    // behaviour; compilers turn this into one plain move.
    static FASTOPTIM_INLINE Scalar load(const T* p) {
        Scalar s;
        std::memcpy(&s.x, p, sizeof(T));
        return s;
    }
    FASTOPTIM_INLINE void store(T* p) const { std::memcpy(p, &x, sizeof(T)); }
};
template <class T> FASTOPTIM_INLINE Scalar<T> operator+(Scalar<T> a, Scalar<T> b) { return a.x + b.x; }
template <class T> FASTOPTIM_INLINE Scalar<T> operator-(Scalar<T> a, Scalar<T> b) { return a.x - b.x; }
template <class T> FASTOPTIM_INLINE Scalar<T> operator*(Scalar<T> a, Scalar<T> b) { return a.x * b.x; }
template <class T> FASTOPTIM_INLINE Scalar<T> operator/(Scalar<T> a, Scalar<T> b) { return a.x / b.x; }
template <class T> FASTOPTIM_INLINE Scalar<T> sqrt(Scalar<T> a) { return std::sqrt(a.x); }
template <class T> FASTOPTIM_INLINE Scalar<T> max(Scalar<T> a, Scalar<T> b) { return a.x > b.x ? a.x : b.x; }
template <class T> FASTOPTIM_INLINE Scalar<T> min(Scalar<T> a, Scalar<T> b) { return a.x < b.x ? a.x : b.x; }
template <class T> FASTOPTIM_INLINE Scalar<T> abs(Scalar<T> a) { return std::fabs(a.x); }
template <class T> FASTOPTIM_INLINE bool operator>(Scalar<T> a, Scalar<T> b) { return a.x > b.x; }
template <class T> FASTOPTIM_INLINE bool operator<(Scalar<T> a, Scalar<T> b) { return a.x < b.x; }
template <class T> FASTOPTIM_INLINE bool is_nan(Scalar<T> a) { return a.x != a.x; }
template <class T> FASTOPTIM_INLINE Scalar<T> select(bool m, Scalar<T> a, Scalar<T> b) { return m ? a : b; }

// ---- SIMD registers ---------------------------------------------------------------------
// Arithmetic has the same intrinsic names at every width; masks differ and are spelled out.
#define FASTOPTIM_VEC_ARITHMETIC(V, P, S)                                                       \
    FASTOPTIM_INLINE V operator+(V a, V b) { return V::wrap(P##_add_##S(a.x, b.x)); }           \
    FASTOPTIM_INLINE V operator-(V a, V b) { return V::wrap(P##_sub_##S(a.x, b.x)); }           \
    FASTOPTIM_INLINE V operator*(V a, V b) { return V::wrap(P##_mul_##S(a.x, b.x)); }           \
    FASTOPTIM_INLINE V operator/(V a, V b) { return V::wrap(P##_div_##S(a.x, b.x)); }           \
    FASTOPTIM_INLINE V sqrt(V a) { return V::wrap(P##_sqrt_##S(a.x)); }                         \
    FASTOPTIM_INLINE V max(V a, V b) { return V::wrap(P##_max_##S(a.x, b.x)); }                 \
    FASTOPTIM_INLINE V min(V a, V b) { return V::wrap(P##_min_##S(a.x, b.x)); }

#define FASTOPTIM_VEC_TYPE(V, T, R, M, W, P, S)                                                 \
    struct V {                                                                                  \
        using value_type = T;                                                                   \
        using mask = M;                                                                         \
        static constexpr int width = W;                                                         \
        R x;                                                                                    \
        V() = default;                                                                          \
        FASTOPTIM_INLINE V(T v) : x(P##_set1_##S(v)) {}                                         \
        static FASTOPTIM_INLINE V wrap(R r) { V v; v.x = r; return v; }                         \
        static FASTOPTIM_INLINE V load(const T* p) { return wrap(P##_loadu_##S(p)); }           \
        FASTOPTIM_INLINE void store(T* p) const { P##_storeu_##S(p, x); }                       \
    };                                                                                          \
    FASTOPTIM_VEC_ARITHMETIC(V, P, S)

#if defined(__SSE2__) || defined(_M_X64)
FASTOPTIM_VEC_TYPE(Sse2F32, float, __m128, __m128, 4, _mm, ps)
FASTOPTIM_VEC_TYPE(Sse2F64, double, __m128d, __m128d, 2, _mm, pd)
FASTOPTIM_INLINE __m128 operator>(Sse2F32 a, Sse2F32 b) { return _mm_cmpgt_ps(a.x, b.x); }
FASTOPTIM_INLINE __m128 operator<(Sse2F32 a, Sse2F32 b) { return _mm_cmplt_ps(a.x, b.x); }
FASTOPTIM_INLINE __m128 is_nan(Sse2F32 a) { return _mm_cmpunord_ps(a.x, a.x); }
FASTOPTIM_INLINE Sse2F32 select(__m128 m, Sse2F32 a, Sse2F32 b) {
    return Sse2F32::wrap(_mm_or_ps(_mm_and_ps(m, a.x), _mm_andnot_ps(m, b.x)));
}
FASTOPTIM_INLINE Sse2F32 abs(Sse2F32 a) { return Sse2F32::wrap(_mm_andnot_ps(_mm_set1_ps(-0.0f), a.x)); }
FASTOPTIM_INLINE __m128d operator>(Sse2F64 a, Sse2F64 b) { return _mm_cmpgt_pd(a.x, b.x); }
FASTOPTIM_INLINE __m128d operator<(Sse2F64 a, Sse2F64 b) { return _mm_cmplt_pd(a.x, b.x); }
FASTOPTIM_INLINE __m128d is_nan(Sse2F64 a) { return _mm_cmpunord_pd(a.x, a.x); }
FASTOPTIM_INLINE Sse2F64 select(__m128d m, Sse2F64 a, Sse2F64 b) {
    return Sse2F64::wrap(_mm_or_pd(_mm_and_pd(m, a.x), _mm_andnot_pd(m, b.x)));
}
FASTOPTIM_INLINE Sse2F64 abs(Sse2F64 a) { return Sse2F64::wrap(_mm_andnot_pd(_mm_set1_pd(-0.0), a.x)); }
#endif

#if defined(__AVX2__)
FASTOPTIM_VEC_TYPE(Avx2F32, float, __m256, __m256, 8, _mm256, ps)
FASTOPTIM_VEC_TYPE(Avx2F64, double, __m256d, __m256d, 4, _mm256, pd)
FASTOPTIM_INLINE __m256 operator>(Avx2F32 a, Avx2F32 b) { return _mm256_cmp_ps(a.x, b.x, _CMP_GT_OQ); }
FASTOPTIM_INLINE __m256 operator<(Avx2F32 a, Avx2F32 b) { return _mm256_cmp_ps(a.x, b.x, _CMP_LT_OQ); }
FASTOPTIM_INLINE __m256 is_nan(Avx2F32 a) { return _mm256_cmp_ps(a.x, a.x, _CMP_UNORD_Q); }
FASTOPTIM_INLINE Avx2F32 select(__m256 m, Avx2F32 a, Avx2F32 b) { return Avx2F32::wrap(_mm256_blendv_ps(b.x, a.x, m)); }
FASTOPTIM_INLINE Avx2F32 abs(Avx2F32 a) { return Avx2F32::wrap(_mm256_andnot_ps(_mm256_set1_ps(-0.0f), a.x)); }
FASTOPTIM_INLINE __m256d operator>(Avx2F64 a, Avx2F64 b) { return _mm256_cmp_pd(a.x, b.x, _CMP_GT_OQ); }
FASTOPTIM_INLINE __m256d operator<(Avx2F64 a, Avx2F64 b) { return _mm256_cmp_pd(a.x, b.x, _CMP_LT_OQ); }
FASTOPTIM_INLINE __m256d is_nan(Avx2F64 a) { return _mm256_cmp_pd(a.x, a.x, _CMP_UNORD_Q); }
FASTOPTIM_INLINE Avx2F64 select(__m256d m, Avx2F64 a, Avx2F64 b) { return Avx2F64::wrap(_mm256_blendv_pd(b.x, a.x, m)); }
FASTOPTIM_INLINE Avx2F64 abs(Avx2F64 a) { return Avx2F64::wrap(_mm256_andnot_pd(_mm256_set1_pd(-0.0), a.x)); }
#endif

#if defined(__AVX512F__) && defined(__AVX512DQ__)
FASTOPTIM_VEC_TYPE(Avx512F32, float, __m512, __mmask16, 16, _mm512, ps)
FASTOPTIM_VEC_TYPE(Avx512F64, double, __m512d, __mmask8, 8, _mm512, pd)
FASTOPTIM_INLINE __mmask16 operator>(Avx512F32 a, Avx512F32 b) { return _mm512_cmp_ps_mask(a.x, b.x, _CMP_GT_OQ); }
FASTOPTIM_INLINE __mmask16 operator<(Avx512F32 a, Avx512F32 b) { return _mm512_cmp_ps_mask(a.x, b.x, _CMP_LT_OQ); }
FASTOPTIM_INLINE __mmask16 is_nan(Avx512F32 a) { return _mm512_cmp_ps_mask(a.x, a.x, _CMP_UNORD_Q); }
FASTOPTIM_INLINE Avx512F32 select(__mmask16 m, Avx512F32 a, Avx512F32 b) { return Avx512F32::wrap(_mm512_mask_blend_ps(m, b.x, a.x)); }
FASTOPTIM_INLINE Avx512F32 abs(Avx512F32 a) { return Avx512F32::wrap(_mm512_andnot_ps(_mm512_set1_ps(-0.0f), a.x)); }
FASTOPTIM_INLINE __mmask8 operator>(Avx512F64 a, Avx512F64 b) { return _mm512_cmp_pd_mask(a.x, b.x, _CMP_GT_OQ); }
FASTOPTIM_INLINE __mmask8 operator<(Avx512F64 a, Avx512F64 b) { return _mm512_cmp_pd_mask(a.x, b.x, _CMP_LT_OQ); }
FASTOPTIM_INLINE __mmask8 is_nan(Avx512F64 a) { return _mm512_cmp_pd_mask(a.x, a.x, _CMP_UNORD_Q); }
FASTOPTIM_INLINE Avx512F64 select(__mmask8 m, Avx512F64 a, Avx512F64 b) { return Avx512F64::wrap(_mm512_mask_blend_pd(m, b.x, a.x)); }
FASTOPTIM_INLINE Avx512F64 abs(Avx512F64 a) { return Avx512F64::wrap(_mm512_andnot_pd(_mm512_set1_pd(-0.0), a.x)); }
#endif

#undef FASTOPTIM_VEC_TYPE
#undef FASTOPTIM_VEC_ARITHMETIC

// sign(x): +1, -1, 0 for ±0, NaN for NaN — np.sign's convention, in any width.
template <class V>
FASTOPTIM_INLINE V sign(V x) {
    const V zero(0), one(1), minus_one(-1);
    return select(x > zero, one, select(x < zero, minus_one, x * zero));
}

// np.maximum: like max, but a NaN in either operand is the result.
template <class V>
FASTOPTIM_INLINE V maximum(V a, V b) {
    return select(is_nan(a), a, max(a, b));
}

// torch.clamp(x, lo, hi): NaN stays NaN (max(lo, x) returns x when x is NaN).
template <class V>
FASTOPTIM_INLINE V clamp(V x, V lo, V hi) {
    return min(hi, max(lo, x));
}

// The widest vector the including file was compiled for.
template <class T> struct NativeVecOf { using type = Scalar<T>; };
#if defined(__AVX512F__) && defined(__AVX512DQ__)
template <> struct NativeVecOf<float> { using type = Avx512F32; };
template <> struct NativeVecOf<double> { using type = Avx512F64; };
#elif defined(__AVX2__)
template <> struct NativeVecOf<float> { using type = Avx2F32; };
template <> struct NativeVecOf<double> { using type = Avx2F64; };
#elif defined(__SSE2__) || defined(_M_X64)
template <> struct NativeVecOf<float> { using type = Sse2F32; };
template <> struct NativeVecOf<double> { using type = Sse2F64; };
#endif
template <class T> using NativeVec = typename NativeVecOf<T>::type;

FASTOPTIM_TARGET_END
}  // namespace fastoptim
