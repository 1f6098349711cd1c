// Schedule-Free AdamW and SGD (Defazio et al. 2024, "The Road Less Scheduled"), as the
// `schedulefree` package's AdamWScheduleFree and SGDScheduleFree; torch has no twin.
//
// The parameter holds y, the point where gradients are taken; z is the base sequence and
// x = lerp(z, y, 1/β) the average that eval() puts in the parameter. Per step, with k = t − 1:
//
//   γ_t = γ·min(1, (k + 1)/warmup_steps);   γmax ← max(γmax, γ_t)
//   w_t = (k + 1)^r · γmax^weight_lr_power;  W ← W + w_t;  c = w_t / W   (0 while W is 0)
//   u = g / (sqrt(v/(1 − β2ᵗ)) + ε) + λ·y,  v ← β2·v + (1 − β2)·g²   (AdamW; SGD: u = g + λ·y)
//   y ← lerp(y, z, c) + γ_t·(β1·(1 − c) − 1)·u
//   z ← z − γ_t·u                              (z starts as the parameter)
//
// γmax and W are running scalars of each parameter, as its step count k is (schedulefree keeps
// them per group: the same unless a parameter skips a step with a None gradient, which leaves it
// alone here, clock included). ScheduleFreeSwitch moves the parameter between y and x.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>

#include "../rule.hpp"
#include "../schema.hpp"
#include "../vec.hpp"

namespace fastoptim {

// ScheduleFreeAdamw's hyper-parameters, from schedulefree's defaults: `ScheduleFreeAdamw::Hyper h; h.lr = 0.01;`.
// Outside the target namespace: the same type in every target.
struct ScheduleFreeAdamwHyper {
    double lr = 0.0025;
    double beta1 = 0.9;
    double beta2 = 0.999;
    double eps = 1e-8;
    double weight_decay = 0.0;
    double warmup_steps = 0.0;
    double r = 0.0;
    double weight_lr_power = 2.0;
    constexpr ScheduleFreeAdamwHyper() noexcept {}  // not an aggregate, so a positional row does not compile
};

// ScheduleFreeSgd's hyper-parameters, from schedulefree's defaults.
struct ScheduleFreeSgdHyper {
    double lr = 1.0;
    double momentum = 0.9;
    double weight_decay = 0.0;
    double warmup_steps = 0.0;
    double r = 0.0;
    double weight_lr_power = 2.0;
    constexpr ScheduleFreeSgdHyper() noexcept {}
};

// What both rules' folds compute once per step (plain data).
template <class T>
struct ScheduleFreeCoeffs {
    T lr, toward_z, y_step, beta2, one_minus_beta2, inv_bias2, eps, weight_decay;
    bool fresh;
};

FASTOPTIM_TARGET_BEGIN

// What both rules share: the averaging weights (their hyper-parameters have the same names) and
// the move of y and z.
struct ScheduleFreeAverage : RuleBase {
    static constexpr int scalars = 2;
    static constexpr const char* scalar_names[2] = {"lr_max", "weight_sum"};
    static constexpr double scalar_init[2] = {-1.0, 0.0};
    static constexpr double scalar_low[2] = {-1.0, 0.0};
    static constexpr double scalar_high[2] = {kUnbounded, kUnbounded};

    template <class Hyper>
    static double scheduled_lr(const Hyper& h, const Clock& clock) {
        const double k = double(clock.step - 1);
        return k < h.warmup_steps ? h.lr * ((k + 1.0) / h.warmup_steps) : h.lr;
    }
    template <class Hyper>
    static double weight(const Hyper& h, const Clock& clock, double lr_max) {
        return std::pow(double(clock.step), h.r) * std::pow(lr_max, h.weight_lr_power);
    }
    template <class Hyper>
    static void advance(const Hyper& h, const Clock& clock, double* scalars) {
        scalars[0] = std::max(scheduled_lr(h, clock), scalars[0]);
        scalars[1] += weight(h, clock, scalars[0]);
    }
    // c = w_t / W, and the rest of the step's constants but the second moment's.
    template <class T, class Hyper>
    static ScheduleFreeCoeffs<T> fold_average(const Hyper& h, const Clock& clock, double beta) {
        const double lr = scheduled_lr(h, clock), sum = clock.scalars[1];
        const double c = sum != 0.0 ? weight(h, clock, clock.scalars[0]) / sum : 0.0;
        ScheduleFreeCoeffs<T> out{};
        out.lr = T(lr);
        out.toward_z = T(c);
        out.y_step = T(lr * (beta * (1.0 - c) - 1.0));
        out.weight_decay = T(h.weight_decay);
        out.fresh = clock.fresh;
        return out;
    }
    // y and z from the step's direction u; z starts as the parameter.
    template <class V, class T, class A>
    static FASTOPTIM_INLINE void move(const ScheduleFreeCoeffs<T>& c, const A& a, index_t i, V y, V z, V u) {
        store_state(a, 0, i, z - V(c.lr) * u);
        store_param(a, i, lerp_toward(y, z, c.toward_z) + V(c.y_step) * u);
    }
};

struct ScheduleFreeAdamw : ScheduleFreeAverage {
    static constexpr const char* name = "schedule_free_adamw";
    using Hyper = ScheduleFreeAdamwHyper;
    static constexpr std::array<Field, 8> fields = {{
        FASTOPTIM_FIELD(Hyper, lr, "lr", at_least(0.0)),
        FASTOPTIM_FIELD(Hyper, beta1, "betas[0]", open(0.0, 1.0)),  // eval() divides by β1
        FASTOPTIM_FIELD(Hyper, beta2, "betas[1]", half_open(0.0, 1.0)),
        FASTOPTIM_FIELD(Hyper, eps, "eps", at_least(0.0)),
        FASTOPTIM_FIELD(Hyper, weight_decay, "weight_decay", at_least(0.0)),
        FASTOPTIM_FIELD(Hyper, warmup_steps, "warmup_steps", at_least(0.0)),
        FASTOPTIM_FIELD(Hyper, r, "r", at_least(0.0)),
        FASTOPTIM_FIELD(Hyper, weight_lr_power, "weight_lr_power", at_least(0.0)),
    }};
    static constexpr std::array<Slot, 2> slots = {{{"z", nullptr, true}, nonnegative_slot("exp_avg_sq")}};
    template <class T>
    using Coeffs = ScheduleFreeCoeffs<T>;

