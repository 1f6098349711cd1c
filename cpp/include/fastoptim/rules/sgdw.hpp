// SGDW: SGD with decoupled weight decay (Loshchilov & Hutter 2019, Algorithm 1): the weights
// decay apart from the gradient, so the momentum carries the gradient alone. torch.optim.SGD's
// arguments and defaults; the step is torch's SGD with weight_decay 0 after p ← p·(1 − γλ).
//
//   p ← p·(1 − γλ)
//   g ← ±g
//   b ← g on the first step, else μ·b + (1 − τ)·g;   g ← g + μ·b if nesterov else b
//   p ← p − γ·g
#pragma once

#include "sgd.hpp"

namespace fastoptim {
FASTOPTIM_TARGET_BEGIN

struct Sgdw : Sgd {  // SGD's schema, slots and update; only the weight decay differs
    static constexpr const char* name = "sgdw";

    template <class T>
    static Coeffs<T> fold(const Hyper& h, const Clock& clock) {
        Coeffs<T> c = Sgd::fold<T>(h, clock);
        c.weight_decay = T(0);
        c.decay = T(1.0 - h.lr * h.weight_decay);
        c.decays = h.weight_decay != 0;
        return c;
    }
};

// SGDW with cautious updates, as SGD's.
struct SgdwCautious : Cautious<Sgdw> {
    static constexpr const char* name = "sgdw_cautious";
};

FASTOPTIM_TARGET_END
}  // namespace fastoptim
