// Process-wide settings: the instruction-set target in use and the thread count.
#pragma once

#include <string>

#include "cpu.hpp"

namespace fastoptim {

const Target& current_target();
void set_target(const std::string& name);  // std::invalid_argument if unknown or unsupported

int num_threads();
void set_num_threads(int n);  // std::invalid_argument if n < 1
bool has_openmp();

}  // namespace fastoptim
