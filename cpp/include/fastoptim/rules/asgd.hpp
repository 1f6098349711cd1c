// Averaged SGD (Polyak & Juditsky 1992; torch.optim.ASGD), with torch's decaying step size:
//
//   g ← ±g + λ_wd·p
//   p ← p·(1 − λ·η_t) − η_t·g
//   ax ← p if μ_t = 1, else ax + μ_t·(p − ax)
//   η_{t+1} = γ / (1 + λ·γ·t)^α  (η_1 = γ);   μ_{t+1} = 1 / max(1, t − t0)  (μ_1 = 1)
//
// As torch, η_{t+1} takes the learning rate of step t: running scalars carry it to step t + 1.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>

#include "../rule.hpp"
#include "../schema.hpp"
#include "../vec.hpp"

namespace fastoptim {

// Asgd's hyper-parameters, set by name from torch.optim.ASGD's defaults: `Asgd::Hyper h; h.lr = 0.1;`.
// Flags are 0 or 1. Outside the target namespace: the same type in every target.
struct AsgdHyper {
    double lr = 1e-2;
    double lambd = 1e-4;
    double alpha = 0.75;
    double t0 = 1e6;
    double weight_decay = 0.0;
    double maximize = 0.0;
    constexpr AsgdHyper() noexcept {}  // not an aggregate, so a positional row does not compile
};

// What Asgd's fold computes once per step and every element's update reads (plain data).
template <class T>
struct AsgdCoeffs {
    T decay, eta, mu, weight_decay, grad_sign;
    bool copies;  // μ_t = 1: the average is the parameter
};

FASTOPTIM_TARGET_BEGIN

struct Asgd : RuleBase {
    static constexpr const char* name = "asgd";
    using Hyper = AsgdHyper;
    static constexpr std::array<Field, 6> fields = {{
        FASTOPTIM_FIELD(Hyper, lr, "lr", at_least(0.0)),
        FASTOPTIM_FIELD(Hyper, lambd, "lambd", at_least(0.0)),
        FASTOPTIM_FIELD(Hyper, alpha, "alpha", any_real()),
        FASTOPTIM_FIELD(Hyper, t0, "t0", any_real()),
        FASTOPTIM_FIELD(Hyper, weight_decay, "weight_decay", at_least(0.0)),
        FASTOPTIM_FLAG(Hyper, maximize, "maximize"),
    }};
    static constexpr std::array<Slot, 1> slots = {{{"ax"}}};
    // torch's eta and mu (the next step's, as its state holds them), and this step's η and μ:
    // each computed a step ahead, with that step's lr and t0, as torch does.
    static constexpr int scalars = 4;
    static constexpr const char* scalar_names[4] = {"eta", "mu", "eta_now", "mu_now"};
    static constexpr double scalar_init[4] = {0.0, 1.0, 0.0, 1.0};
    static constexpr double scalar_low[4] = {0.0, 0.0, 0.0, 0.0};
    static constexpr double scalar_high[4] = {kUnbounded, 1.0, kUnbounded, 1.0};
    template <class T>
    using Coeffs = AsgdCoeffs<T>;

    static void advance(const Hyper& h, const Clock& clock, double* scalars) {
        const double t = double(clock.step);
        scalars[2] = clock.step == 1 ? h.lr : scalars[0];
        scalars[3] = clock.step == 1 ? 1.0 : scalars[1];
        scalars[0] = h.lr / std::pow(1.0 + h.lambd * h.lr * t, h.alpha);
        scalars[1] = 1.0 / std::max(1.0, t - h.t0);
    }

    template <class T>
    static Coeffs<T> fold(const Hyper& h, const Clock& clock) {
        const double eta = clock.scalars[2], mu = clock.scalars[3];
        return {T(1.0 - h.lambd * eta), T(eta), T(mu), T(h.weight_decay), h.maximize != 0 ? T(-1) : T(1), mu == 1.0};
    }

    template <class V, class T, class A>
    static FASTOPTIM_INLINE void update(const Coeffs<T>& c, const A& a, index_t i) {
        const V p = load_param<V>(a, i);
        V g = load_grad<V>(a, i) * V(c.grad_sign);
        if (c.weight_decay != T(0)) g = g + V(c.weight_decay) * p;
        const V moved = p * V(c.decay) - V(c.eta) * g;
        if (c.copies) {
            store_state(a, 0, i, moved);
        } else {
            const V ax = load_state<V>(a, 0, i);
            store_state(a, 0, i, ax + (moved - ax) * V(c.mu));
        }
        store_param(a, i, moved);
    }
};

FASTOPTIM_TARGET_END
}  // namespace fastoptim