    template <class T>
    static Coeffs<T> fold(const Hyper& h, const Clock& clock) {
        Coeffs<T> c = fold_average<T>(h, clock, h.beta1);
        c.beta2 = T(h.beta2);
        c.one_minus_beta2 = T(1.0 - h.beta2);
        c.inv_bias2 = T(1.0 / (1.0 - std::pow(h.beta2, double(clock.step))));
        c.eps = T(h.eps);
        return c;
    }

    template <class V, class T, class A>
    static FASTOPTIM_INLINE void update(const Coeffs<T>& c, const A& a, index_t i) {
        const V y = load_param<V>(a, i), g = load_grad<V>(a, i);
        const V z = c.fresh ? y : load_state<V>(a, 0, i);
        const V v = store_state(a, 1, i, V(c.beta2) * load_state<V>(a, 1, i) + V(c.one_minus_beta2) * (g * g));
        const V u = g / (sqrt(v * V(c.inv_bias2)) + V(c.eps)) + V(c.weight_decay) * y;
        move(c, a, i, y, z, u);
    }
};

struct ScheduleFreeSgd : ScheduleFreeAverage {
    static constexpr const char* name = "schedule_free_sgd";
    using Hyper = ScheduleFreeSgdHyper;
    static constexpr std::array<Field, 6> fields = {{
        FASTOPTIM_FIELD(Hyper, lr, "lr", at_least(0.0)),
        FASTOPTIM_FIELD(Hyper, momentum, "momentum", open(0.0, 1.0)),
        FASTOPTIM_FIELD(Hyper, weight_decay, "weight_decay", at_least(0.0)),
        FASTOPTIM_FIELD(Hyper, warmup_steps, "warmup_steps", at_least(0.0)),
        FASTOPTIM_FIELD(Hyper, r, "r", at_least(0.0)),
        FASTOPTIM_FIELD(Hyper, weight_lr_power, "weight_lr_power", at_least(0.0)),
    }};
    static constexpr std::array<Slot, 1> slots = {{{"z", nullptr, true}}};
    template <class T>
    using Coeffs = ScheduleFreeCoeffs<T>;

    template <class T>
    static Coeffs<T> fold(const Hyper& h, const Clock& clock) {
        return fold_average<T>(h, clock, h.momentum);
    }

    template <class V, class T, class A>
    static FASTOPTIM_INLINE void update(const Coeffs<T>& c, const A& a, index_t i) {
        const V y = load_param<V>(a, i);
        const V z = c.fresh ? y : load_state<V>(a, 0, i);
        move(c, a, i, y, z, load_grad<V>(a, i) + V(c.weight_decay) * y);
    }
};

// ScheduleFreeSwitch's one hyper-parameter: eval() lerps with 1 − 1/β, train() with 1 − β.
struct ScheduleFreeSwitchHyper {
    double weight = 0.0;
    constexpr ScheduleFreeSwitchHyper() noexcept {}
};

template <class T>
struct ScheduleFreeSwitchCoeffs {
    T weight;
};

// train() and eval(): p ← lerp(p, z, weight), in one pass that reads no gradient.
struct ScheduleFreeSwitch : RuleBase {
    static constexpr const char* name = "schedule_free_switch";
    using Hyper = ScheduleFreeSwitchHyper;
    static constexpr std::array<Field, 1> fields = {{
        FASTOPTIM_FIELD(Hyper, weight, "weight", any_real()),
    }};
    static constexpr std::array<Slot, 1> slots = {{{"z"}}};
    static constexpr bool needs_grad = false;
    template <class T>
    using Coeffs = ScheduleFreeSwitchCoeffs<T>;

    template <class T>
    static Coeffs<T> fold(const Hyper& h, const Clock&) {
        return {T(h.weight)};
    }

    template <class V, class T, class A>
    static FASTOPTIM_INLINE void update(const Coeffs<T>& c, const A& a, index_t i) {
        store_param(a, i, lerp_toward(load_param<V>(a, i), load_state<V>(a, 0, i), c.weight));
    }
};

FASTOPTIM_TARGET_END
}  // namespace fastoptim
