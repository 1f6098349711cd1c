// 32-bit integer lanes beside each float vector, for the state formats that are not float:
// bfloat16 (bfloat16.hpp) and 8-bit block codes (int8_state.hpp). Their conversions are done
// in these lanes, the same on every target, never by a hardware conversion that may flush.
#pragma once

#include <cstdint>
#include <cstring>

#include "vec.hpp"

namespace fastoptim {
FASTOPTIM_TARGET_BEGIN

// 32-bit integer lanes beside each float vector: the few operations the state formats'
// conversions and the generator need. SSE2 has no 32-bit multiply (pmulld is SSE4.1): two
// pmuludq instead, nor a 32-bit max (a compare and a blend).
template <class V>
struct Bits;

template <>
struct Bits<Scalar<float>> {
    using R = std::uint32_t;
    static FASTOPTIM_INLINE R of(Scalar<float> v) { R r; std::memcpy(&r, &v.x, 4); return r; }
    static FASTOPTIM_INLINE Scalar<float> to_float(R r) { float f; std::memcpy(&f, &r, 4); return f; }
    static FASTOPTIM_INLINE R set1(std::uint32_t c) { return c; }
    static FASTOPTIM_INLINE R counters(std::uint32_t first) { return first; }
    static FASTOPTIM_INLINE R add(R a, R b) { return a + b; }
    static FASTOPTIM_INLINE R xor_(R a, R b) { return a ^ b; }
    static FASTOPTIM_INLINE R and_(R a, R b) { return a & b; }
    static FASTOPTIM_INLINE R or_(R a, R b) { return a | b; }
    template <int n> static FASTOPTIM_INLINE R shr(R a) { return a >> n; }
    static FASTOPTIM_INLINE R mul(R a, std::uint32_t c) { return a * c; }
    static FASTOPTIM_INLINE R nan_or(Scalar<float> x, R nan, R r) { return x.x != x.x ? nan : r; }
    static FASTOPTIM_INLINE R load16(const std::uint16_t* p) { std::uint16_t b; std::memcpy(&b, p, 2); return R(b) << 16; }
    static FASTOPTIM_INLINE void store16(std::uint16_t* p, R r) { const std::uint16_t b = std::uint16_t(r >> 16); std::memcpy(p, &b, 2); }
    template <int n> static FASTOPTIM_INLINE R shl(R a) { return a << n; }
    static FASTOPTIM_INLINE R sub(R a, R b) { return a - b; }
    static FASTOPTIM_INLINE R max_(R a, R b) { return std::int32_t(a) > std::int32_t(b) ? a : b; }  // signed lanes
    static FASTOPTIM_INLINE R positive(R a) { return std::int32_t(a) > 0 ? ~R(0) : R(0); }  // all ones where > 0
    static FASTOPTIM_INLINE Scalar<float> convert(R a) { return float(std::int32_t(a)); }
    static FASTOPTIM_INLINE R load8(const std::uint8_t* p) { return *p; }
    static FASTOPTIM_INLINE void store8(std::uint8_t* p, R r) { *p = std::uint8_t(r); }
    static FASTOPTIM_INLINE std::uint32_t max_lane(R a) { return a; }
};

#if defined(__SSE2__) || defined(_M_X64)
template <>
struct Bits<Sse2F32> {
    using R = __m128i;
    static FASTOPTIM_INLINE R of(Sse2F32 v) { return _mm_castps_si128(v.x); }
    static FASTOPTIM_INLINE Sse2F32 to_float(R r) { return Sse2F32::wrap(_mm_castsi128_ps(r)); }
    static FASTOPTIM_INLINE R set1(std::uint32_t c) { return _mm_set1_epi32(int(c)); }
    static FASTOPTIM_INLINE R counters(std::uint32_t first) { return _mm_add_epi32(set1(first), _mm_setr_epi32(0, 1, 2, 3)); }
    static FASTOPTIM_INLINE R add(R a, R b) { return _mm_add_epi32(a, b); }
    static FASTOPTIM_INLINE R xor_(R a, R b) { return _mm_xor_si128(a, b); }
    static FASTOPTIM_INLINE R and_(R a, R b) { return _mm_and_si128(a, b); }
    static FASTOPTIM_INLINE R or_(R a, R b) { return _mm_or_si128(a, b); }
    template <int n> static FASTOPTIM_INLINE R shr(R a) { return _mm_srli_epi32(a, n); }
    static FASTOPTIM_INLINE R mul(R a, std::uint32_t c) {
        const R k = set1(c);
        const R even = _mm_mul_epu32(a, k);                                      // lanes 0, 2 as 64 bits
        const R odd = _mm_mul_epu32(_mm_srli_epi64(a, 32), k);                   // lanes 1, 3
        return _mm_unpacklo_epi32(_mm_shuffle_epi32(even, _MM_SHUFFLE(0, 0, 2, 0)),
                                  _mm_shuffle_epi32(odd, _MM_SHUFFLE(0, 0, 2, 0)));
    }
    static FASTOPTIM_INLINE R nan_or(Sse2F32 x, R nan, R r) {
        const R m = _mm_castps_si128(_mm_cmpunord_ps(x.x, x.x));
        return _mm_or_si128(_mm_and_si128(m, nan), _mm_andnot_si128(m, r));
    }
    static FASTOPTIM_INLINE R load16(const std::uint16_t* p) {
        return _mm_unpacklo_epi16(_mm_setzero_si128(), _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
    }
    static FASTOPTIM_INLINE void store16(std::uint16_t* p, R r) {
        const R t = _mm_srai_epi32(r, 16);  // the top half, sign-extended: packs saturates nothing
        _mm_storel_epi64(reinterpret_cast<__m128i*>(p), _mm_packs_epi32(t, t));
    }
    template <int n> static FASTOPTIM_INLINE R shl(R a) { return _mm_slli_epi32(a, n); }
    static FASTOPTIM_INLINE R sub(R a, R b) { return _mm_sub_epi32(a, b); }
    static FASTOPTIM_INLINE R max_(R a, R b) {
        const R m = _mm_cmpgt_epi32(a, b);
        return _mm_or_si128(_mm_and_si128(m, a), _mm_andnot_si128(m, b));
    }
    static FASTOPTIM_INLINE R positive(R a) { return _mm_cmpgt_epi32(a, _mm_setzero_si128()); }
    static FASTOPTIM_INLINE Sse2F32 convert(R a) { return Sse2F32::wrap(_mm_cvtepi32_ps(a)); }
    static FASTOPTIM_INLINE R load8(const std::uint8_t* p) {
        std::int32_t four;
        std::memcpy(&four, p, 4);
        const R zero = _mm_setzero_si128();
        return _mm_unpacklo_epi16(_mm_unpacklo_epi8(_mm_cvtsi32_si128(four), zero), zero);
    }
    static FASTOPTIM_INLINE void store8(std::uint8_t* p, R r) {  // lanes hold 0..255
        const R w = _mm_packs_epi32(r, r);
        const std::int32_t four = _mm_cvtsi128_si32(_mm_packus_epi16(w, w));
        std::memcpy(p, &four, 4);
    }
    static FASTOPTIM_INLINE std::uint32_t max_lane(R a) {
        a = max_(a, _mm_shuffle_epi32(a, _MM_SHUFFLE(1, 0, 3, 2)));
        a = max_(a, _mm_shuffle_epi32(a, _MM_SHUFFLE(2, 3, 0, 1)));
        return std::uint32_t(_mm_cvtsi128_si32(a));
    }
};
#endif

#if defined(__AVX2__)
template <>
struct Bits<Avx2F32> {
    using R = __m256i;
    static FASTOPTIM_INLINE R of(Avx2F32 v) { return _mm256_castps_si256(v.x); }
    static FASTOPTIM_INLINE Avx2F32 to_float(R r) { return Avx2F32::wrap(_mm256_castsi256_ps(r)); }
    static FASTOPTIM_INLINE R set1(std::uint32_t c) { return _mm256_set1_epi32(int(c)); }
    static FASTOPTIM_INLINE R counters(std::uint32_t first) {
        return _mm256_add_epi32(set1(first), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    }
    static FASTOPTIM_INLINE R add(R a, R b) { return _mm256_add_epi32(a, b); }
    static FASTOPTIM_INLINE R xor_(R a, R b) { return _mm256_xor_si256(a, b); }
    static FASTOPTIM_INLINE R and_(R a, R b) { return _mm256_and_si256(a, b); }
    static FASTOPTIM_INLINE R or_(R a, R b) { return _mm256_or_si256(a, b); }
    template <int n> static FASTOPTIM_INLINE R shr(R a) { return _mm256_srli_epi32(a, n); }
    static FASTOPTIM_INLINE R mul(R a, std::uint32_t c) { return _mm256_mullo_epi32(a, set1(c)); }
    static FASTOPTIM_INLINE R nan_or(Avx2F32 x, R nan, R r) {
        return _mm256_blendv_epi8(r, nan, _mm256_castps_si256(_mm256_cmp_ps(x.x, x.x, _CMP_UNORD_Q)));
    }
    static FASTOPTIM_INLINE R load16(const std::uint16_t* p) {
        return _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 16);
    }
    static FASTOPTIM_INLINE void store16(std::uint16_t* p, R r) {
        const R t = _mm256_srai_epi32(r, 16);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(p),
                         _mm_packs_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1)));
    }
    template <int n> static FASTOPTIM_INLINE R shl(R a) { return _mm256_slli_epi32(a, n); }
    static FASTOPTIM_INLINE R sub(R a, R b) { return _mm256_sub_epi32(a, b); }
    static FASTOPTIM_INLINE R max_(R a, R b) { return _mm256_max_epi32(a, b); }
    static FASTOPTIM_INLINE R positive(R a) { return _mm256_cmpgt_epi32(a, _mm256_setzero_si256()); }
    static FASTOPTIM_INLINE Avx2F32 convert(R a) { return Avx2F32::wrap(_mm256_cvtepi32_ps(a)); }
    static FASTOPTIM_INLINE R load8(const std::uint8_t* p) {
        return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
    }
    static FASTOPTIM_INLINE void store8(std::uint8_t* p, R r) {  // lanes hold 0..255
        const __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
        _mm_storel_epi64(reinterpret_cast<__m128i*>(p), _mm_packus_epi16(w, w));
    }
    static FASTOPTIM_INLINE std::uint32_t max_lane(R a) {
        __m128i m = _mm_max_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
        m = _mm_max_epi32(m, _mm_shuffle_epi32(m, _MM_SHUFFLE(1, 0, 3, 2)));
        m = _mm_max_epi32(m, _mm_shuffle_epi32(m, _MM_SHUFFLE(2, 3, 0, 1)));
        return std::uint32_t(_mm_cvtsi128_si32(m));
    }
};
#endif

