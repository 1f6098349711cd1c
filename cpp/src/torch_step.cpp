#include "torch_step.hpp"

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "plan.hpp"
#include "tensor_guards.hpp"

namespace py = pybind11;

namespace fastoptim {

namespace {

// An attribute as a new reference; throws what reading it raised.
py::object attribute(py::handle object, PyObject* name) {
    PyObject* value = PyObject_GetAttr(object.ptr(), name);
    if (!value) throw py::error_already_set();
    return py::reinterpret_steal<py::object>(value);
}

// Whether a TrackedGroup's flag (fastoptim/torch/_groups.py) is down; an object without it is
// no group the optimizer made.
bool flag_down(py::handle group, PyObject* name) {
    PyObject* value = PyObject_GetAttr(group.ptr(), name);
    if (!value) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError)) throw py::error_already_set();
        PyErr_Clear();
        return false;
    }
    Py_DECREF(value);
    return value == Py_False;
}

py::object call_function(py::handle function) {
    PyObject* result = PyObject_CallNoArgs(function.ptr());
    if (!result) throw py::error_already_set();
    return py::reinterpret_steal<py::object>(result);
}

// A method of `object` called with `arg` (or none), as a new reference.
py::object call_method(py::handle object, PyObject* name, PyObject* arg = nullptr) {
    PyObject* args[] = {object.ptr(), arg};
    const std::size_t count = arg ? 2 : 1;
    PyObject* result = PyObject_VectorcallMethod(name, args, count | PY_VECTORCALL_ARGUMENTS_OFFSET, nullptr);
    if (!result) throw py::error_already_set();
    return py::reinterpret_steal<py::object>(result);
}

py::object item(py::handle list, Py_ssize_t index) {
    return py::reinterpret_borrow<py::object>(PyList_GET_ITEM(list.ptr(), index));
}

// The groups are the held ones, in order, each unedited and holding the tensors it was added with.
bool groups_unchanged(py::handle param_groups, py::handle held) {
    static PyObject* const edited = interned("edited");
    static PyObject* const mutable_values = interned("mutable");
    static PyObject* const params_key = interned("params");
    const Py_ssize_t count = PyList_GET_SIZE(held.ptr());
    if (!PyList_CheckExact(param_groups.ptr()) || PyList_GET_SIZE(param_groups.ptr()) != count) return false;
    for (Py_ssize_t g = 0; g < count; ++g) {
        // Sizes re-read and items held: reading a flag could run Python code (it does not for the
        // optimizer's own groups).
        if (g >= PyList_GET_SIZE(held.ptr()) || g >= PyList_GET_SIZE(param_groups.ptr())) return false;
        const py::object entry = item(held, g);
        if (!PyTuple_CheckExact(entry.ptr()) || PyTuple_GET_SIZE(entry.ptr()) != 2) return false;
        const auto group = py::reinterpret_borrow<py::object>(PyTuple_GET_ITEM(entry.ptr(), 0));
        const auto tensors = py::reinterpret_borrow<py::object>(PyTuple_GET_ITEM(entry.ptr(), 1));
        if (item(param_groups, g).ptr() != group.ptr() || !PyDict_Check(group.ptr()) ||
            !PyList_CheckExact(tensors.ptr()))
            return false;
        if (!flag_down(group, edited) || !flag_down(group, mutable_values)) return false;
        PyObject* params = PyDict_GetItemWithError(group.ptr(), params_key);  // borrowed; runs no Python code
        if (!params && PyErr_Occurred()) throw py::error_already_set();
        const Py_ssize_t n = PyList_GET_SIZE(tensors.ptr());
        if (!params || !PyList_CheckExact(params) || PyList_GET_SIZE(params) != n) return false;
        for (Py_ssize_t i = 0; i < n; ++i)
            if (PyList_GET_ITEM(params, i) != PyList_GET_ITEM(tensors.ptr(), i)) return false;
    }
    return PyList_GET_SIZE(held.ptr()) == count && PyList_GET_SIZE(param_groups.ptr()) == count;
}

py::handle binding_part(py::handle binding, TorchBinding which) {
    return PyTuple_GET_ITEM(binding.ptr(), static_cast<Py_ssize_t>(which));
}

