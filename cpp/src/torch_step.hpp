// fastoptim.torch's usual step in one native call.
//
// Between two steps of a training loop nothing changes but the values: the optimizer's groups
// are those it last read, none of their entries edited, each parameter's .grad is the tensor the
// last step viewed or a new plain one laid out as its parameter (torch's default zero_grad() sets
// .grad to None and backward makes new ones), and no hook awaits the step. The Python layer's
// checks of that (fastoptim/torch/_optimizer.py) run with cold caches, after the previous step's sweep evicted
// the interpreter's code and data: at 1e6 elements they cost more than the step's margin to the
// machine's bandwidth (bench/README.md, issue 28). Here they are a few C calls per tensor. When
// anything differs the call steps nothing and says so, and the Python layer takes its own path,
// which handles every change and words every refusal.
//
// The call takes the optimizer's lock, so a thread paused inside the Python layer's critical
// sections (or this thread, from inside one) makes it decline. Python code can still run inside
// it: a Parameter subclass's .grad property, or a finalizer the garbage collector runs while the
// step pins its arrays. So the lists are re-read at every use and their items held, the engine is
// read after the last .grad, the lists take new gradients' views only after that (what they
// replace is freed once the lock is released), and the memory is checked where the Python path checks it: by
// Plan::step, after the last point where Python code may run, with torch's __torch_function__
// handling off (tensor_guards.hpp).
#pragma once

#include <pybind11/pybind11.h>

namespace fastoptim {

// The torch optimizer's binding (fastoptim/torch/_optimizer.py, _Binding), in this order. The
// lists and registries are updated in place by their owners, never replaced.
enum class TorchBinding {
    lock,         // the optimizer's RLock, taken without waiting (held elsewhere: no native step)
    engine,       // the fastoptim optimizer: its plan, and whether its plain step applies
    held,         // per torch group, (group, its tensors as added)
    params,       // per parameter, its Bound (fastoptim/torch/_tensors.py)
    grads,        // per parameter, the Bound of the .grad viewed, or None
    views,        // per parameter, what the step takes: the gradient's view, or None
    stepped,      // the tensors a step writes
    bump,         // torch's version bump, called with `stepped` before the step
    unbump,       // takes the bump back, called with `stepped` when the step refuses after it
    refusals,     // why the native step may not run now (a swap_ema block): empty when it may
    global_pre,   // torch's registries of global step hooks
    global_post,
    profiler,     // torch.autograd.profiler: a recording profiler wants the step's range
    function_modes,  // torch._C._is_torch_function_mode_enabled: a mode would see the .grad reads
    orders,       // per parameter, its view's axis order (a tuple)
    grad_labels,  // per parameter, "params[i].grad", the new gradient's guard label
    tensor_type,  // torch.Tensor: a new .grad of exactly this type is viewed here
    strided,      // torch.strided
    numpy_dtypes,  // the torch dtypes a new .grad's numpy() views as the step takes it (empty: none)
    bfloat16_view,  // (torch.bfloat16, torch.int16, NumPy's bfloat16): a new bfloat16 .grad's view; or None
    bound_type,   // fastoptim/torch/_tensors.py's Bound, made for a new .grad
    count
};

// If every check above holds, the stepped tensors' autograd versions bumped, then the engine's
// plain step on the recorded views (Plan::step: its own checks, the tensors' guards included, then
// the kernels), and true. New .grad tensors are viewed first, as _tensors.grad_view's short test
// views them, and the lists, the stepped tensors and the guards updated as the Python path would;
// any other new .grad (a subclass, another dtype or layout) leaves the step to the Python path.
// Else false, with nothing done; a ValueError from Plan::step writes nothing either, and the bump
// is taken back (the new views stay recorded). `own_pre_hooks`/`own_post_hooks`: the optimizer's hook registries;
// None where the caller has run the hooks (or found none).
bool step_if_unchanged(pybind11::handle param_groups, pybind11::handle binding, pybind11::handle own_pre_hooks,
                       pybind11::handle own_post_hooks);

}  // namespace fastoptim
