// The native half of an optimizer: the pointers of every parameter and state array, each
// group's hyper-parameters and clock, and the one call per step that checks the gradients,
// folds the per-step constants and runs the kernels with the GIL released.
//
// Memory safety: the plan validates every array itself (it trusts no caller), holds a strong
// reference to everything the kernels touch until they return, re-checks every parameter and
// state array (ArrayRecord) after the last Python code that ran before the kernels, and keeps
// any thread from resizing their buffers (weak references) or the gradients' (BufferGuard).
#pragma once

#include <pybind11/pybind11.h>

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "array_check.hpp"
#include "fastoptim/runtime/rule_table.hpp"
#include "tensor_guards.hpp"
#include "thread_policy.hpp"

namespace fastoptim {

namespace py = pybind11;

// What a step does with its gradients besides reading them.
struct GradOptions {
    double grad_mult = 1;     // every gradient is read as g·grad_mult (1/loss scale; a distributed clip)
    double max_norm = -1;     // clip the global 2-norm of g·grad_mult to this, as torch's clip_grad_norm_;
                              // < 0: no clipping; inf: measure only
    bool skip_nonfinite = false;  // a NaN or inf gradient element: the step changes nothing
    bool update_ema = true;       // false: the caller updates the EMA itself (Lookahead, after its sync)
};

// The optional arrays each parameter may have besides its rule's state: the buffer its
// gradients accumulate in, and the exponential moving average of its values.
enum class Extra : int { accumulated = 0, ema = 1 };
inline constexpr int kExtras = 2;

// What the step found: the 2-norm of g·grad_mult (before clipping), when it measured one.
struct StepOutcome {
    bool measured = false;
    double grad_norm = 0;
    bool skipped = false;
};

// Any grad_mult float32 holds is memory-safe (a clip of a non-finite norm gives 0 or NaN, as
// torch's does); the Python layer checks the user's grad_scale. A finite double beyond float's
// range would convert with undefined behaviour: ValueError.
inline void check_grad_mult(double mult, bool has_float32) {
    if (has_float32 && std::isfinite(mult) && std::fabs(mult) > double(std::numeric_limits<float>::max()))
        throw py::value_error("grad_mult is beyond float32's range");
}

class Plan {
public:
    // params: the arrays to update; states[i]: one array or None per slot of the rule, named
    // slot_names (for messages); groups[i]: the group of params[i]; names[i]: the key of
    // params[i] in a grads dict; extras[i]: its accumulation buffer and its EMA, each an array
    // or None (all parameters have one or none); state_dtypes[i] (empty: all ""): how the state
    // arrays of params[i] are stored, "" (its dtype; float32 for a bfloat16 parameter),
    // "float32" (the same; not for float64), "bfloat16" or "int8" (not for float64); absmax[i]:
    // for "int8", one float32 absmax array or None per slot (int8_state.hpp), else None. Every array is validated here: ValueError/TypeError if unfit.
    Plan(const std::string& rule, py::list params, py::list states, std::vector<int> groups,
         py::list names, int group_count, std::vector<std::string> slot_names, py::list extras,
         std::vector<std::string> state_dtypes, py::list absmax);

    // The most steps a group may take: torch keeps step counts as floats, exact up to 2**53.
    static constexpr std::int64_t kMaxSteps = std::int64_t(1) << 53;