// Whether `order` is 0, 1, ..., n-1 (the view needs no transpose).
bool identity_order(py::handle order) {
    if (!PyTuple_Check(order.ptr())) throw py::type_error("binding's orders must be tuples");
    for (Py_ssize_t axis = 0; axis < PyTuple_GET_SIZE(order.ptr()); ++axis) {
        const Py_ssize_t value = PyLong_AsSsize_t(PyTuple_GET_ITEM(order.ptr(), axis));
        if (value == -1 && PyErr_Occurred()) throw py::error_already_set();
        if (value != axis) return false;
    }
    return true;
}

bool is_one_of(py::handle value, py::handle choices) {
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(choices.ptr()); ++i)
        if (PyTuple_GET_ITEM(choices.ptr(), i) == value.ptr()) return true;
    return false;
}

// A new .grad's Bound, made as _tensors.grad_view's short test makes it: a plain CPU tensor with
// its parameter's dtype, shape and strides, not requiring grad, not a negated view, of a dtype
// whose numpy() is the view, or bfloat16. None where it is not one: the Python path views it or
// refuses it.
py::object fresh_grad_bound(py::handle binding, py::handle grad, py::handle param, py::handle order,
                            py::handle label) {
    static PyObject* const is_cpu = interned("is_cpu");
    static PyObject* const layout = interned("layout");
    static PyObject* const dtype_name = interned("dtype");
    static PyObject* const shape_name = interned("shape");
    static PyObject* const stride = interned("stride");
    static PyObject* const requires_grad = interned("requires_grad");
    static PyObject* const is_neg = interned("is_neg");
    static PyObject* const numpy_name = interned("numpy");
    static PyObject* const transpose = interned("transpose");
    static PyObject* const view_name = interned("view");
    static PyObject* const data_ptr = interned("data_ptr");
    const auto part = [&](TorchBinding which) { return binding_part(binding, which); };
    // param: Bound(tensor, view, address, shape, strides, dtype, storage, guard)
    if (!PyTuple_Check(param.ptr()) || PyTuple_GET_SIZE(param.ptr()) != 8)
        throw py::type_error("binding's params must be Bounds");
    const auto field = [&](Py_ssize_t index) { return py::handle(PyTuple_GET_ITEM(param.ptr(), index)); };
    const py::handle shape = field(3), strides = field(4), dtype = field(5), param_guard = field(7);
    const py::handle dtypes = part(TorchBinding::numpy_dtypes), bfloat16 = part(TorchBinding::bfloat16_view);
    if (!PyTuple_Check(dtypes.ptr())) throw py::type_error("binding's numpy_dtypes must be a tuple");
    if (!bfloat16.is_none() && (!PyTuple_Check(bfloat16.ptr()) || PyTuple_GET_SIZE(bfloat16.ptr()) != 3))
        throw py::type_error("binding's bfloat16_view must be None or a 3-tuple");
    const bool numpy_views = is_one_of(dtype, dtypes);
    const bool bfloat16_views = !bfloat16.is_none() && PyTuple_GET_ITEM(bfloat16.ptr(), 0) == dtype.ptr();
    if (Py_TYPE(grad.ptr()) != reinterpret_cast<PyTypeObject*>(part(TorchBinding::tensor_type).ptr()) ||
        attribute(grad, is_cpu).ptr() != Py_True || !attribute(grad, layout).is(part(TorchBinding::strided)) ||
        !attribute(grad, dtype_name).is(dtype) || !(numpy_views || bfloat16_views) ||
        !attribute(grad, shape_name).equal(shape) || !call_method(grad, stride).equal(strides) ||
        attribute(grad, requires_grad).ptr() != Py_False || call_method(grad, is_neg).ptr() != Py_False)
        return py::none();
    if (!PyTuple_Check(param_guard.ptr()) || PyTuple_GET_SIZE(param_guard.ptr()) != 5)
        throw py::type_error("binding's params must be Bounds");
    py::object view;
    if (numpy_views) {
        view = call_method(grad, numpy_name);
    } else {  // its bits as int16, viewed as NumPy's bfloat16 (as _tensors._numpy views them)
        const py::object bits = call_method(grad, view_name, PyTuple_GET_ITEM(bfloat16.ptr(), 1));
        view = call_method(call_method(bits, numpy_name), view_name, PyTuple_GET_ITEM(bfloat16.ptr(), 2));
    }
    if (!identity_order(order)) view = call_method(view, transpose, order.ptr());
    const py::object address = call_method(grad, data_ptr);
    // (label, tensor, storage, address, span): no storage, since numpy() pinned it (numpy_dtypes
    // is empty where this torch does not); the span is the parameter's, as the layouts match.
    const py::handle span = PyTuple_GET_ITEM(param_guard.ptr(), 4);
    const py::tuple guard = py::make_tuple(label, grad, py::none(), address, span);
    return part(TorchBinding::bound_type)(grad, view, address, shape, strides, dtype, py::none(), guard);
}

