// What the header-only sweep benchmarks (sweep_in_cache.cpp, sweep_ab.cpp) step: one AdamW array
// (torch's defaults, weight decay 0.01) at step 10, its state in two slots. In the target's
// namespace, as the kernels: sweep_ab.cpp links two builds of the headers into one program.
#pragma once

#include <fastoptim/rules/adam.hpp>

namespace fastoptim {
FASTOPTIM_TARGET_BEGIN

inline ArrayRef<float> adamw_arrays(float* p, float* g, void* m, void* v, index_t n) {
    ArrayRef<float> a;
    a.param = p;
    a.grad = g;
    a.state[0] = m;
    a.state[1] = v;
    a.size = n;
    return a;
}

inline AdamCoeffs<float> adamw_coeffs() {
    AdamHyper h;
    h.weight_decay = 0.01;
    h.decoupled = 1;
    Clock clock;
    clock.step = 10;
    return Adam::fold<float>(h, clock);
}

FASTOPTIM_TARGET_END
}  // namespace fastoptim