    void set_hyper(int group, const std::vector<double>& row);
    // How bfloat16 state and bfloat16 parameters round: to nearest even, or stochastically from
    // the counter-based generator keyed by `seed` (bfloat16.hpp).
    void set_rounding(bool stochastic, std::uint64_t seed, bool params_stochastic);
    // The generator's counters: each parameter's position in the optimizer it belongs to and the
    // index of its first element within that optimizer's parameter (a shard's pieces keep their
    // whole parameter's). Default: its place in this plan, and 0.
    void set_counters(const std::vector<std::int64_t>& positions, const std::vector<std::int64_t>& first_indices);
    // Each parameter's clock: its steps taken, whether its state holds nothing yet, and its
    // running scalars (torch keeps `step` per parameter).
    void set_clock(int param, std::int64_t steps_done, bool fresh);
    std::int64_t steps_done(int param) const;
    bool fresh(int param) const;
    std::vector<double> scalars(int param) const;
    void set_scalars(int param, const std::vector<double>& values);
    // Rules that read gradients. `grads` holds an array or None (the parameter is left alone, as
    // torch leaves one whose .grad is None) per parameter; None itself steps on the accumulated
    // sum (grad_mult then multiplies the sum). After accumulate(), the gradients given are
    // added to the sum inside the step's own sweep, and the sweep clears the buffers.
    StepOutcome step(py::handle grads, const GradOptions& options);
    // Adds g·grad_mult into each parameter's accumulation buffer (None adds nothing).
    void accumulate(py::handle grads, double grad_mult);
    // The step's checks of `grads` (and of every array the plan holds), without a step.
    void check_grads(py::handle grads);
    std::int64_t pending() const { return pending_; }  // micro-batches accumulated since the last step
    bool touched(int param) const;                     // whether param's buffer holds any of them
    void set_pending(std::int64_t pending, const std::vector<bool>& touched);
    // The EMA of the parameters, updated after every step that is not skipped: decay < 0 for
    // none; with warmup the decay is min(decay, (1 + t)/(10 + t)), t counting updates from 1.
    void set_ema(double decay, bool warmup, std::int64_t updates);
    std::int64_t ema_updates() const { return ema_updates_; }
    void update_ema();  // one EMA update of every parameter as it is now, outside a step
    void apply();                 // rules that do not (Lookahead's synchronisation)
    void check() const { check_arrays(); }  // ValueError if a parameter or state array changed in place
    bool busy() const { return busy_; }  // a step is running (another thread's, or the caller's own)
    int last_threads() const { return threads_.last_threads(); }  // threads the last step's update ran on
    std::int64_t steps_alone() const { return threads_.steps_alone(); }  // steps the backoff kept to one thread
    // Sweeps that began writing the parameters: a step that throws without moving it wrote none.
    std::uint64_t sweeps_begun() const { return sweeps_begun_; }
    // Whether the kernels run with the GIL released (default). A plan over memory that Python
    // code can free while it is referenced (torch tensors: set_(), share_memory_()) keeps the GIL,
    // so that no Python code runs between the guards' check and the last write.
    void set_release_gil(bool release) { release_gil_ = release; }
    bool release_gil() const { return release_gil_; }
    // Memory a step re-checks first, under the GIL (tensor_guards.hpp): fastoptim.torch sets the
    // guards of the views' tensors, and keeps the GIL from the check to the last write.
    void set_guards(py::list guards);
    double last_seconds() const { return last_seconds_; }  // the last step's kernels (and thread placement)

private:
    struct Param {
        py::object array;
        ArrayRecord record;
        std::vector<py::object> states;  // kept alive while the plan points at them
        std::vector<ArrayRecord> state_records;
        std::vector<int> state_slots;    // the slot of each of `states`
        py::object extras[kExtras];      // None where absent
        ArrayRecord extra_records[kExtras];
        int group;
        std::size_t index;  // within f32_ or f64_
        const char* clear_grad = nullptr;  // the last gradient address found to share no owned memory
    };
    struct Watched {  // every array the kernels write, in one list for the check before each step
        PyObject* array;  // held by its Param
        ArrayRecord* record;
        std::size_t param;
        int state;  // index into Param::states, -1 for the parameter, -2 - Extra for an extra
    };
    template <class T>
    struct Arrays {
        std::vector<ArrayRef<T>> refs;
        std::vector<index_t> offsets{0};
        std::vector<int> group;
        std::vector<double> coeffs;  // storage for Coeffs<T>[group count]
        std::vector<index_t> block_offsets{0};  // kBlock elements per block, for the norm passes
        std::vector<double> partials;            // rules with norms only
        std::vector<T> ratios;
        std::vector<double> grad_partials;       // the gradient norm pass's, 2 per block
        double grad_mult = 1;                    // the value in every ref
        int norms = 0;                           // the rule's per-array norms
        void prepare_blocks(int norms);
        void set_grad_mult(double mult);
        void take_active(const Arrays& all, const std::vector<char>& active);  // a step of some parameters
        Work<T> work();
        GradBlocks<T> grad_blocks(double mult);
    };

    // Set while a step runs: the plan's scratch (gradient pointers, scalars) belongs to that step.
    // Refuses a second entry (another thread, or re-entrant Python code).
    class Busy {
    public:
        explicit Busy(bool& flag) : flag_(flag) {
            if (flag_) throw std::runtime_error("this optimizer's plan is already stepping (from another thread, or "
                                                "from Python code the step called); steps of one plan run one at a time");
            flag_ = true;
        }
        ~Busy() { flag_ = false; }
        Busy(const Busy&) = delete;
        Busy& operator=(const Busy&) = delete;

    private:
        bool& flag_;
    };

    // Releases the gradients a call took (take_grads), however it leaves.
    struct GradsHeld {
        Plan& plan;
        explicit GradsHeld(Plan& p) : plan(p) {}
        ~GradsHeld() { plan.release_grads(); }
        GradsHeld(const GradsHeld&) = delete;
        GradsHeld& operator=(const GradsHeld&) = delete;
    };

