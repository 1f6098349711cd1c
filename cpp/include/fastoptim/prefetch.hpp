// Software prefetch of the streams a sweep walks.
//
// An optimizer step walks four to seven arrays at once. The hardware prefetcher tracks them,
// but from DRAM it starts late on each new page and keeps too few lines in flight per stream,
// so the sweep also asks for the line kPrefetchBytes ahead in every stream it reads. From the
// cache the hardware keeps up alone while the arrays are a small part of it, and the extra
// instructions and fill buffers only slow the sweep; a large last-level cache (a 105 MiB L3) fed
// a 16 MB sweep 9% faster prefetched. Where the line falls is `prefetch_above`, the step's bytes
// (every array it reads) beyond which it prefetches; the runtime library sets it to an eighth of
// the CPU's last-level cache (cache.cpp). A hint only: the bits do not depend on it.
#pragma once

#include "rule.hpp"

#if defined(_MSC_VER) && (defined(_M_X64) || defined(_M_IX86))
#include <xmmintrin.h>
#endif

namespace fastoptim {

// prefetch_above for callers that do not know the cache (8 MiB: an eighth of a 64 MiB last-level
// cache; the runtime's own line comes from the CPU's, cache.cpp).
inline constexpr index_t kDefaultPrefetchAbove = index_t(8) << 20;

FASTOPTIM_TARGET_BEGIN

inline constexpr index_t kPrefetchBytes = 2048;  // how far ahead of the sweep, in every stream
inline constexpr index_t kLineBytes = 64;
inline constexpr int kMaxStreams = 4 + kMaxStateSlots;  // p, g, every state slot, accumulated, ema

FASTOPTIM_INLINE void prefetch_line(const char* p) {
#if defined(__GNUC__) || defined(__clang__)
    __builtin_prefetch(p, 0, 3);
#elif defined(_MSC_VER) && (defined(_M_X64) || defined(_M_IX86))
    _mm_prefetch(p, _MM_HINT_T0);
#else
    (void)p;
#endif
}

// The arrays of one sweep, as bytes, to prefetch ahead of element i. A stream may hold
// elements of half or a quarter of T's size (bfloat16 state or 8-bit codes beside float32
// parameters): `shift` halves its bytes that many times.
template <class T>
struct Streams {
    const char* base[kMaxStreams];
    unsigned char shift[kMaxStreams];
    int count = 0;
    bool halved = false;  // some stream's elements are narrower than T

    void add(const void* p, int halvings = 0) {
        if (p != nullptr && count < kMaxStreams) {
            shift[count] = static_cast<unsigned char>(halvings);
            base[count++] = static_cast<const char*>(p);
            halved = halved || halvings != 0;
        }
    }
    static constexpr index_t ahead = kPrefetchBytes / index_t(sizeof(T));  // elements

    // The lines holding elements [i + ahead, i + ahead + n) of every stream; the caller keeps
    // i + ahead + n within the arrays.
    template <index_t n>
    FASTOPTIM_INLINE void fetch(index_t i) const {
        constexpr index_t bytes = n * index_t(sizeof(T));
        const index_t at = (i + ahead) * index_t(sizeof(T));
        if (!halved) {  // the usual case, without a shift per stream: a few instructions per line
            for (int s = 0; s < count; ++s)
                for (index_t b = 0; b < bytes; b += kLineBytes) prefetch_line(base[s] + at + b);
            return;
        }
        for (int s = 0; s < count; ++s) {
            const int h = shift[s];
            for (index_t b = 0; b < (bytes >> h); b += kLineBytes) prefetch_line(base[s] + (at >> h) + b);
        }
    }
};

// The bytes of one element of `a`'s state slots (bfloat16 and 8-bit state are for float32
// parameters: a float64 array's format is ignored, by the sweeps as here). 8-bit state's absmax,
// 4 bytes per 256 elements, is left out.
template <class T>
index_t state_bytes(const ArrayRef<T>& a) {
    if (sizeof(T) != 4 || a.state_format == StateFormat::native) return index_t(sizeof(T));
    return a.state_format == StateFormat::int8 ? 1 : 2;
}

// The arrays of `a` a pass reads: p, g when `grad` (either as bfloat16 patterns), and the
// first `slots` state slots that exist; none unless `prefetch`. Prefetching an array the pass
// skips would cost bandwidth.
template <class T>
Streams<T> streams_of(const ArrayRef<T>& a, bool prefetch, bool grad, int slots) {
    Streams<T> streams;
    if (!prefetch) return streams;
    streams.add(a.param);
    streams.add(a.param_bits, 1);
    if (grad) streams.add(a.grad);
    if (grad) streams.add(a.grad_bits, 1);
    const int halvings = sizeof(T) / state_bytes(a) == 4 ? 2 : sizeof(T) / state_bytes(a) == 2 ? 1 : 0;
    for (int s = 0; s < slots; ++s) streams.add(a.state[s], halvings);
    if (grad) streams.add(a.accumulated);
    streams.add(a.ema);
    return streams;
}

// The bytes of every array of `a`: what a pass over all of it brings into the cache.
template <class T>
index_t bytes_of(const ArrayRef<T>& a) {
    int arrays = (a.param != nullptr) + (a.grad != nullptr);
    arrays += (a.accumulated != nullptr) + (a.ema != nullptr);
    const int halves = (a.param_bits != nullptr) + (a.grad_bits != nullptr);  // bfloat16 parameters
    int slots = 0;
    for (const void* s : a.state) slots += s != nullptr;
    return a.size * (index_t(sizeof(T)) * arrays + 2 * halves + state_bytes(a) * slots);
}

FASTOPTIM_TARGET_END
}  // namespace fastoptim
