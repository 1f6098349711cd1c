// The native half of an optimizer: the pointers of every parameter and state array, each
// group's hyper-parameters and clock, and the one call per step that checks the gradients,
// folds the per-step constants and runs the kernels with the GIL released.
#pragma once

#include <pybind11/pybind11.h>

#include <string>
#include <utility>
#include <vector>

#include "rule_table.hpp"
#include "thread_backoff.hpp"

namespace fastoptim {

namespace py = pybind11;

class Plan {
public:
    // params: arrays validated by the Python layer; states[i]: one array or None per slot;
    // groups[i]: the group of params[i]; names[i]: the key of params[i] in a grads dict.
    Plan(const std::string& rule, py::list params, py::list states, std::vector<int> groups,
         py::list names, int group_count);

    void set_hyper(int group, const std::vector<double>& row);
    void set_clock(int group, std::int64_t steps_done, bool fresh);
    std::int64_t steps_done(int group) const;
    bool fresh(int group) const;
    std::vector<double> scalars(int group) const;
    void set_scalars(int group, const std::vector<double>& values);
    void step(py::handle grads);  // rules that read gradients
    void apply();                 // rules that do not (Lookahead's synchronisation)
    int last_threads() const { return last_threads_; }  // threads the last step's update ran on
    std::int64_t steps_alone() const { return steps_alone_; }  // steps the backoff kept to one thread
    double last_seconds() const { return last_seconds_; }  // the last step's kernels (and thread placement)

private:
    struct Param {
        py::object array;
        std::vector<py::object> states;  // kept alive while the plan points at them
        py::object name;
        bool is_double;
        std::size_t index;  // within f32_ or f64_
        std::vector<py::ssize_t> shape;
        bool c_contiguous, f_contiguous;
    };
    template <class T>
    struct Arrays {
        std::vector<ArrayRef<T>> refs;
        std::vector<index_t> offsets{0};
        std::vector<int> group;
        std::vector<double> coeffs;  // storage for Coeffs<T>[group count]
        std::vector<index_t> block_offsets{0};  // rules with norms only
        std::vector<double> partials;
        std::vector<T> ratios;
        void prepare_norms(int norms);
        Work<T> work();
    };

    std::string label(std::size_t i) const;
    PyObject* grad_at(py::handle grads, std::size_t i) const;
    void check_grad_container(py::handle grads) const;
    void attach_grad(std::size_t i, PyObject* grad);
    bool overlaps_owned_memory(const char* begin, const char* end) const;
    void check_group(int group) const;
    void run();  // fold this step's constants, run the kernels, advance the clocks

    const RuleInfo* rule_;
    std::vector<Param> params_;
    Arrays<float> f32_;
    Arrays<double> f64_;
    int group_count_;
    std::vector<double> hyper_;  // group_count_ rows of rule_->fields.size()
    std::vector<std::int64_t> steps_done_;
    std::vector<char> fresh_;
    std::vector<double> scalars_;  // group_count_ rows of the rule's running scalars
    std::vector<double> scratch_scalars_;
    std::vector<std::pair<const char*, const char*>> owned_;  // sorted memory of params and states
    ThreadBackoff backoff_;
    int last_threads_ = 0;
    double last_seconds_ = 0;
    std::int64_t steps_alone_ = 0;
};

}  // namespace fastoptim
