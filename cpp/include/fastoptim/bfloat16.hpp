// bfloat16 storage for float32 state, and the counter-based generator of stochastic rounding.
//
// A bfloat16 is the top 16 bits of a float32, so loading one is a shift and storing one is a
// rounding of the low 16 bits, both done here in integer lanes: identical on SSE2, AVX2,
// AVX-512 and in scalar code, with subnormals kept (no hardware conversion, which may flush).
//
//   nearest even:  b = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
//   stochastic:    b = (u + r) >> 16, r uniform in [0, 2^16): rounds up with probability
//                  (u mod 2^16) / 2^16, the distance to the lower neighbour over the gap
//   NaN:           sign | 0x7FC0 (a quiet NaN, as ml_dtypes), never an infinity
//
// The generator (shared with bfloat16 weights): one 32-bit draw per element serves two state
// slots, r being its low 16 bits for an even slot and its high 16 bits for an odd one, of
//   h = mix32(mix32(lo ^ k0) ^ k1),  mix32(x): x ^= x >> 16; x *= 0x7feb352d; x ^= x >> 15;
//                                              x *= 0x846ca68b; x ^= x >> 16   (lowbias32)
// where lo is the low 32 bits of the element's index within its parameter (never a shard's
// or a thread's index), and (k0, k1) the low and high halves of
//   pair_key = mix64(mix64(round_key ^ (slot / 2)) ^ (index >> 32)),
//   round_key = mix64(mix64(mix64(seed + 0x9E3779B97F4A7C15) ^ position) ^ step),
// mix64 being splitmix64's finalizer, `position` the parameter's place in its optimizer and
// `step` its step count (1 on the first). A bfloat16 parameter's elements draw under pair
// kParamPair = 2 (never a state slot's draws), two neighbours from one h: the elements whose
// index has low 32 bits 2j and 2j + 1 take the low and the high 16 bits of h with lo = j. The
// same (seed, position, step, slot, index) gives the same bits whatever the target, the thread
// count or the sharding.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "bits.hpp"
#include "rule.hpp"
#include "vec.hpp"