// A parameter whose .grad is not the tensor the last step viewed: the new .grad's Bound, or None
// where .grad became None.
struct NewGrad {
    Py_ssize_t index;
    py::object bound;
};

// Each parameter's .grad is the tensor whose view the step takes (None: no .grad, and no view),
// or a new one `fresh_grad_bound` views, recorded in `changes`. False where one is neither.
bool grads_viewable(py::handle binding, std::vector<NewGrad>& changes) {
    static PyObject* const tensor_field = interned("tensor");
    static PyObject* const grad_name = interned("grad");
    const auto part = [&](TorchBinding which) { return binding_part(binding, which); };
    const py::handle params = part(TorchBinding::params), grads = part(TorchBinding::grads),
                     views = part(TorchBinding::views), orders = part(TorchBinding::orders),
                     labels = part(TorchBinding::grad_labels);
    const Py_ssize_t n = PyList_GET_SIZE(params.ptr());
    const auto sizes_hold = [&] {
        for (py::handle list : {params, grads, views, orders, labels})
            if (PyList_GET_SIZE(list.ptr()) != n) return false;
        return true;
    };
    for (Py_ssize_t i = 0; i < n; ++i) {
        // Re-read each time: reading a .grad may run Python code (a subclass's property).
        if (!sizes_hold()) return false;
        const py::object bound = item(params, i), viewed = item(grads, i), view = item(views, i);
        const py::object grad = attribute(attribute(bound, tensor_field), grad_name);
        if (viewed.is_none() ? grad.is_none() && view.is_none() : grad.is(attribute(viewed, tensor_field)))
            continue;
        if (viewed.is_none() && grad.is_none()) return false;  // a view without a Bound (a sparse gradient)
        if (grad.is_none()) {
            changes.push_back({i, py::none()});
            continue;
        }
        if (!sizes_hold()) return false;
        py::object fresh = fresh_grad_bound(binding, grad, bound, item(orders, i), item(labels, i));
        if (fresh.is_none()) return false;
        changes.push_back({i, std::move(fresh)});
    }
    return sizes_hold();
}

// The garbage collector held off while this lives (it is restored as it was): a collection, which
// allocating a tracked object may start, runs finalizers, that is Python code.
class CollectorPaused {
public:
    CollectorPaused() {
#if PY_VERSION_HEX >= 0x030A0000
        was_enabled_ = PyGC_Disable() != 0;
#else
        gc_ = py::module_::import("gc");
        was_enabled_ = gc_.attr("isenabled")().cast<bool>();
        gc_.attr("disable")();
#endif
    }
    ~CollectorPaused() {
        if (!was_enabled_) return;
#if PY_VERSION_HEX >= 0x030A0000
        PyGC_Enable();
#else
        PyObject* result = PyObject_CallMethod(gc_.ptr(), "enable", nullptr);
        if (result) Py_DECREF(result);
        else PyErr_WriteUnraisable(gc_.ptr());
#endif
    }
    CollectorPaused(const CollectorPaused&) = delete;
    CollectorPaused& operator=(const CollectorPaused&) = delete;

private:
    bool was_enabled_ = false;
#if PY_VERSION_HEX < 0x030A0000
    py::object gc_;
#endif
};

