// The size of the CPU's last-level cache, as the operating system reports it, and what it
// means for prefetching.
#pragma once

#include <cstdint>

namespace fastoptim {

// Bytes of the largest cache level the first CPU reports (the L3 a core shares with its
// neighbours, or the L2 where that is the last); 0 when the system does not say.
std::int64_t last_level_cache_bytes();

// The step size, in bytes of arrays, beyond which sweeps prefetch (prefetch.hpp): an eighth of
// the last-level cache (below it the arrays sit in the cache between steps, where the hardware
// prefetcher keeps up); kDefaultPrefetchAbove when the system does not say.
std::int64_t default_prefetch_above();

}  // namespace fastoptim
