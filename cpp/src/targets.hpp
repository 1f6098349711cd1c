// The entry point every instruction-set target exports, and the list of targets built.
#pragma once

#include "fastoptim/grad_norm.hpp"
#include "fastoptim/parallel.hpp"
#include "fastoptim/rule_list.hpp"

namespace fastoptim {

// Rule identifiers, in the order of FASTOPTIM_FOR_EACH_RULE.
enum class RuleId : int {
#define FASTOPTIM_RULE_ID(Rule) Rule,
    FASTOPTIM_FOR_EACH_RULE(FASTOPTIM_RULE_ID)
#undef FASTOPTIM_RULE_ID
};

struct StepRequest {
    RuleId rule;
    Work<float> f32;
    Work<double> f64;
    int threads;
    index_t prefetch_above;  // bytes; see prefetch.hpp
};

using StepFunction = PieceCounts (*)(const StepRequest&);  // how the update pass was shared

// A norm pass over gradients (grad_norm.hpp), the in-place scaling of clip_grad_norm_, and
// the accumulation of gradients.
struct NormRequest {
    NormOptions options;
    GradBlocks<float> f32;
    GradBlocks<double> f64;
    int threads;
};
using NormFunction = GradMeasure (*)(const NormRequest&);

struct ScaleRequest {
    Work<float> f32;  // the arrays to scale are each ArrayRef's `param`
    Work<double> f64;
    double factor;
    int threads;
    bool add_grad = false;  // param ← param + grad·factor instead (gradient accumulation)
    index_t prefetch_above = kDefaultPrefetchAbove;  // bytes; see prefetch.hpp
};
using ScaleFunction = void (*)(const ScaleRequest&);

// The bandwidth probe: one sweep reading `reads` arrays of n elements and writing `writes`, and
// reading and writing `halves` arrays of n 16-bit elements (bfloat16 state), which follow them.
struct ProbeRequest {
    void* const* arrays;
    bool is_double;
    int reads, writes, halves;
    index_t n;
    int threads;
    index_t prefetch_above;
};
using ProbeFunction = bool (*)(const ProbeRequest&);  // false if reads/writes/halves are out of range

// Defined by cpp/src/kernels.cpp, compiled once per target with its own flags.
#define FASTOPTIM_DECLARE_TARGET(name)       \
    PieceCounts step_##name(const StepRequest&); \
    GradMeasure norm_##name(const NormRequest&);  \
    void scale_##name(const ScaleRequest&);       \
    bool probe_##name(const ProbeRequest&);
FASTOPTIM_DECLARE_TARGET(generic)
#if defined(FASTOPTIM_X86)
FASTOPTIM_DECLARE_TARGET(sse2)
FASTOPTIM_DECLARE_TARGET(avx2)
FASTOPTIM_DECLARE_TARGET(avx512)
#endif
#undef FASTOPTIM_DECLARE_TARGET

}  // namespace fastoptim
