// What every update rule shares: the arrays one element-wise update touches, and the clock.
//
// A rule is a struct with
//   Hyper            the user's hyper-parameters, doubles only, in the order of `fields`;
//   Coeffs<T>        everything constant within a step, folded once per step (bias
//                    corrections, lr·wd, ...), so the per-element work is a few flops;
//   fold<T>(h, clk)  Hyper and the step count -> Coeffs<T>;
//   update<V>(c, a, i)  the update of elements [i, i + V::width), written once for every V.
#pragma once

#include "config.hpp"
#include "schema.hpp"

namespace fastoptim {

// Plain data, outside the per-target namespace: the same types cross from the dispatcher into
// every target's kernels. They carry no code, so no target's instructions can leak through them.
inline constexpr int kMaxStateSlots = 4;

// How a parameter's state slots are stored: as the parameter's type, or (float32 parameters
// only) as bfloat16 bit patterns, rounded to nearest even or stochastically (bfloat16.hpp), or
// as 8-bit codes with a float32 absmax per block (int8_state.hpp). Arithmetic is the
// parameter's type either way; only the storage shrinks.
enum class StateFormat : std::uint8_t { native, bf16_nearest, bf16_stochastic, int8 };

// One parameter array with its gradient and its state arrays (unused slots are null).
// `state` points at T elements, or at std::uint16_t bfloat16 patterns or std::uint8_t codes when
// state_format says so; 8-bit state has each slot's block absmax at absmax[slot].
// Stochastic rounding draws from a counter (bfloat16.hpp): element i of this array is element
// first_index + i of its parameter (a shard's elements keep their parameter's counters), and
// round_key is the key of (seed, parameter position, step) the caller set for this step.
// Rules that scale a whole array by a ratio of norms (LAMB, LARS) find it at *ratio.
// Every gradient element is read as grad[i]·grad_mult: a step's loss scale and clipping
// coefficient fold into it (1/scale × clip), so neither is ever written into the gradients;
// x·1 is x exactly, so the default changes no bit.
// The fused step's extras, all off by default: `accumulated` gradients are added to g·grad_mult
// (the last micro-batch read inside the step's own sweep); `cleared` is zeroed as each element's
// parameter is stored (the accumulation buffer the step consumed); `ema` moves toward each new
// parameter value as torch's lerp with weight `ema_weight` = 1 − decay.
template <class T>
struct ArrayRef {
    using value_type = T;
    T* param = nullptr;
    const T* grad = nullptr;
    void* state[kMaxStateSlots] = {};
    float* absmax[kMaxStateSlots] = {};
    index_t size = 0;
    const T* ratio = nullptr;
    T grad_mult = T(1);
    const T* accumulated = nullptr;
    T* cleared = nullptr;
    T* ema = nullptr;
    T ema_weight = T(0);
    StateFormat state_format = StateFormat::native;
    index_t first_index = 0;
    std::uint64_t round_key = 0;
    std::uint16_t* param_bits = nullptr;
    const std::uint16_t* grad_bits = nullptr;
    bool param_stochastic = false;
    // What the update of this type reads: ArrayRef itself is always native, with parameters of
    // its type (sweep.hpp hands the rules StoredAs, CodedAs and BfloatParams views for the others).
    static constexpr StateFormat kStateFormat = StateFormat::native;
    static constexpr bool kBfloat16Params = false;
    static constexpr bool kExtras = true;  // accumulated, cleared and ema may be set (WithoutExtras: null)
};

// Where a parameter group is in its life: `step` counts this step (1 on the first), `fresh`
// says its state arrays hold nothing yet (torch seeds some buffers from the first gradient),
// `scalars` are the group's running scalars after this step's advance (NAdam's Πμ).
// Whose clock a rule keeps: each parameter's (torch keeps `step` per parameter: a state dict
// may give the parameters of one group different steps), or one per group.
enum class ClockScope : std::uint8_t { per_param, per_group };

struct Clock {
    std::int64_t step = 1;
    bool fresh = true;
    const double* scalars = nullptr;
};

FASTOPTIM_TARGET_BEGIN

// A view whose extras are known to be null (a plain step's sweep, sweep.hpp): load_grad and
// store_param then put none of their branches in the loop.
template <class A>
struct WithoutExtras : A {  // in the target's namespace: its constructor is code
    static constexpr bool kExtras = false;
    explicit WithoutExtras(const A& a) : A(a) {}
};

// How a rule's update reads and writes elements [i, i + V::width) of its arrays. Every rule goes
// through these, never through the pointers, and takes its arrays as any type A: an ArrayRef, or
// a view whose state or parameters are stored otherwise (bfloat16.hpp, int8_state.hpp). How an
// array is stored is then decided here, at compile time, without touching any rule.
template <class V, class A>
FASTOPTIM_INLINE V load_param(const A& a, index_t i) {
    if constexpr (A::kBfloat16Params) return a.template load_param_bits<V>(i);
    else return V::load(a.param + i);
}
template <class V, class A>
FASTOPTIM_INLINE V load_grad(const A& a, index_t i) {
    V g;
    if constexpr (A::kBfloat16Params) g = a.template load_grad_bits<V>(i);
    else g = V::load(a.grad + i);
    g = g * V(a.grad_mult);
    if constexpr (A::kExtras) return a.accumulated ? V::load(a.accumulated + i) + g : g;
    else return g;
}
// torch.lerp(ema, p, w), with torch's two forms (exact at both ends): ema stays p when it is p.
// torch picks the form by |w|: Schedule-Free's switch lerps with negative weights.
template <class V, class T>
FASTOPTIM_INLINE V lerp_toward(const V& ema, const V& p, T w) {
    return (w < T(0.5) && w > T(-0.5)) ? ema + V(w) * (p - ema) : p - (p - ema) * V(T(1) - w);
}
template <class V, class A>
FASTOPTIM_INLINE V load_state(const A& a, int slot, index_t i) {
    using T = typename V::value_type;
    if constexpr (A::kStateFormat == StateFormat::native) return V::load(static_cast<const T*>(a.state[slot]) + i);
    else return a.template load_stored<V>(slot, i);
}
// The last write of an element's update: the extras that follow a new parameter value go here
// (the EMA follows the value as stored: a bfloat16 parameter's, rounded).
template <class A, class V>
FASTOPTIM_INLINE void store_param(const A& a, index_t i, const V& value) {
    V stored = value;
    if constexpr (A::kBfloat16Params) stored = a.template store_param_bits<V>(i, value);
    else value.store(a.param + i);
    if constexpr (A::kExtras) {
        if (a.ema) lerp_toward(V::load(a.ema + i), stored, a.ema_weight).store(a.ema + i);
        if (a.cleared) V(typename V::value_type(0)).store(a.cleared + i);
    }
}
// Returns the value as stored, which a later pass's load_state reads back (rounded, for bfloat16
// state): a pass that stores state for another pass to read computes from this (LAMB's norms).
// Within one update a slot is never loaded after it is stored: 8-bit state keeps the stores of a
// block aside until the block is done, and its loads read the block's codes as they were.
template <class A, class V>
FASTOPTIM_INLINE V store_state(const A& a, int slot, index_t i, const V& value) {
    using T = typename V::value_type;
    if constexpr (A::kStateFormat == StateFormat::native) {
        value.store(static_cast<T*>(a.state[slot]) + i);
        return value;
    } else {
        return a.store_stored(slot, i, value);
    }
}

// What a rule has unless it says otherwise: no per-group running scalars, no norms, and a
// gradient to read. Rules derive from it and override what they need.
struct RuleBase {
    static constexpr int scalars = 0;       // running per-group scalars (NAdam's mu_product)
    static constexpr const char* scalar_names[1] = {""};
    static constexpr double scalar_init[1] = {0.0};
    static constexpr double scalar_low[1] = {0.0};   // the range a loaded scalar must lie in
    static constexpr double scalar_high[1] = {0.0};
    static constexpr ClockScope clock = ClockScope::per_param;  // torch's choice
    static constexpr int norms = 0;         // per-array norms the update needs (LAMB, LARS)
    static constexpr int measured_slots = 0;  // state slots the norm pass reads and writes (prefetched)
    static constexpr bool measure_reads_state = false;  // the norm pass reads every slot, writing none (cautious)
    static constexpr bool update_reads_grad = true;  // else the update pass leaves g alone (LAMB)
    static constexpr bool needs_grad = true;
    template <class Hyper>
    static void advance(const Hyper&, const Clock&, double*) {}
};

FASTOPTIM_TARGET_END

}  // namespace fastoptim