#if defined(__AVX512F__) && defined(__AVX512DQ__)
template <>
struct Bits<Avx512F32> {
    using R = __m512i;
    static FASTOPTIM_INLINE R of(Avx512F32 v) { return _mm512_castps_si512(v.x); }
    static FASTOPTIM_INLINE Avx512F32 to_float(R r) { return Avx512F32::wrap(_mm512_castsi512_ps(r)); }
    static FASTOPTIM_INLINE R set1(std::uint32_t c) { return _mm512_set1_epi32(int(c)); }
    static FASTOPTIM_INLINE R counters(std::uint32_t first) {
        return _mm512_add_epi32(set1(first), _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    }
    static FASTOPTIM_INLINE R add(R a, R b) { return _mm512_add_epi32(a, b); }
    static FASTOPTIM_INLINE R xor_(R a, R b) { return _mm512_xor_si512(a, b); }
    static FASTOPTIM_INLINE R and_(R a, R b) { return _mm512_and_si512(a, b); }
    static FASTOPTIM_INLINE R or_(R a, R b) { return _mm512_or_si512(a, b); }
    template <int n> static FASTOPTIM_INLINE R shr(R a) { return _mm512_srli_epi32(a, n); }
    static FASTOPTIM_INLINE R mul(R a, std::uint32_t c) { return _mm512_mullo_epi32(a, set1(c)); }
    static FASTOPTIM_INLINE R nan_or(Avx512F32 x, R nan, R r) {
        const __mmask16 unordered = _mm512_cmp_ps_mask(x.x, x.x, _CMP_UNORD_Q);
        if (unordered == 0) return r;  // NaNs are rare: a test and a branch instead of a blend
        return _mm512_mask_blend_epi32(unordered, r, nan);
    }
    static FASTOPTIM_INLINE R load16(const std::uint16_t* p) {
        return _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 16);
    }
    static FASTOPTIM_INLINE void store16(std::uint16_t* p, R r) {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi32_epi16(_mm512_srli_epi32(r, 16)));
    }
    template <int n> static FASTOPTIM_INLINE R shl(R a) { return _mm512_slli_epi32(a, n); }
    static FASTOPTIM_INLINE R sub(R a, R b) { return _mm512_sub_epi32(a, b); }
    static FASTOPTIM_INLINE R max_(R a, R b) { return _mm512_max_epi32(a, b); }
    static FASTOPTIM_INLINE R positive(R a) {
        return _mm512_maskz_mov_epi32(_mm512_cmpgt_epi32_mask(a, _mm512_setzero_si512()), set1(0xFFFFFFFFU));
    }
    static FASTOPTIM_INLINE Avx512F32 convert(R a) { return Avx512F32::wrap(_mm512_cvtepi32_ps(a)); }
    static FASTOPTIM_INLINE R load8(const std::uint8_t* p) {
        return _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    }
    static FASTOPTIM_INLINE void store8(std::uint8_t* p, R r) {
        _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm512_cvtepi32_epi8(r));
    }
    static FASTOPTIM_INLINE std::uint32_t max_lane(R a) { return std::uint32_t(_mm512_reduce_max_epi32(a)); }
};
#endif

FASTOPTIM_TARGET_END
}  // namespace fastoptim
