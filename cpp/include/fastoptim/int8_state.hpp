// 8-bit block-wise state for float32 parameters (Dettmers et al. 2022, "8-bit Optimizers via
// Block-wise Quantization"): each state element is one byte, a code, and each block of 256
// consecutive elements (counted from the parameter's first) has one float32, its absmax.
//
// The codes are float16 numbers cut to 3 mantissa bits (4 significant bits) and scaled per block
// by a power of two, so that both directions are exact, the same on every target and in scalar code:
//   signed (first moments):         s EEEE MMM   the float16 s 0EEEE MMM0000000, |u| ≤ 1.875
//   unsigned (nonnegative moments): EEEEE MMM    the float16 0 EEEEE MMM0000000, u ≤ 1.875·2^15
// i.e. u = (8 + M)·2^(E − 18), or M·2^−17 when E = 0 (E ≤ 30: codes 248-255, float16's
// infinity and NaNs, are never stored), 3
// mantissa bits over 17 binades (signed) or 32 (unsigned): a second moment, a square, needs
// twice the range of a first. With `top` 0 (signed) or 15 (unsigned), a block whose absmax,
// rounded to 3 mantissa bits, lies in [2^e, 2^(e+1)) stores x as the code nearest x·2^(top−e)
// (ties to the even code), and a code decodes as ±u·2^(e−top), rounded once to float32. e ≥ −111
// (a block of smaller values shares that scale). A block whose absmax is not finite (or rounds to
// 2^127 or more) stores only zero codes and decodes as NaN: NaN state spreads over its block.
// Decoding is a float16 conversion where the target has one (F16C, AVX-512; MSVC's AVX2 build
// defines no __F16C__ and takes the other way), else a few integer operations: the same values.
//
// The nearest code is found exactly by one float32 addition (round to nearest even, the IEEE
// default every target runs with): adding 2^(max(ey, emin) + 20) to |y| < 2^(ey + 1) leaves
// exactly the code's 3 mantissa bits (or its subnormal multiple) in the sum's mantissa.
//
// The kernels update a block's elements from the codes, keep the new state in float32 until the
// block is done, then find its absmax and requantize it (sweep.hpp): the parameter's update
// uses the new state before quantization, as bitsandbytes does.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>

#include "bits.hpp"
#include "rule.hpp"
#include "vec.hpp"

