#include "torch_step.hpp"

#include <cstddef>
#include <stdexcept>
#include <string>

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

// Each parameter's .grad is the tensor whose view the step takes (None: no .grad, and no view).
bool grads_unchanged(py::handle params, py::handle grads, py::handle views) {
    static PyObject* const tensor_field = interned("tensor");
    static PyObject* const grad_name = interned("grad");
    const Py_ssize_t n = PyList_GET_SIZE(params.ptr());
    for (Py_ssize_t i = 0; i < n; ++i) {
        // Re-read each time: reading a .grad may run Python code (a subclass's property).
        if (PyList_GET_SIZE(params.ptr()) != n || PyList_GET_SIZE(grads.ptr()) != n ||
            PyList_GET_SIZE(views.ptr()) != n)
            return false;
        const py::object bound = item(params, i), viewed = item(grads, i), view = item(views, i);
        const py::object grad = attribute(attribute(bound, tensor_field), grad_name);
        if (viewed.is_none()) {
            if (!grad.is_none() || !view.is_none()) return false;
        } else if (grad.ptr() != attribute(viewed, tensor_field).ptr()) {
            return false;
        }
    }
    return PyList_GET_SIZE(params.ptr()) == n && PyList_GET_SIZE(grads.ptr()) == n && PyList_GET_SIZE(views.ptr()) == n;
}

// No step hook is registered (torch's global ones, the optimizer's own) and no profiler records.
bool no_hooks(py::handle global_pre, py::handle global_post, py::handle own_pre, py::handle own_post,
              py::handle profiler) {
    static PyObject* const enabled_name = interned("_is_profiler_enabled");
    for (py::handle hooks : {global_pre, global_post, own_pre, own_post})
        if (!PyDict_Check(hooks.ptr()) || PyDict_GET_SIZE(hooks.ptr()) != 0) return false;
    return attribute(profiler, enabled_name).ptr() == Py_False;
}

// A method of `object` called with `arg` (or none), as a new reference.
py::object call_method(py::handle object, PyObject* name, PyObject* arg = nullptr) {
    PyObject* args[] = {object.ptr(), arg};
    const std::size_t count = arg ? 2 : 1;
    PyObject* result = PyObject_VectorcallMethod(name, args, count | PY_VECTORCALL_ARGUMENTS_OFFSET, nullptr);
    if (!result) throw py::error_already_set();
    return py::reinterpret_steal<py::object>(result);
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

}  // namespace

bool step_if_unchanged(py::handle param_groups, py::handle binding, py::handle own_pre_hooks,
                       py::handle own_post_hooks) {
    constexpr auto count = static_cast<Py_ssize_t>(TorchBinding::count);
    if (!PyTuple_Check(binding.ptr()) || PyTuple_GET_SIZE(binding.ptr()) != count)
        throw py::type_error("binding must be fastoptim.torch's _Binding");
    const auto part = [&](TorchBinding which) {
        return py::handle(PyTuple_GET_ITEM(binding.ptr(), static_cast<Py_ssize_t>(which)));
    };
    for (TorchBinding list : {TorchBinding::held, TorchBinding::params, TorchBinding::grads, TorchBinding::views,
                              TorchBinding::stepped, TorchBinding::refusals})
        if (!PyList_CheckExact(part(list).ptr())) throw py::type_error("binding's lists must be lists");
    if (call_function(part(TorchBinding::function_modes)).ptr() != Py_False) return false;
    if (!own_pre_hooks.is_none() && !no_hooks(part(TorchBinding::global_pre), part(TorchBinding::global_post),
                                              own_pre_hooks, own_post_hooks, part(TorchBinding::profiler)))
        return false;
    const TakenLock lock(part(TorchBinding::lock));
    if (!lock.taken() || PyList_GET_SIZE(part(TorchBinding::refusals).ptr()) != 0) return false;
    if (!groups_unchanged(param_groups, part(TorchBinding::held)) ||
        !grads_unchanged(part(TorchBinding::params), part(TorchBinding::grads), part(TorchBinding::views)))
        return false;
    // Read last: the checks above may have run Python code (a .grad property); this runs none.
    const py::object plan = plain_plan(part(TorchBinding::engine));
    if (plan.is_none()) return false;
    const auto keep = py::reinterpret_borrow<py::object>(binding);  // every list lives through the step
    if (!plan.cast<Plan&>().step(part(TorchBinding::views), GradOptions{}).skipped) {
        try {
            part(TorchBinding::bump)(part(TorchBinding::stepped));
        } catch (py::error_already_set& error) {
            if (!error.matches(PyExc_ValueError)) throw;
            // a ValueError would read as "nothing was done" to the caller: re-raised as a RuntimeError
            throw std::runtime_error(std::string("the step was taken, but bumping the parameters' autograd "
                                                 "versions failed: ") + error.what());
        }
    }
    return true;
}

}  // namespace fastoptim