    std::string label(std::size_t i, const char* container) const;
    std::string state_label(std::size_t i, int slot) const;
    std::string extra_label(std::size_t i, int extra) const;
    std::string watched_label(const Watched& w) const;
    template <class T>
    ArrayRef<T>& ref_of(std::size_t i) {
        if constexpr (std::is_same_v<T, double>) return f64_.refs[params_[i].index];
        else return f32_.refs[params_[i].index];
    }
    // Order, guard, check and attach the gradients (None leaves a parameter out); check the
    // arrays the pass that follows writes.
    void take_grads(py::handle grads, bool buffers_only = false);
    void accumulate_now(double grad_mult, int threads);  // the buffers += the gradients given, ·grad_mult
    void clear_buffers();
    void set_round_keys();  // this step's key of every parameter with stochastically rounded state
    void lerp_left_out(double weight);  // the EMA of the parameters a step left out
    double next_ema_weight() const;     // torch's lerp weight 1 − decay of the next EMA update
    // Every parameter and state array (or only the accumulation buffers) as validated; no Python code.
    void check_arrays(bool buffers_only = false) const;
    const char* attach_grad(std::size_t i, PyObject* grad);  // returns the data it checked
    void release_grads();
    bool overlaps_owned_memory(const char* begin, const char* end) const;
    void check_param(int param) const;
    void check_clocks() const;
    bool same_clock(std::size_t a, std::size_t b) const;  // may share one fold: same group and clock
    void form_units();
    enum class Source { grads, buffers, grads_and_buffers };  // what a step's gradient is
    void run(const GradOptions& options, Source source, StepOutcome& outcome);  // fold -> threads -> [norm] -> kernels -> record
    void fold_step();  // this step's constants of every group, and its running scalars (not kept yet)
    void record_step(double seconds);  // the step has run: keep the scalars, advance the active clocks

    const RuleInfo* rule_;
    std::vector<Param> params_;
    std::vector<py::object> names_;  // each parameter's key in a grads dict
    std::vector<Watched> watched_;
    Arrays<float> f32_;
    Arrays<double> f64_;
    Arrays<float> some32_;   // the parameters a step with None gradients updates
    Arrays<double> some64_;
    std::vector<char> active_;  // per parameter: this step updates it
    std::size_t active_count_ = 0;
    bool has_extra_[kExtras] = {false, false};
    bool any_bfloat16_ = false;
    bool stochastic_ = false;
    bool any_bfloat16_params_ = false;
    bool params_stochastic_ = true;  // fastoptim's default for bfloat16 parameters
    std::uint64_t seed_ = 0;
    std::vector<std::int64_t> positions_;  // per parameter: the generator's position
    std::int64_t pending_ = 0;
    std::uint64_t sweeps_begun_ = 0;  // target.step calls made (sweeps_begun())
    std::vector<char> touched_;  // per parameter: its buffer holds a gradient
    double ema_decay_ = -1;
    bool ema_warmup_ = false;
    std::int64_t ema_updates_ = 0;
    double ema_weight_set_ = -1;  // the weight every ref holds
    bool last_buffered_ = false;  // the refs point at the accumulation buffers
    bool ema_on_ = false;         // the refs point at the EMA arrays
    bool release_gil_ = true;
    std::vector<TensorGuard> guards_;  // set_guards' tuples, read once (the caller's list may change)
    void check_guards() const;
    // accumulate()'s pass: each buffer as the `param` of a ref reading its gradient (kept: no allocation per call)
    std::pair<std::vector<ArrayRef<float>>, std::vector<ArrayRef<double>>> sum_refs_;
    std::pair<std::vector<index_t>, std::vector<index_t>> sum_offsets_;
    int group_count_;
    std::vector<double> hyper_;  // group_count_ rows of rule_->fields.size()
    // The clocks, per parameter. The parameters of a group with equal clocks form a unit,
    // folded once per step (a group is one unit unless a loaded state dict gave its parameters
    // different clocks; every step advances every unit alike, so units never merge or split).
    std::vector<std::int64_t> steps_done_;
    std::vector<char> fresh_;
    std::vector<double> scalars_;          // a row of the rule's running scalars per parameter
    std::vector<int> unit_of_;             // per parameter
    std::vector<std::size_t> unit_first_;  // a parameter of each unit
    std::vector<double> scratch_scalars_;  // per unit: this step's advanced scalars
    bool units_stale_ = true;
    std::vector<std::pair<const char*, const char*>> owned_;  // sorted memory of params and states
    std::vector<std::string> slot_names_;
    std::vector<py::object> pins_;        // weak references that keep params and states from resizing
    std::vector<py::object> grads_;       // this step's gradients, held until the kernels return
    std::vector<const char*> grad_data_;  // and where each was found, checked, when Python last ran
    BufferGuard grad_buffers_;            // and kept from being freed or resized meanwhile
    bool busy_ = false;
    ThreadPolicy threads_;
    double last_seconds_ = 0;
};

}  // namespace fastoptim