namespace fastoptim {

inline constexpr index_t kCodeBlock = 256;  // elements per absmax

constexpr index_t code_blocks(index_t elements) { return (elements + kCodeBlock - 1) / kCodeBlock; }

FASTOPTIM_TARGET_BEGIN

// The two codes: the unsigned one spends the sign bit on range.
template <bool Unsigned>
struct CodeFormat {
    static constexpr int emin = -14;              // the exponent of the smallest normal code (float16's)
    static constexpr int top = Unsigned ? 15 : 0;  // the exponent a block's absmax is scaled to
    static constexpr std::uint32_t magnitude = Unsigned ? 0xFFu : 0x7Fu;
};

// A block's e lies in [−111, 126]: both scales, 2^(e − top) and 2^(top − e), are then normal
// floats (a subnormal one would read as zero where denormals are flushed); e ≥ 127 is a block
// that is not finite.
inline constexpr int kLowestBlockExponent = -111;
inline constexpr int kNotFinite = 127;

// e of a block from the bits of its absmax (a nonnegative float).
constexpr int block_exponent(std::uint32_t absmax_bits) {
    const std::uint32_t rounded = absmax_bits + 0x7FFFFu + ((absmax_bits >> 20) & 1u);  // 3 mantissa bits
    const int e = int(rounded >> 23) - 127;
    return e < kLowestBlockExponent ? kLowestBlockExponent : e;
}

// 2^k as a float, k in [−126, 127].
inline float power_of_two(int k) { return Bits<Scalar<float>>::to_float(std::uint32_t(k + 127) << 23).x; }

inline std::uint32_t bits_of_float(float f) { return Bits<Scalar<float>>::of(Scalar<float>(f)); }

// 2^(e − top), what a block's code values are multiplied by; NaN for a block that is not finite.
template <bool Unsigned>
float decode_scale(float absmax) {
    const int e = block_exponent(bits_of_float(absmax) & 0x7FFFFFFFu);
    return e >= kNotFinite ? std::numeric_limits<float>::quiet_NaN() : power_of_two(e - CodeFormat<Unsigned>::top);
}

// 2^(top − e), what a block's values are multiplied by before coding.
template <bool Unsigned>
float encode_scale(int e) { return power_of_two(CodeFormat<Unsigned>::top - e); }

// The codes of y = x·2^(top − e), |y| ≤ 1.875·2^top (lanes of 0..255).
template <bool Unsigned, class V, class B = Bits<V>>
FASTOPTIM_INLINE typename B::R encode_codes(const V& y) {
    using R = typename B::R;
    using F = CodeFormat<Unsigned>;
    const R u = B::of(y);
    const R magnitude = B::and_(u, B::set1(0x7FFFFFFFu));
    const V binade = B::to_float(B::and_(u, B::set1(0x7F800000u)));  // 2^ey, or 0
    const V magic = max(binade, V(power_of_two(F::emin))) * V(1048576.0f);  // ·2^20, never NaN
    const R sum = B::of(B::to_float(magnitude) + magic);
    const R code = B::add(B::template shl<3>(B::sub(B::template shr<23>(sum), B::set1(std::uint32_t(127 + F::emin + 20)))),
                          B::and_(sum, B::set1(0x7FFFFFu)));
    if constexpr (Unsigned) return code;
    else return B::or_(code, B::template shr<24>(B::and_(u, B::set1(0x80000000u))));
}

// The float16 values ±u of codes (lanes of 0..255), in integer lanes.
template <bool Unsigned, class V, class B = Bits<V>>
FASTOPTIM_INLINE V code_values(typename B::R codes) {
    using R = typename B::R;
    using F = CodeFormat<Unsigned>;
    const R magnitude = B::and_(codes, B::set1(F::magnitude));
    const R e = B::template shr<3>(magnitude);
    const R normal = B::positive(e);
    const R significand = B::or_(B::and_(magnitude, B::set1(7)), B::and_(normal, B::set1(8)));
    const R exponent = B::add(B::add(e, B::set1(std::uint32_t(1 + 127 + F::emin - 4))), normal);  // max(E, 1) + bias
    const V value = B::convert(significand) * B::to_float(B::template shl<23>(exponent));  // exact
    if constexpr (Unsigned) {
        // Codes 248-255, never stored, decode as their float16 bits do (a user may write them):
        // infinity for M = 0, else the quiet NaN with M atop its payload.
        const R m = B::and_(magnitude, B::set1(7));
        const R special = B::or_(B::set1(0x7F800000u), B::and_(B::positive(m), B::or_(B::set1(0x00400000u),
                                                                                       B::template shl<20>(m))));
        const R u = B::of(value);
        return B::to_float(B::xor_(u, B::and_(B::positive(B::sub(e, B::set1(30))), B::xor_(u, special))));
    } else {
        return B::to_float(B::or_(B::of(value), B::template shl<24>(B::and_(codes, B::set1(0x80)))));
    }
}

// The float16 values ±u of V::width codes at p: a conversion of their float16 bits where the
// target has one, else code_values. The same values either way.
template <bool Unsigned, class V>
FASTOPTIM_INLINE V load_code_values(const std::uint8_t* p) {
#if defined(__AVX512F__) && defined(__AVX512DQ__)
    if constexpr (std::is_same_v<V, Avx512F32>) {
        __m256i h = _mm256_slli_epi16(_mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 7);
        if constexpr (!Unsigned) h = _mm256_add_epi16(h, _mm256_and_si256(h, _mm256_set1_epi16(0x4000)));  // sign to bit 15
        return Avx512F32::wrap(_mm512_cvtph_ps(h));
    }
#endif
#if defined(__AVX2__) && defined(__F16C__)
    if constexpr (std::is_same_v<V, Avx2F32>) {
        __m128i h = _mm_slli_epi16(_mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))), 7);
        if constexpr (!Unsigned) h = _mm_add_epi16(h, _mm_and_si128(h, _mm_set1_epi16(0x4000)));
        return Avx2F32::wrap(_mm256_cvtph_ps(h));
    }
#endif
    return code_values<Unsigned, V>(Bits<V>::load8(p));
}

// The values of codes at p in a block of scale 2^(e − top): one rounding, of the exact ±u·2^(e − top).
template <bool Unsigned, class V>
FASTOPTIM_INLINE V load_codes(const std::uint8_t* p, const V& scale) {
    return load_code_values<Unsigned, V>(p) * scale;
}

