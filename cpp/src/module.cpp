// The compiled module fastoptim._core: wires the plan, the rule table and the runtime settings.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "blockwise_binding.hpp"
#include "fastoptim/runtime/cache.hpp"
#include "grad_check.hpp"
#include "grad_norm_binding.hpp"
#include "matrix_binding.hpp"
#include "plan.hpp"
#include "probe_binding.hpp"
#include "row_binding.hpp"
#include "tensor_guards.hpp"
#include "torch_step.hpp"
#include "vector_binding.hpp"
#include "fastoptim/runtime/settings.hpp"
#include "thread_backoff.hpp"
#include "thread_placement.hpp"

namespace py = pybind11;
using namespace fastoptim;

#define FASTOPTIM_STRINGIFY_(x) #x
#define FASTOPTIM_STRINGIFY(x) FASTOPTIM_STRINGIFY_(x)

PYBIND11_MODULE(_core, m) {
    m.doc() = "fastoptim's native kernels; use the fastoptim package, not this module.";
    m.attr("__version__") = FASTOPTIM_STRINGIFY(FASTOPTIM_VERSION);
    m.attr("compiler") = FASTOPTIM_STRINGIFY(FASTOPTIM_COMPILER);

    try {
        current_target();  // picks the target now, so a bad FASTOPTIM_ISA fails the import
    } catch (const std::runtime_error& e) {
        throw py::import_error(e.what());
    }
    // pybind11 looks NumPy's C API up on first use and releases the GIL while it does: were that
    // first use inside a binding, between reading a caller's list and holding its items, another
    // thread could empty the list under it. Look it up now, while nothing else can run.
    py::detail::npy_api::get();

    py::class_<Plan>(m, "Plan")
        .def(py::init<const std::string&, py::list, py::list, std::vector<int>, py::list, int, std::vector<std::string>,
                      py::list, std::vector<std::string>, py::list>(),
             py::arg("rule"), py::arg("params"), py::arg("states"), py::arg("groups"), py::arg("names"),
             py::arg("group_count"), py::arg("slot_names"), py::arg("extras"),
             py::arg("state_dtypes") = std::vector<std::string>{}, py::arg("absmax") = py::list())
        .def("set_rounding", &Plan::set_rounding, py::arg("stochastic"), py::arg("seed"), py::arg("params_stochastic") = true)
        .def("set_counters", &Plan::set_counters, py::arg("positions"), py::arg("first_indices"))
        .def("set_hyper", &Plan::set_hyper, py::arg("group"), py::arg("row"))
        .def("set_clock", &Plan::set_clock, py::arg("param"), py::arg("steps_done"), py::arg("fresh"))
        .def("steps_done", &Plan::steps_done, py::arg("param"))
        .def("fresh", &Plan::fresh, py::arg("param"))
        .def("scalars", &Plan::scalars, py::arg("param"))
        .def("set_scalars", &Plan::set_scalars, py::arg("param"), py::arg("values"))
        .def("step", [](Plan& plan, py::handle grads) { plan.step(grads, GradOptions{}); }, py::arg("grads"),
             "the plain step: every gradient read as it is")
        .def("step_with", [](Plan& plan, py::handle grads, double grad_mult, py::object max_norm, bool skip_nonfinite,
                             bool update_ema) {
            const double limit = max_norm.is_none() ? -1.0 : max_norm.cast<double>();
            if (!max_norm.is_none() && !(limit >= 0)) throw py::value_error("max_norm must be >= 0 or None");
            const StepOutcome outcome = plan.step(grads, GradOptions{grad_mult, limit, skip_nonfinite, update_ema});
            if (!outcome.measured && !outcome.skipped) return py::object(py::none());
            return py::object(py::make_tuple(
                outcome.measured ? py::object(py::float_(outcome.grad_norm)) : py::object(py::none()), outcome.skipped));
        }, py::arg("grads"), py::arg("grad_mult"), py::arg("max_norm"), py::arg("skip_nonfinite"),
           py::arg("update_ema") = true,
           "the step with its gradient options: None when nothing was measured nor skipped, else (the 2-norm of "
           "g·grad_mult before clipping, or None; whether the step was skipped)")
        .def("accumulate", &Plan::accumulate, py::arg("grads"), py::arg("grad_mult"),
             "adds g·grad_mult into each parameter's accumulation buffer (None adds nothing)")
        .def("check_grads", &Plan::check_grads, py::arg("grads"),
             "the step's checks of grads and of every array the plan holds, without a step")
        .def_property_readonly("pending", &Plan::pending)
        .def("touched", &Plan::touched, py::arg("param"))
        .def("set_pending", &Plan::set_pending, py::arg("pending"), py::arg("touched"))
        .def("set_ema", &Plan::set_ema, py::arg("decay"), py::arg("warmup"), py::arg("updates"))
        .def_property_readonly("ema_updates", &Plan::ema_updates)
        .def("update_ema", &Plan::update_ema, "one EMA update of every parameter as it is now")
        .def("apply", &Plan::apply)
        .def("check", &Plan::check)
        .def_property_readonly("busy", &Plan::busy)
        .def_property_readonly("last_threads", &Plan::last_threads)
        .def_property_readonly("steps_alone", &Plan::steps_alone)
        .def_property("release_gil", &Plan::release_gil, &Plan::set_release_gil,
                      "whether the kernels run with the GIL released (default True)")
        .def("set_guards", &Plan::set_guards, py::arg("guards"),
             "(label, tensor, storage, address, span) tuples each step re-checks first, under the GIL")
        .def_property_readonly("last_seconds", &Plan::last_seconds);
    m.attr("MAX_STEPS") = Plan::kMaxSteps;
    m.def("check_grads", &check_grads, py::arg("grads"), py::arg("names"), py::arg("params"), py::arg("writable"),
          "the gradients in parameter order, checked as Plan.step checks them; with writable, also writable and "
          "sharing memory with no other gradient and no parameter");

    m.def("measure_arrays", &measure_arrays, py::arg("arrays"), py::arg("kind"), py::arg("mult") = 1.0,
          py::arg("writable") = false, py::arg("guards") = py::tuple(),
          "(Σu², Σ|u| or max |u| for kind 0, 1 or 2, with u = g·mult over every element; all finite)");
    m.def("torch_step", &step_if_unchanged, py::arg("param_groups"), py::arg("binding"), py::arg("pre_hooks"),
          py::arg("post_hooks"),
          "fastoptim.torch's plain step when its groups and every .grad are those its binding records and no hook "
          "(pre_hooks None: not checked) or profiler awaits it (torch_step.hpp): True; else False, nothing done");
    m.def("check_guards", [](py::handle guards) { check_tensor_guards(read_tensor_guards(guards)); },
          py::arg("guards"), "ValueError naming the first of fastoptim.torch's views whose tensor's memory moved");
    m.def("scale_arrays", &scale_arrays_in_place, py::arg("arrays"), py::arg("factor"),
          "every array multiplied in place by factor (writable arrays sharing no memory)");

    // The backoff's rule alone, for the tests (cpp/src/thread_backoff.hpp).
    py::class_<ThreadBackoff>(m, "_ThreadBackoff")
        .def(py::init<>())
        .def("threads_for_step", &ThreadBackoff::threads_for_step, py::arg("requested"), py::arg("cold"))
        .def("record", [](ThreadBackoff& b, bool cold, index_t pieces, index_t busiest, bool parallel, double seconds) {
            b.record(cold, PieceCounts{pieces, busiest, parallel}, seconds);
        }, py::arg("cold"), py::arg("pieces"), py::arg("busiest"), py::arg("parallel"), py::arg("seconds") = 0.0);

    m.def("rules", [] {
        py::dict out;
        for (const RuleInfo& r : rule_table()) {
            py::dict info;
            py::list fields, slots;
            for (const Field& f : r.fields) {
                py::dict field;
                field["name"] = f.name;
                field["key"] = f.key;
                field["default"] = f.default_value;
                field["kind"] = f.kind == FieldKind::flag ? "flag" : "real";
                field["low"] = f.range.low;
                field["high"] = f.range.high;
                field["low_open"] = f.range.low_open;
                field["high_open"] = f.range.high_open;
                field["fallback"] = f.fallback == nullptr ? py::object(py::none()) : py::object(py::str(f.fallback));
                fields.append(field);
            }
            for (const Slot& s : r.slots) {
                static const char* const shapes[] = {"like_param", "per_row", "per_column", "scalar"};
                py::dict slot;
                slot["name"] = s.name;
                slot["needed_when"] = s.needed_when == nullptr ? py::object(py::none()) : py::object(py::str(s.needed_when));
                slot["seeded"] = s.seeded;
                slot["nonnegative"] = s.nonnegative;
                slot["shape"] = shapes[int(s.shape)];
                slots.append(slot);
            }
            info["fields"] = py::tuple(fields);
            info["slots"] = py::tuple(slots);
            info["scalars"] = py::tuple(py::cast(r.scalar_names));
            info["scalar_init"] = py::tuple(py::cast(r.scalar_init));
            info["scalar_low"] = py::tuple(py::cast(r.scalar_low));
            info["scalar_high"] = py::tuple(py::cast(r.scalar_high));
            info["clock"] = r.clock == ClockScope::per_param ? "per_param" : "per_group";
            info["norms"] = r.norms;
            info["needs_grad"] = r.needs_grad;
            out[py::str(r.name)] = info;
        }
        return out;
    }, "name -> what the Python layer needs to know of every native rule: its schema (fields, slots) and more");

    m.def("step_passes", [](const std::string& rule, int slots_used) {
        const RuleInfo* info = find_rule(rule);
        if (info == nullptr) throw py::value_error("unknown rule '" + rule + "'");
        if (slots_used < 0 || slots_used > int(info->slots.size())) throw py::value_error("slots_used out of range");
        py::list out;
        for (const Pass& p : step_passes(*info, slots_used)) out.append(py::make_tuple(p.reads, p.writes));
        return out;
    }, py::arg("rule"), py::arg("slots_used"),
       "the (reads, writes) of each sweep of one step: the arrays it moves per element");

    m.def("targets", [] {
        py::list out;
        for (const Target& t : built_targets()) out.append(py::make_tuple(t.name, t.supported));
        return out;
    }, "(name, supported by this CPU) for every instruction-set target built");
    m.def("get_target", [] { return std::string(current_target().name); });
    // The setters throw std::invalid_argument, which pybind11 raises as ValueError.
    m.def("set_target", &set_target, py::arg("name"));
    m.def("get_num_threads", &num_threads);
    m.def("set_num_threads", &set_num_threads, py::arg("n"));
    m.def("has_openmp", &has_openmp);
    m.def("last_level_cache_bytes", &last_level_cache_bytes, "the largest cache level the system reports; 0 if none");
    m.def("get_prefetch_above", &prefetch_above,
          "Bytes a step's arrays must add up to before its sweeps prefetch; below, they are expected in the cache.");
    m.def("set_prefetch_above", &set_prefetch_above, py::arg("nbytes"));

    m.def("thread_placement_supported", &thread_placement_supported,
          "Linux with OpenMP, and no OMP_PROC_BIND, OMP_PLACES, GOMP_CPU_AFFINITY or KMP_AFFINITY");
    m.def("get_thread_placement", &thread_placement);
    m.def("get_thread_backoff", &thread_backoff);
    m.def("set_thread_backoff", &set_thread_backoff, py::arg("on"));
    m.def("set_thread_placement", &set_thread_placement, py::arg("on"));
    m.def("_placed_workers", [] {
        const PlacedWorkers placed = placed_workers();
        return py::make_tuple(placed.excluded_cpu, placed.threads, placed.placements);
    }, "(the CPU the calling thread's workers were last kept off, -1 if none; their thread ids; "
       "how many times they were placed)");

    m.def("probe", &run_probe, py::arg("arrays"), py::arg("writes"), py::arg("threads"),
          "One read-modify-write sweep: read every array, write the first `writes` of them; trailing "
          "uint16 arrays beside float32 ones (bfloat16 state's bytes) are read and written.");
    bind_blockwise(m);
    bind_matrix_passes(m);
    bind_row_passes(m);
    bind_vector_algebra(m);
}
