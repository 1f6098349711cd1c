// The header-only C++ interface: every rule, its vector types, the threaded step and the
// gradient norm.
#pragma once

#include "grad_norm.hpp"
#include "parallel.hpp"
#include "rules.hpp"
#include "sweep.hpp"