// Codes and absmax of `n` float32 values: the block's requantization.
template <bool Unsigned, class V>
void encode_block(const float* values, index_t n, std::uint8_t* codes, float* absmax) {
    using B = Bits<V>;
    using S = Bits<Scalar<float>>;
    constexpr index_t w = V::width;
    typename B::R most = B::set1(0);
    index_t i = 0;
    for (; i + w <= n; i += w) most = B::max_(most, B::and_(B::of(V::load(values + i)), B::set1(0x7FFFFFFFu)));
    std::uint32_t top = B::max_lane(most);  // the bits of |x| order as |x| does, a NaN above all
    for (; i < n; ++i) top = S::max_(top, bits_of_float(values[i]) & 0x7FFFFFFFu);
    *absmax = S::to_float(top).x;
    const int e = block_exponent(top);
    if (e >= kNotFinite) {
        std::fill(codes, codes + n, std::uint8_t(0));
        return;
    }
    const float inv = encode_scale<Unsigned>(e);
    for (i = 0; i + w <= n; i += w) B::store8(codes + i, encode_codes<Unsigned>(V::load(values + i) * V(inv)));
    for (; i < n; ++i) S::store8(codes + i, encode_codes<Unsigned>(Scalar<float>(values[i] * inv)));
}

template <bool Unsigned, class V>
void decode_block(const std::uint8_t* codes, index_t n, float absmax, float* values) {
    constexpr index_t w = V::width;
    const float scale = decode_scale<Unsigned>(absmax);
    index_t i = 0;
    for (; i + w <= n; i += w) load_codes<Unsigned>(codes + i, V(scale)).store(values + i);
    for (; i < n; ++i) values[i] = load_codes<Unsigned>(codes + i, Scalar<float>(scale)).x;
}

// Bit s set: state slot s of Rule holds nonnegative values (its unsigned code).
template <class Rule>
constexpr unsigned unsigned_slots() {
    unsigned mask = 0;
    for (std::size_t s = 0; s < Rule::slots.size(); ++s)
        if (Rule::slots[s].nonnegative) mask |= 1u << s;
    return mask;
}

// An ArrayRef whose state slots hold 8-bit codes, as the rules read it, one block at a time
// (rule.hpp's load_state and store_state call load_stored and store_stored): loads decode the
// block's codes, stores go to `buffer` (kCodeBlock floats per slot) until close() requantizes
// them. absmax[s] is element 0's block's, first_index a multiple of kCodeBlock.
template <class T, unsigned UnsignedSlots>
struct CodedAs : ArrayRef<T> {
    static_assert(std::is_same_v<T, float>, "8-bit state is for float32 parameters");
    static constexpr StateFormat kStateFormat = StateFormat::int8;
    float* buffer;
    bool* written;  // per slot: stored in this block (a pass may only read a slot: LAMB's update)
    index_t block_begin = 0;
    float scale[kMaxStateSlots] = {};

    CodedAs(const ArrayRef<T>& a, float* block_buffer, bool* slots_written)
        : ArrayRef<T>(a), buffer(block_buffer), written(slots_written) {}

    const std::uint8_t* codes(int slot) const { return static_cast<const std::uint8_t*>(this->state[slot]); }
    template <class V>
    FASTOPTIM_INLINE V load_stored(int slot, index_t i) const {
        if ((UnsignedSlots >> slot) & 1u) return load_codes<true>(codes(slot) + i, V(scale[slot]));
        return load_codes<false>(codes(slot) + i, V(scale[slot]));
    }
    // The value as it stands until the block is requantized (LAMB's norms see it so).
    template <class V>
    FASTOPTIM_INLINE V store_stored(int slot, index_t i, const V& value) const {
        value.store(buffer + slot * kCodeBlock + (i - block_begin));
        written[slot] = true;
        return value;
    }
    // Elements [begin, begin + kCodeBlock) are next.
    void open(index_t begin) {
        block_begin = begin;
        for (int s = 0; s < kMaxStateSlots; ++s) {
            written[s] = false;
            if (!this->state[s]) continue;
            const float absmax = this->absmax[s][begin / kCodeBlock];
            scale[s] = (UnsignedSlots >> s) & 1u ? decode_scale<true>(absmax) : decode_scale<false>(absmax);
        }
    }
    // Requantize the slots the block of `n` elements just updated stored.
    template <class V>
    void close(index_t n) const {
        for (int s = 0; s < kMaxStateSlots; ++s) {
            if (!written[s]) continue;
            std::uint8_t* out = static_cast<std::uint8_t*>(this->state[s]) + block_begin;
            float* absmax = this->absmax[s] + block_begin / kCodeBlock;
            if ((UnsignedSlots >> s) & 1u) encode_block<true, V>(buffer + s * kCodeBlock, n, out, absmax);
            else encode_block<false, V>(buffer + s * kCodeBlock, n, out, absmax);
        }
    }
};

FASTOPTIM_TARGET_END
}  // namespace fastoptim
