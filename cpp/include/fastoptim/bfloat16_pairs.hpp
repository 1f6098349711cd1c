// The sweep of an array whose every stream is bfloat16 (parameter, gradient and state slots, no
// float32 buffers beside them), on AVX-512: 32 elements per 64-byte load of each array, updated
// as two vectors, the even elements' (the low halves of the 32-bit lanes) and the odd ones' (the
// high halves).
//
// What it saves, per 16 elements: widening a half is one instruction (a shift or a mask) instead
// of a zero-extending load and a shift; the two halves' rounded bits go out as one 64-byte store
// after a shift and a blend instead of a shift and a two-instruction narrowing each; and the
// parameter's stochastic rounding hashes once per pair of elements, as the generator shares its
// draws (bfloat16.hpp). The same arithmetic on the same elements: the same bits as sweep_view's
// on every target.
#pragma once

#include <cstdint>

#include "bfloat16.hpp"
#include "prefetch.hpp"

namespace fastoptim {
FASTOPTIM_TARGET_BEGIN

#if defined(__AVX512F__) && defined(__AVX512DQ__)

// What the even half leaves for the odd one: each array's rounded bits (the parameter's at 0,
// slot s's at 1 + s), stored beside the odd half's, and the parameter's draws of the 16 pairs.
struct PairScratch {
    __m512i even[1 + kMaxStateSlots];
    __m512i draws;
};

// A view (BfloatParams of StoredAs) that reads and writes one half of each 32 elements at i.
template <class Base, int Phase>
struct PairHalf : Base {
    PairScratch* scratch;

    PairHalf(const Base& base, PairScratch* s) : Base(base), scratch(s) {}

    static FASTOPTIM_INLINE __m512i high_mask() { return _mm512_set1_epi32(int(0xFFFF0000U)); }
    static FASTOPTIM_INLINE Avx512F32 widen(const std::uint16_t* p) {
        const __m512i raw = _mm512_loadu_si512(p);
        const __m512i bits = Phase == 0 ? _mm512_slli_epi32(raw, 16) : _mm512_and_si512(raw, high_mask());
        return Avx512F32::wrap(_mm512_castsi512_ps(bits));
    }
    // The even half's bits wait; the odd half's go out with them, each in its 16-bit place.
    FASTOPTIM_INLINE void put(int k, std::uint16_t* p, __m512i rounded) const {
        if constexpr (Phase == 0) scratch->even[k] = rounded;
        else _mm512_storeu_si512(p, _mm512_ternarylogic_epi32(high_mask(), rounded,
                                                                 _mm512_srli_epi32(scratch->even[k], 16), 0xCA));
    }
    // Counters of this half's elements: the low 32 bits of first + i + Phase + 2k.
    FASTOPTIM_INLINE __m512i own_counters(index_t i) const {
        const std::uint32_t first = std::uint32_t(std::uint64_t(this->first_index + i + Phase));
        return _mm512_add_epi32(_mm512_set1_epi32(int(first)),
                                _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30));
    }

    template <class V>
    FASTOPTIM_INLINE V load_param_bits(index_t i) const { return widen(this->param_bits + i); }
    template <class V>
    FASTOPTIM_INLINE V load_grad_bits(index_t i) const { return widen(this->grad_bits + i); }
    template <class V>
    FASTOPTIM_INLINE V load_stored(int slot, index_t i) const { return widen(this->slot_bits(slot) + i); }

    template <class V>
    FASTOPTIM_INLINE V store_param_bits(index_t i, const V& value) const {
        using B = Bits<V>;
        __m512i rounded;
        if (this->param_stochastic) {
            if constexpr (Phase == 0)  // pairs j0 + k, j0 = the chunk's first index (even) / 2
                scratch->draws = draw<B>(B::counters(std::uint32_t(std::uint64_t(this->first_index + i)) >> 1),
                                         this->param_key);
            rounded = B::add(quieted_bits(value), half_of<B>(scratch->draws, Phase));
        } else {
            rounded = nearest_bits(value);
        }
        put(0, this->param_bits + i, rounded);
        return stored_value<V>(rounded);
    }
    template <class V>
    FASTOPTIM_INLINE V store_stored(int slot, index_t i, const V& value) const {
        using B = Bits<V>;
        __m512i rounded;
        if constexpr (Base::kStateFormat == StateFormat::bf16_nearest) {
            rounded = nearest_bits(value);
        } else {  // a state slot draws per element (bfloat16.hpp)
            const __m512i h = draw<B>(own_counters(i), this->keys[slot / 2]);
            rounded = B::add(quieted_bits(value), half_of<B>(h, slot % 2));
        }
        put(1 + slot, this->slot_bits(slot) + i, rounded);
        return stored_value<V>(rounded);
    }
};

// Rule over [begin, end) of `a` in pairs of halves, scalars up to the parameter's first 64-byte
// boundary and after the last whole 32 elements. False, having done nothing, where the pairs
// would start on an odd index with stochastically rounded parameters (a shard's odd first index:
// its draws pair other neighbours); sweep_view then takes the array.
template <class Rule, class A, class Coeffs>
bool sweep_pairs(const Coeffs& c, const A& a, index_t begin, index_t end, const Streams<float>& streams) {
    const std::uintptr_t at = reinterpret_cast<std::uintptr_t>(a.param_bits + begin);
    const index_t head = std::min(end - begin, index_t((64 - at % 64) % 64 / 2));
    if (a.param_stochastic && (a.first_index + begin + head) % 2 != 0) return false;
    index_t i = begin;
    for (; i < begin + head; ++i) Rule::template update<Scalar<float>>(c, a, i);
    PairScratch scratch;
    const PairHalf<A, 0> even(a, &scratch);
    const PairHalf<A, 1> odd(a, &scratch);
    for (; i + 32 <= end; i += 32) {
        if (streams.count > 0 && i + Streams<float>::ahead + 32 <= a.size) streams.template fetch<32>(i);
        Rule::template update<Avx512F32>(c, even, i);
        Rule::template update<Avx512F32>(c, odd, i);
    }
    for (; i < end; ++i) Rule::template update<Scalar<float>>(c, a, i);
    return true;
}

#else

template <class Rule, class A, class Coeffs>
bool sweep_pairs(const Coeffs&, const A&, index_t, index_t, const Streams<float>&) {
    return false;  // no AVX-512: sweep_view's walk
}

#endif

FASTOPTIM_TARGET_END
}  // namespace fastoptim