namespace fastoptim {

// splitmix64's finalizer: a bijection of 64 bits with full avalanche.
constexpr std::uint64_t mix64(std::uint64_t x) {
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

// The key of one parameter's stochastic rounding at one step.
constexpr std::uint64_t round_key(std::uint64_t seed, std::uint64_t position, std::uint64_t step) {
    return mix64(mix64(mix64(seed + 0x9E3779B97F4A7C15ULL) ^ position) ^ step);
}

// The pair whose draws round a bfloat16 parameter (state slots use pairs 0 and 1).
inline constexpr int kParamPair = (kMaxStateSlots + 1) / 2;

// The key of the draws of state slots 2·pair and 2·pair + 1 for the elements whose index has
// these high 32 bits.
constexpr std::uint64_t pair_key(std::uint64_t round, int pair, std::uint64_t index_high) {
    return mix64(mix64(round ^ std::uint64_t(pair)) ^ index_high);
}

FASTOPTIM_TARGET_BEGIN

// lowbias32 (Wellons): a bijection of 32 bits, each output bit depending on every input bit.
template <class B>
FASTOPTIM_INLINE typename B::R mix32(typename B::R x) {
    x = B::mul(B::xor_(x, B::template shr<16>(x)), 0x7feb352dU);
    x = B::mul(B::xor_(x, B::template shr<15>(x)), 0x846ca68bU);
    return B::xor_(x, B::template shr<16>(x));
}

// The float32 bits of x, with a NaN made the quiet NaN of its sign: no rounding then carries
// it into an infinity.
template <class V, class B = Bits<V>>
FASTOPTIM_INLINE typename B::R quieted_bits(const V& x) {
    const typename B::R u = B::of(x);
    return B::nan_or(x, B::or_(B::and_(u, B::set1(0x80000000U)), B::set1(0x7FC00000U)), u);
}

template <class V>
FASTOPTIM_INLINE V load_bfloat16(const std::uint16_t* p) { return Bits<V>::to_float(Bits<V>::load16(p)); }

// The stores return the value stored, as a float32 (what load_bfloat16 reads back).
template <class V>
FASTOPTIM_INLINE V stored_value(typename Bits<V>::R rounded) {
    return Bits<V>::to_float(Bits<V>::and_(rounded, Bits<V>::set1(0xFFFF0000U)));
}

// x's bits rounded to nearest even: the bfloat16 in the top 16 bits.
template <class V>
FASTOPTIM_INLINE typename Bits<V>::R nearest_bits(const V& x) {
    using B = Bits<V>;
    const typename B::R u = quieted_bits(x);
    const typename B::R odd = B::and_(B::template shr<16>(u), B::set1(1));
    return B::add(u, B::add(odd, B::set1(0x7FFF)));
}

// One 32-bit draw's 16-bit half: the low one (0: an even slot, an even element) or the high one.
template <class B>
FASTOPTIM_INLINE typename B::R half_of(typename B::R h, int half) {
    return half == 0 ? B::and_(h, B::set1(0xFFFFU)) : B::template shr<16>(h);
}

// h = mix32(mix32(counters ^ k0) ^ k1), lane by lane.
template <class B>
FASTOPTIM_INLINE typename B::R draw(typename B::R counters, const std::uint32_t key[2]) {
    return mix32<B>(B::xor_(mix32<B>(B::xor_(counters, B::set1(key[0]))), B::set1(key[1])));
}

// The 16 random bits of a bfloat16 parameter's elements whose indices' low 32 bits are `lo`: two
// neighbours share a draw, h of lo >> 1, the even one taking its low half, the odd its high half.
template <class B>
FASTOPTIM_INLINE typename B::R param_draws(typename B::R lo, const std::uint32_t key[2]) {
    const typename B::R h = draw<B>(B::template shr<1>(lo), key);
    const typename B::R low = half_of<B>(h, 0), high = half_of<B>(h, 1);
    const typename B::R odd = B::sub(B::set1(0), B::and_(lo, B::set1(1)));  // all ones for odd indices
    return B::xor_(low, B::and_(B::xor_(low, high), odd));
}

template <class V>
FASTOPTIM_INLINE V store_bfloat16_nearest(std::uint16_t* p, const V& x) {
    const typename Bits<V>::R rounded = nearest_bits(x);
    Bits<V>::store16(p, rounded);
    return stored_value<V>(rounded);
}

// `counter` is the low 32 bits of the first element's index within its parameter; key is
// pair_key's (k0, k1) for the pair of `slot`. The two slots of a pair compute the same draw,
// which the compiler computes once.
template <class V>
FASTOPTIM_INLINE V store_bfloat16_stochastic(std::uint16_t* p, const V& x, int slot, std::uint32_t counter,
                                             const std::uint32_t key[2]) {
    using B = Bits<V>;
    const typename B::R h = draw<B>(B::counters(counter), key);
    const typename B::R rounded = B::add(quieted_bits(x), half_of<B>(h, slot % 2));
    B::store16(p, rounded);
    return stored_value<V>(rounded);
}

// Gradient elements [i, i + V::width) of `a`, of its type or bfloat16 (a
// bfloat16 parameter's, or the float32 sum a step reads in its place).
template <class V, class T>
FASTOPTIM_INLINE V gradient_at(const ArrayRef<T>& a, index_t i) {
    if constexpr (std::is_same_v<T, float>)
        if (a.grad_bits) return load_bfloat16<V>(a.grad_bits + i);
    return V::load(a.grad + i);
}

// An ArrayRef whose state slots hold bfloat16 patterns, as the rules read it (rule.hpp's
// load_state and store_state call load_stored and store_stored). For stochastic rounding,
// `keys` hold each pair of slots' key for elements whose index within the parameter has the
// same high 32 bits; sweep.hpp cuts a sweep where that changes.
template <class T, StateFormat F>
struct StoredAs : ArrayRef<T> {
    static_assert(std::is_same_v<T, float>, "bfloat16 state is for float32 parameters");
    static constexpr StateFormat kStateFormat = F;
    std::uint32_t keys[(kMaxStateSlots + 1) / 2][2] = {};

    explicit StoredAs(const ArrayRef<T>& a) : ArrayRef<T>(a) {}

    std::uint16_t* slot_bits(int slot) const { return static_cast<std::uint16_t*>(this->state[slot]); }
    template <class V>
    FASTOPTIM_INLINE V load_stored(int slot, index_t i) const { return load_bfloat16<V>(slot_bits(slot) + i); }
    template <class V>
    FASTOPTIM_INLINE V store_stored(int slot, index_t i, const V& value) const {
        if constexpr (F == StateFormat::bf16_nearest)
            return store_bfloat16_nearest(slot_bits(slot) + i, value);
        else
            return store_bfloat16_stochastic(slot_bits(slot) + i, value, slot,
                                             std::uint32_t(std::uint64_t(this->first_index + i)), keys[slot / 2]);
    }
    // The keys of the elements whose index within the parameter has these high 32 bits.
    void set_keys(std::uint64_t index_high) {
        for (int pair = 0; pair < (kMaxStateSlots + 1) / 2; ++pair) {
            const std::uint64_t k = pair_key(this->round_key, pair, index_high);
            keys[pair][0] = std::uint32_t(k);
            keys[pair][1] = std::uint32_t(k >> 32);
        }
    }
};

// A view (ArrayRef, StoredAs or CodedAs) of an array whose parameter is bfloat16 (rule.hpp's
// load_param, load_grad and store_param call these). Its gradient is bfloat16, or float32 when
// a step reads the accumulated sum in its place: one branch per vector, the same way every time.
template <class Base>
struct BfloatParams : Base {
    static constexpr bool kBfloat16Params = true;
    std::uint32_t param_key[2] = {};

    using Base::Base;
    explicit BfloatParams(const Base& base) : Base(base) {}

    template <class V>
    FASTOPTIM_INLINE V load_param_bits(index_t i) const { return load_bfloat16<V>(this->param_bits + i); }
    template <class V>
    FASTOPTIM_INLINE V load_grad_bits(index_t i) const { return gradient_at<V>(*this, i); }
    template <class V>
    FASTOPTIM_INLINE V store_param_bits(index_t i, const V& value) const {
        using B = Bits<V>;
        typename B::R rounded;
        if (this->param_stochastic) {
            const typename B::R lo = B::counters(std::uint32_t(std::uint64_t(this->first_index + i)));
            rounded = B::add(quieted_bits(value), param_draws<B>(lo, param_key));
        } else {
            rounded = nearest_bits(value);
        }
        B::store16(this->param_bits + i, rounded);
        return stored_value<V>(rounded);
    }
    // The keys of the elements whose index within the parameter has these high 32 bits.
    void set_keys(std::uint64_t index_high) {
        if constexpr (Base::kStateFormat == StateFormat::bf16_stochastic) Base::set_keys(index_high);
        const std::uint64_t k = pair_key(this->round_key, kParamPair, index_high);
        param_key[0] = std::uint32_t(k);
        param_key[1] = std::uint32_t(k >> 32);
    }
};

// Whether a view draws random bits: its state or its parameter rounds stochastically.
template <class View>
bool draws(const View& view) {
    if constexpr (View::kStateFormat == StateFormat::bf16_stochastic) return true;
    else if constexpr (View::kBfloat16Params) return view.param_stochastic;
    else return false;
}

// f(view, begin, end) over [begin, end) of `view`, cut where the high 32 bits of the element's
// index within its parameter change (arrays past 2^32 elements), the keys set for each stretch.
template <class View, class F>
FASTOPTIM_INLINE void for_each_stretch(View view, index_t begin, index_t end, const F& f) {
    if (!draws(view)) return f(view, begin, end);
    constexpr index_t span = index_t(1) << 32;
    for (index_t lo = begin; lo < end;) {
        const index_t at = view.first_index + lo;
        const index_t hi = std::min(end, lo + (span - at % span));
        view.set_keys(std::uint64_t(at) >> 32);
        f(view, lo, hi);
        lo = hi;
    }
}

FASTOPTIM_TARGET_END
}  // namespace fastoptim
