// The header-only C++ interface: every rule, its vector types and the threaded step.
#pragma once

#include "parallel.hpp"
#include "rules.hpp"
#include "sweep.hpp"