// The new gradients recorded as _optimizer.Optimizer._gathered records them: their Bounds and
// views in the lists, the stepped tensors, and the guards (the engine's, for plans it builds
// later, and the plan's). Runs no Python code (the collector is held off, and the items it
// replaces are held in `replaced`, so none is freed here), after every check: the lists' sizes are
// those grads_viewable saw.
void record_new_grads(py::handle binding, Plan& plan, const std::vector<NewGrad>& changes,
                      std::vector<py::object>& replaced) {
    const CollectorPaused paused;
    static PyObject* const guard_field = interned("guard");
    static PyObject* const tensor_field = interned("tensor");
    static PyObject* const guards_name = interned("_guards");
    const auto part = [&](TorchBinding which) { return binding_part(binding, which); };
    const py::handle params = part(TorchBinding::params), grads = part(TorchBinding::grads),
                     views = part(TorchBinding::views), stepped = part(TorchBinding::stepped),
                     engine = part(TorchBinding::engine);
    const Py_ssize_t n = PyList_GET_SIZE(params.ptr());
    replaced.reserve(1 + 2 * changes.size() + static_cast<std::size_t>(PyList_GET_SIZE(stepped.ptr())));
    py::list guards, writes;
    for (Py_ssize_t i = 0; i < n; ++i) guards.append(attribute(item(params, i), guard_field));
    std::size_t next = 0;
    for (Py_ssize_t i = 0; i < n; ++i) {
        const bool changed = next < changes.size() && changes[next].index == i;
        const py::object grad = changed ? changes[next++].bound : item(grads, i);
        if (grad.is_none()) continue;
        guards.append(attribute(grad, guard_field));
        writes.append(attribute(item(params, i), tensor_field));
    }
    plan.set_guards(guards);  // first: it may throw (a malformed guard); nothing below does
    replaced.push_back(attribute(engine, guards_name));
    if (PyObject_SetAttr(engine.ptr(), guards_name, guards.ptr()) != 0) throw py::error_already_set();
    for (const NewGrad& change : changes) {
        replaced.push_back(item(grads, change.index));
        replaced.push_back(item(views, change.index));
        const py::handle view = change.bound.is_none() ? py::handle(Py_None) : PyTuple_GET_ITEM(change.bound.ptr(), 1);
        PyList_SetItem(grads.ptr(), change.index, change.bound.inc_ref().ptr());  // steals; drops the held item
        PyList_SetItem(views.ptr(), change.index, view.inc_ref().ptr());
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(stepped.ptr()); ++i) replaced.push_back(item(stepped, i));
    if (PyList_SetSlice(stepped.ptr(), 0, PyList_GET_SIZE(stepped.ptr()), writes.ptr()) != 0)
        throw py::error_already_set();
}

// No step hook is registered (torch's global ones, the optimizer's own) and no profiler records.
bool no_hooks(py::handle global_pre, py::handle global_post, py::handle own_pre, py::handle own_post,
              py::handle profiler) {
    static PyObject* const enabled_name = interned("_is_profiler_enabled");
    for (py::handle hooks : {global_pre, global_post, own_pre, own_post})
        if (!PyDict_Check(hooks.ptr()) || PyDict_GET_SIZE(hooks.ptr()) != 0) return false;
    return attribute(profiler, enabled_name).ptr() == Py_False;
}

// The optimizer's lock, taken without waiting (RLock.acquire(False)); released when this ends.
// Not taken when this thread holds it already: it is inside one of the optimizer's own
// critical sections (a finalizer or a .grad property calling step()), whose state is half made.
class TakenLock {
public:
    explicit TakenLock(py::handle lock) : lock_(lock) {
        static PyObject* const is_owned = interned("_is_owned");
        static PyObject* const acquire = interned("acquire");
        if (call_method(lock, is_owned).ptr() != Py_False) return;
        taken_ = call_method(lock, acquire, Py_False).ptr() == Py_True;
    }
    ~TakenLock() {
        if (!taken_) return;
        static PyObject* const release = interned("release");
        PyObject* args[] = {lock_.ptr()};
        PyObject* result = PyObject_VectorcallMethod(release, args, 1 | PY_VECTORCALL_ARGUMENTS_OFFSET, nullptr);
        if (result) Py_DECREF(result);
        else PyErr_WriteUnraisable(lock_.ptr());  // cannot happen: the lock is this thread's
    }
    TakenLock(const TakenLock&) = delete;
    TakenLock& operator=(const TakenLock&) = delete;
    bool taken() const { return taken_; }

private:
    py::handle lock_;
    bool taken_ = false;
};

