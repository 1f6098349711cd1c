#include "tensor_guards.hpp"

#include <string>

namespace py = pybind11;

namespace fastoptim {

namespace {

// The integer `method` (torch's C method, unbound) returns for `object`.
long long call_for_integer(PyObject* method, py::handle object) {
    PyObject* args[] = {object.ptr()};
    const auto result = py::reinterpret_steal<py::object>(PyObject_Vectorcall(method, args, 1, nullptr));
    if (!result) throw py::error_already_set();
    const long long value = PyLong_AsLongLong(result.ptr());
    if (value == -1 && PyErr_Occurred()) throw py::error_already_set();
    return value;
}

}  // namespace

PyObject* interned(const char* text) {
    PyObject* name = PyUnicode_InternFromString(text);
    if (!name) throw py::error_already_set();
    return name;  // kept for the life of the process
}

std::vector<TensorGuard> read_tensor_guards(py::handle guards) {
    const auto items = py::reinterpret_steal<py::tuple>(PySequence_Tuple(guards.ptr()));
    if (!items) throw py::error_already_set();
    std::vector<TensorGuard> taken;
    taken.reserve(items.size());
    for (py::handle guard : items) {
        if (!PyTuple_CheckExact(guard.ptr()) || PyTuple_GET_SIZE(guard.ptr()) != 5 ||
            !PyUnicode_Check(PyTuple_GET_ITEM(guard.ptr(), 0)) ||
            !PyLong_CheckExact(PyTuple_GET_ITEM(guard.ptr(), 3)) || !PyLong_CheckExact(PyTuple_GET_ITEM(guard.ptr(), 4)))
            throw py::type_error("each guard is a (label, tensor, storage, address, span) tuple");
        const auto entry = py::reinterpret_borrow<py::tuple>(guard);
        taken.push_back(TensorGuard{entry[0], entry[1], entry[2], entry[3].cast<long long>(),
                                    entry[4].cast<long long>()});
    }
    return taken;
}

namespace {

// What torch says of its __torch_function__ handling, and the C methods the checks call, looked
// up once torch is imported (its C module stays loaded): null before. The methods are called
// unbound, from torch's C types, so a subclass's Python override of data_ptr (a Parameter
// subclass may define one) cannot run inside the checks and move a tensor already checked.
struct TorchFunctionHandling {
    PyObject* mode_enabled;      // torch._C._is_torch_function_mode_enabled; null where torch lacks it
    PyObject* disable;           // torch._C.DisableTorchFunction, a C type
    PyObject* tensor_data_ptr;   // torch._C.TensorBase.data_ptr
    PyObject* storage_data_ptr;  // torch._C.StorageBase.data_ptr
    PyObject* storage_nbytes;    // torch._C.StorageBase.nbytes
};

// `name` of torch._C's type `type_name` (a new reference).
PyObject* c_method(py::handle torch_c, const char* type_name, const char* name) {
    const auto type = py::reinterpret_steal<py::object>(PyObject_GetAttrString(torch_c.ptr(), type_name));
    if (!type) throw py::error_already_set();
    PyObject* method = PyObject_GetAttrString(type.ptr(), name);
    if (!method) throw py::error_already_set();
    return method;
}

const TorchFunctionHandling* torch_function_handling() {
    static TorchFunctionHandling found{nullptr, nullptr, nullptr, nullptr, nullptr};  // kept for the life of the process
    if (found.disable) return &found;
    static PyObject* const module_name = interned("torch._C");
    const auto torch_c = py::reinterpret_steal<py::object>(PyImport_GetModule(module_name));
    if (!torch_c) {
        if (PyErr_Occurred()) throw py::error_already_set();
        return nullptr;
    }
    PyObject* mode_enabled = PyObject_GetAttrString(torch_c.ptr(), "_is_torch_function_mode_enabled");
    if (!mode_enabled) {  // a torch without it: handling is switched off at every check
        if (!PyErr_ExceptionMatches(PyExc_AttributeError)) throw py::error_already_set();
        PyErr_Clear();
    }
    PyObject* disable = PyObject_GetAttrString(torch_c.ptr(), "DisableTorchFunction");
    if (!disable) {
        Py_XDECREF(mode_enabled);
        throw py::error_already_set();
    }
    try {
        found.tensor_data_ptr = c_method(torch_c, "TensorBase", "data_ptr");
        found.storage_data_ptr = c_method(torch_c, "StorageBase", "data_ptr");
        found.storage_nbytes = c_method(torch_c, "StorageBase", "nbytes");
    } catch (...) {
        Py_XDECREF(found.tensor_data_ptr);
        Py_XDECREF(found.storage_data_ptr);
        found.tensor_data_ptr = found.storage_data_ptr = nullptr;
        Py_XDECREF(mode_enabled);
        Py_DECREF(disable);
        throw;
    }
    found.mode_enabled = mode_enabled;
    found.disable = disable;  // set last: it marks the lookup done
    return &found;
}

// torch's __torch_function__ handling switched off while this lives, where a TorchFunctionMode is
// active (`with torch.device(...)` is one): data_ptr() would run the mode's Python code, which
// could move a tensor already checked. Without a mode the checks' calls run no Python code, so
// none can become active during them. Entering and leaving DisableTorchFunction runs none either.
class TorchFunctionOff {
public:
    TorchFunctionOff() {
        static PyObject* const enter = interned("__enter__");
        const TorchFunctionHandling* torch = torch_function_handling();
        if (!torch) return;  // torch is not imported: no tensor to check
        if (torch->mode_enabled) {
            const auto enabled = py::reinterpret_steal<py::object>(PyObject_CallNoArgs(torch->mode_enabled));
            if (!enabled) throw py::error_already_set();
            if (enabled.ptr() == Py_False) return;
        }
        context_ = py::reinterpret_steal<py::object>(PyObject_CallNoArgs(torch->disable));
        if (!context_) throw py::error_already_set();
        PyObject* args[] = {context_.ptr()};
        const auto entered = py::reinterpret_steal<py::object>(
            PyObject_VectorcallMethod(enter, args, 1 | PY_VECTORCALL_ARGUMENTS_OFFSET, nullptr));
        if (!entered) {
            context_ = py::object();
            throw py::error_already_set();
        }
    }
    ~TorchFunctionOff() {
        if (!context_) return;
        static PyObject* const exit = interned("__exit__");
        PyObject* args[] = {context_.ptr(), Py_None, Py_None, Py_None};
        PyObject* result = PyObject_VectorcallMethod(exit, args, 4 | PY_VECTORCALL_ARGUMENTS_OFFSET, nullptr);
        if (result) Py_DECREF(result);
        else PyErr_WriteUnraisable(context_.ptr());  // leaving it sets a flag back: it does not fail
    }
    TorchFunctionOff(const TorchFunctionOff&) = delete;
    TorchFunctionOff& operator=(const TorchFunctionOff&) = delete;

private:
    py::object context_;
};

}  // namespace

void check_tensor_guards(const std::vector<TensorGuard>& guards) {
    if (guards.empty()) return;
    const TorchFunctionOff plain_calls;
    const TorchFunctionHandling* torch = torch_function_handling();
    if (!torch) throw py::type_error("fastoptim.torch's memory guards need torch imported");
    for (const TensorGuard& guard : guards) {
        const long long address = guard.address, span = guard.span;
        bool moved = call_for_integer(torch->tensor_data_ptr, guard.tensor) != address || span < 0;
        if (!moved && !guard.storage.is_none()) {  // a resizable storage: does it still hold the view?
            const long long start = call_for_integer(torch->storage_data_ptr, guard.storage);
            const long long bytes = call_for_integer(torch->storage_nbytes, guard.storage);
            moved = address < start || span > bytes || address - start > bytes - span;
        }
        if (moved)
            throw py::value_error(guard.label.cast<std::string>() +
                                  ": its memory moved since the optimizer bound it (p.data = ..., set_() or "
                                  "share_memory_()); nothing was updated. Copy new values in place instead "
                                  "(p.data.copy_(...)), or create the optimizer again");
    }
}

}  // namespace fastoptim
