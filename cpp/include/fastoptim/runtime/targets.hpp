// What each instruction-set target's kernels take and return: the requests of the dispatch table
// (cpu.hpp) that the fastoptim::runtime library fills, one entry per target it was built with.
#pragma once

#include "fastoptim/grad_norm.hpp"
#include "fastoptim/matrix_passes.hpp"
#include "fastoptim/parallel.hpp"
#include "fastoptim/row_passes.hpp"
#include "fastoptim/rule_list.hpp"
#include "fastoptim/vector_algebra.hpp"

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

// One element-wise pass of the rules whose step is not element-wise (matrix_passes.hpp), over
// one array of float32 or float64 (`is_double`): the pointers are of that type.
enum class MatrixPass : int {
    factored_moments,    // Σp² -> param_sq; per-row and per-column Σu² -> rows_sq, cols_sq
    factored_update_sq,  // Σu² -> update_sq
    factored_apply,      // p ← p·decay − step·u
    variance_moments,    // v advanced; Σp² -> param_sq, Σu² -> update_sq
    variance_apply,      // p ← p·decay − step·u
    muon_momentum,       // buffer advanced, out written; Σout² -> update_sq
    decay_and_subtract,  // p ← p·decay − step·out
};

struct MatrixRequest {
    MatrixPass pass;
    bool is_double;
    void* param;
    const void* grad;
    void* state;  // the variance, or Muon's momentum buffer
    void* out;    // Muon's update
    const void* row_inv;
    const void* col_inv;
    index_t batch, rows, cols, size;
    double mult, inv_eps, eps_sq, weight, decay, step, momentum;
    bool nesterov;
    double* rows_sq;
    double* cols_sq;
    int threads;
};
using MatrixFunction = PassSums (*)(const MatrixRequest&);

// One row-sparse step (row_passes.hpp) over tables of both dtypes.
struct RowsRequest {
    RowRule rule;
    const RowTable<float>* f32;
    index_t n32;
    const RowTable<double>* f64;
    index_t n64;
    int threads;
};
using RowsFunction = PieceCounts (*)(const RowsRequest&);

// One sweep of L-BFGS's vector algebra (vector_algebra.hpp): `arrays` is a Combine<float> or,
// `is_double`, a Combine<double>.
struct CombineRequest {
    bool is_double;
    const void* arrays;
    int threads;
};
using CombineFunction = CombineSums (*)(const CombineRequest&);

}  // namespace fastoptim