// The engine's plan, where its plain step (fastoptim.Optimizer.step without options) would go
// straight to it: no clipping or skipping set, nothing edited since the plan was brought up to
// date. Else None.
py::object plain_plan(py::handle engine) {
    static PyObject* const plain_name = interned("_plain");
    static PyObject* const edits_name = interned("_edits");
    static PyObject* const hyper_name = interned("hyper");
    static PyObject* const arrays_name = interned("arrays");
    static PyObject* const plan_name = interned("_plan");
    if (attribute(engine, plain_name).ptr() != Py_True) return py::none();
    const py::object edits = attribute(engine, edits_name);
    if (attribute(edits, hyper_name).ptr() != Py_False || attribute(edits, arrays_name).ptr() != Py_False)
        return py::none();
    py::object plan = attribute(engine, plan_name);
    return py::isinstance<Plan>(plan) ? plan : py::none();
}

// Takes a bump back while a refusal is in flight: that refusal is what the caller must see, so a
// failure here (the versions then stay bumped, which only makes autograd stricter) is dropped.
void unbump(py::handle unbump_versions, py::handle stepped) {
    try {
        unbump_versions(stepped);
    } catch (py::error_already_set&) {
    }
}

}  // namespace

bool step_if_unchanged(py::handle param_groups, py::handle binding, py::handle own_pre_hooks,
                       py::handle own_post_hooks) {
    constexpr auto count = static_cast<Py_ssize_t>(TorchBinding::count);
    if (!PyTuple_Check(binding.ptr()) || PyTuple_GET_SIZE(binding.ptr()) != count)
        throw py::type_error("binding must be fastoptim.torch's _Binding");
    const auto part = [&](TorchBinding which) { return binding_part(binding, which); };
    for (TorchBinding list : {TorchBinding::held, TorchBinding::params, TorchBinding::grads, TorchBinding::views,
                              TorchBinding::stepped, TorchBinding::refusals, TorchBinding::orders,
                              TorchBinding::grad_labels})
        if (!PyList_CheckExact(part(list).ptr())) throw py::type_error("binding's lists must be lists");
    if (call_function(part(TorchBinding::function_modes)).ptr() != Py_False) return false;
    if (!own_pre_hooks.is_none() && !no_hooks(part(TorchBinding::global_pre), part(TorchBinding::global_post),
                                              own_pre_hooks, own_post_hooks, part(TorchBinding::profiler)))
        return false;
    std::vector<py::object> replaced;  // what new gradients replace, freed after the lock (a finalizer may run)
    const TakenLock lock(part(TorchBinding::lock));
    if (!lock.taken() || PyList_GET_SIZE(part(TorchBinding::refusals).ptr()) != 0) return false;
    std::vector<NewGrad> changes;
    if (!groups_unchanged(param_groups, part(TorchBinding::held)) || !grads_viewable(binding, changes))
        return false;
    // Read last: the checks above may have run Python code (a .grad property); this runs none.
    const py::object plan = plain_plan(part(TorchBinding::engine));
    if (plan.is_none()) return false;
    const auto keep = py::reinterpret_borrow<py::object>(binding);  // every list lives through the step
    if (!changes.empty()) record_new_grads(binding, plan.cast<Plan&>(), changes, replaced);
    // The stepped tensors' autograd versions are bumped before the step, not after it: after it
    // the bump is the first torch call since the sweep evicted torch's code and data, about 12 µs
    // a 1e6-element step on the 105 MiB Xeon, where before it costs 0-7 (bench/torch_layer_cost.py).
    // The bump may run Python code, so it comes before Plan::step, whose checks (the memory's
    // last) all follow it. If the step throws before its sweep began (a refusal: a tensor's memory
    // moved), the bump is taken back, so a refused step leaves the versions as they were; once the
    // sweep began, the tensors are written, and the versions stay bumped. One snapshot of the
    // list serves both: Python code the bump runs may edit the optimizer's. A plain plan never
    // skips (no skip_nonfinite): every stepped tensor is written.
    const auto stepped = py::reinterpret_steal<py::list>(PySequence_List(part(TorchBinding::stepped).ptr()));
    if (!stepped) throw py::error_already_set();
    part(TorchBinding::bump)(stepped);
    Plan& engine_plan = plan.cast<Plan&>();
    const std::uint64_t sweeps = engine_plan.sweeps_begun();
    try {
        engine_plan.step(part(TorchBinding::views), GradOptions{});
    } catch (...) {
        if (engine_plan.sweeps_begun() == sweeps) unbump(part(TorchBinding::unbump), stepped);
        throw;
    }
    return true;
}

}  // namespace fastoptim
