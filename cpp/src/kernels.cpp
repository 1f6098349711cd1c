// The entry points of one instruction-set target: the step, which hands each rule to its
// family's file (kernels/), the gradient norm and scaling, and the bandwidth probe. CMake
// compiles these files once per target, defining FASTOPTIM_TARGET_NS (sse2, avx2, avx512,
// generic) and that target's flags; the namespace keeps each target's instantiations apart
// at link time.
#include <type_traits>

#include "fastoptim/probe.hpp"
#include "rule_steps.hpp"
#include "target_entries.hpp"

#define FASTOPTIM_CONCAT_(a, b) a##_##b
#define FASTOPTIM_CONCAT(a, b) FASTOPTIM_CONCAT_(a, b)

namespace fastoptim {

PieceCounts FASTOPTIM_CONCAT(step, FASTOPTIM_TARGET_NS)(const StepRequest& request) {
    switch (request.rule) {
#define FASTOPTIM_RULE_CASE(Rule) \
    case RuleId::Rule:            \
        return FASTOPTIM_RULE_STEP(Rule)(request);
        FASTOPTIM_FOR_EACH_RULE(FASTOPTIM_RULE_CASE)
#undef FASTOPTIM_RULE_CASE
    }
    return {};
}

GradMeasure FASTOPTIM_CONCAT(norm, FASTOPTIM_TARGET_NS)(const NormRequest& request) {
    return measure_grads(request.options, request.f32, request.f64, request.threads);
}

void FASTOPTIM_CONCAT(scale, FASTOPTIM_TARGET_NS)(const ScaleRequest& request) {
    scale_arrays(request.f32, request.f64, request.factor, request.add_grad, request.threads, request.prefetch_above);
}

namespace {

template <class T, int R, int W, int H = 0>
bool probe_halves(const ProbeRequest& r) {
    if constexpr (H > 4 || R + H > kMaxStreams || (H > 0 && !std::is_same_v<T, float>)) {
        return false;
    } else {
        if (r.halves != H) return probe_halves<T, R, W, H + 1>(r);
        probe<R, W, T, H>(r.arrays, r.n, r.threads, r.prefetch_above);
        return true;
    }
}

template <class T, int R, int W = 0>
bool probe_writes(const ProbeRequest& r) {
    if constexpr (W > R) {
        return false;
    } else {
        if (r.writes != W) return probe_writes<T, R, W + 1>(r);
        return probe_halves<T, R, W>(r);
    }
}

template <class T, int R = 1>
bool probe_reads(const ProbeRequest& r) {
    if constexpr (R > 6) {
        return false;
    } else {
        if (r.reads != R) return probe_reads<T, R + 1>(r);
        return probe_writes<T, R>(r);
    }
}

}  // namespace

bool FASTOPTIM_CONCAT(probe, FASTOPTIM_TARGET_NS)(const ProbeRequest& request) {
    return request.is_double ? probe_reads<double>(request) : probe_reads<float>(request);
}

}  // namespace fastoptim
