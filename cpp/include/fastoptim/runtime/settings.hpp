// Process-wide settings: the instruction-set target in use and the thread count.
#pragma once

#include <string>

#include "fastoptim/runtime/cpu.hpp"

namespace fastoptim {

const Target& current_target();
void set_target(const std::string& name);  // std::invalid_argument if unknown or unsupported

int num_threads();
void set_num_threads(int n);  // std::invalid_argument if n < 1
bool has_openmp();

// Steps whose arrays add up to more bytes than this prefetch (prefetch.hpp); by default
// default_prefetch_above() (cache.hpp).
std::int64_t prefetch_above();
void set_prefetch_above(std::int64_t nbytes);  // std::invalid_argument if nbytes < 0

}  // namespace fastoptim
