"""The base of fastoptim.torch: a ``torch.optim.Optimizer`` whose step is one native fastoptim call.

It holds a fastoptim NumPy optimizer (the engine) over zero-copy views of the parameters
(``_tensors``). torch's ``param_groups`` stay the user's: schedulers and hooks edit them as with
torch.optim, and each step hands the engine the hyper-parameters that changed. The engine's
parameters are named by torch's state-dict ids (0, 1, ... across the groups in order), so its
state dict is torch's once the arrays become tensors (``_state.py``).
"""

from __future__ import annotations

import contextlib
import inspect
import operator
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from itertools import chain
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
import torch.autograd.profiler as _autograd_profiler
import torch.optim.optimizer as _torch_optimizer

from .. import _core
from .. import optimizer as _numpy_optimizer
from .._per_array import PartialStepError
from .._state_format import ABSMAX, stored_values
from .._step_options import NOTHING_MEASURED, StepInfo
from ._groups import TrackedGroup
from ._hooks import hooked_load, hooked_state_dict
from ._state import from_torch, plain, to_torch
from ._tensors import NUMPY_VIEWED, Bound, Guard, bfloat16_view, grad_view, param_view, tensor_of

__all__ = ["Optimizer"]

# torch's registries of the hooks every optimizer's step runs (register_optimizer_step_pre_hook)
_GLOBAL_PRE_HOOKS: Mapping[Any, Any] = getattr(_torch_optimizer, "_global_optimizer_pre_hooks", {})
_GLOBAL_POST_HOOKS: Mapping[Any, Any] = getattr(_torch_optimizer, "_global_optimizer_post_hooks", {})


def _each_bumped(tensors: list[torch.Tensor]) -> None:
    for tensor in tensors:
        torch.autograd.graph.increment_version(tensor)


def _versions_bumped_by_list() -> Callable[[list[torch.Tensor]], None]:
    """How this torch bumps the autograd version of tensors written outside it: one C call for the
    list where it takes one (what torch.autograd.graph.increment_version makes), else one each."""
    bump: Callable[[list[torch.Tensor]], None] | None = getattr(torch._C, "_increment_version", None)
    if bump is None:
        return _each_bumped
    try:
        bump([torch.zeros(1)])
    except TypeError:
        return _each_bumped
    return bump


_increment_version = _versions_bumped_by_list()


def _version_setter() -> Callable[[torch.Tensor, int], None] | None:
    """How this torch sets one tensor's autograd version: torch 2.13's
    ``_unsafe_set_version_counter`` takes sequences, older ones one tensor and an int; None
    where it has neither."""
    set_versions: Callable[..., None] | None = getattr(torch._C._autograd, "_unsafe_set_version_counter", None)
    if set_versions is None:
        return None
    setter = set_versions

    def of_sequences(tensor: torch.Tensor, version: int) -> None:
        setter((tensor,), (version,))

    forms: tuple[Callable[[torch.Tensor, int], None], ...] = (of_sequences, setter)
    probe = torch.zeros(1)
    for form in forms:
        try:
            form(probe, 1)
        except TypeError:
            continue
        if probe._version == 1:
            return form
    return None


_set_version = _version_setter()


def _versions_unbumped(tensors: list[torch.Tensor]) -> None:
    """Takes back one bump of each tensor's autograd version: the native call's, when the step
    refused before its sweep began, so that a refused step leaves the versions as it found them.
    One tensor at a time, each version read just before it is set: tensors that share a version
    counter (views of one buffer) were bumped once each. Where this torch cannot set versions
    they stay bumped, which only makes autograd's check of saved tensors stricter."""
    if _set_version is not None:
        for tensor in tensors:
            _set_version(tensor, tensor._version - 1)


_torch_step = _core.torch_step
_function_modes_enabled: Callable[[], bool] = getattr(torch._C, "_is_torch_function_mode_enabled", lambda: False)


def _changes_in_place(value: Any) -> bool:
    """Whether a hyper-parameter can change without an edit of its group: a tensor (a scheduler
    fill_()s it), a list, or a tuple holding one (betas of two tensors)."""
    if isinstance(value, tuple):
        return any(map(_changes_in_place, value))
    return isinstance(value, (torch.Tensor, list))


def _holds_tensor(value: Any) -> bool:
    """A tensor, or a tuple or list holding one: kept as given in torch's groups (as torch keeps
    it), so that what fills it in place reaches the steps. Other values become the engine's (a
    list of floats a tuple), and leave the usual step native."""
    if isinstance(value, (tuple, list)):
        return any(map(_holds_tensor, value))
    return isinstance(value, torch.Tensor)


class _Binding(NamedTuple):
    """What the usual step's one native call reads (cpp/src/torch_step.hpp, in this order). The
    lists are the optimizer's own, only ever updated in place."""

    lock: Any  # the optimizer's RLock
    engine: _numpy_optimizer.Optimizer
    held: list[tuple[TrackedGroup, list[Any]]]  # each torch group and the tensors it was added with
    params: list[Bound]
    grads: list[Bound | None]  # the .grad viewed, per parameter
    views: list[np.ndarray | None]  # what the step takes
    stepped: list[torch.Tensor]  # whose autograd versions a step bumps
    bump: Callable[[list[torch.Tensor]], None]
    unbump: Callable[[list[torch.Tensor]], None]  # undoes `bump` when the step refuses after it
    refusals: list[str]  # why the native call may not step now (a swap_ema block); empty: it may
    global_pre_hooks: Mapping[Any, Any]
    global_post_hooks: Mapping[Any, Any]
    profiler: Any  # torch.autograd.profiler
    function_modes: Callable[[], bool]  # whether a TorchFunctionMode is active (it would see the .grad reads)
    # What viewing a new .grad takes (grad_view's short test, made natively; others decline)
    orders: list[tuple[int, ...]]
    grad_labels: list[str]
    tensor_type: type[torch.Tensor]
    strided: torch.layout
    numpy_dtypes: tuple[torch.dtype, ...]  # whose numpy() is the view: empty where torch does not pin it
    bfloat16_view: tuple[torch.dtype, torch.dtype, np.dtype] | None  # _tensors.bfloat16_view()
    bound_type: type[Bound]


# torch's own group keys, which fastoptim's engine has no use for: kept in the groups as torch keeps them
_TORCH_KEYS = {"foreach": None, "fused": None, "capturable": False, "differentiable": False}


def _torch_keys(name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """torch's foreach/fused/capturable/differentiable, taken out of `kwargs`; True for the last two refused."""
    keys = {key: kwargs.pop(key, default) for key, default in _TORCH_KEYS.items()}
    for key, what in (("capturable", "CUDA graphs"), ("differentiable", "autograd through the step")):
        if keys[key]:
            torch_class = getattr(torch.optim, name, None)
            if torch_class is not None and key in inspect.signature(torch_class).parameters:
                where = " on CUDA tensors" if key == "capturable" else ""
                use = f"{what}: use torch.optim.{name}({key}=True){where}"
            else:
                use = f"{what}, which torch.optim offers for other rules than {name}"
            raise TypeError(f"{key}=True is for {use}; fastoptim.torch.{name} steps CPU tensors with native kernels "
                            "outside autograd")
    for key in ("foreach", "fused"):
        if keys[key] not in (None, False, True):
            raise TypeError(f"{key} must be None, False or True (accepted and ignored), got {keys[key]!r}")
    return keys


class Optimizer(torch.optim.Optimizer):
    """A torch optimizer whose step runs fastoptim's native kernels over the tensors in place.

    Subclasses set ``_numpy_class``, the fastoptim optimizer of the rule: it takes the same
    arguments and options (``max_grad_norm``, ``ema_decay``, ``state_dtype``, ...), and checks them.
    """

    _numpy_class: ClassVar[type[Any]]  # a fastoptim optimizer (the plan's, or SparseAdam)
    _takes_sparse: ClassVar[bool] = False  # sparse COO gradients (SparseAdam's _sparse_rows); else refused
    _step_tensor: ClassVar[bool] = True  # torch saves `step` as a tensor (SparseAdam: an int)
    _any_order: ClassVar[bool] = True  # element-wise: a tensor is viewed in its own memory order
    _probe_shape: ClassVar[tuple[int, ...]] = (1,)  # of the array the arguments are checked over (Muon's: 2-D)
    _binding: _Binding | None = None  # what the usual step's one native call reads; None: no such call

    def __init__(self, params: Any, *args: Any, **kwargs: Any) -> None:
        name = type(self).__name__
        torch_keys = _torch_keys(name, kwargs)
        given = {k: v for k, v in kwargs.items() if _holds_tensor(v)}
        args = tuple(plain(a) for a in args)
        kwargs = {k: plain(v) for k, v in kwargs.items()}
        probe = self._numpy_class([np.zeros(self._probe_shape, np.float32)], *args, **kwargs)  # checks every argument
        if not isinstance(probe, self._numpy_class):  # fastoptim.Adagrad(rowwise=True) is a RowwiseAdagrad
            raise TypeError(f"fastoptim.torch.{name} has no {type(probe).__name__} (rowwise=True); use "
                            f"fastoptim.{type(probe).__name__} on NumPy arrays")
        self._hyper_keys = tuple(probe.defaults)
        self._engine: _numpy_optimizer.Optimizer | None = None
        self._params: list[Bound] = []
        self._orders: list[tuple[int, ...]] = []
        self._grads: list[Bound | None] = []  # the gradient tensors of the last step, viewed
        self._grad_views: list[np.ndarray | None] = []
        self._grad_labels: list[str] = []  # for messages, made once
        self._pending: list[dict[str, Any]] = []  # the engine's groups, until it is built
        self._held: list[tuple[TrackedGroup, list[Any]]] = []  # each torch group and its tensors
        self._stepped: list[torch.Tensor] = []  # the parameters whose gradients are viewed: a step writes them
        self._native_refusals: list[str] = []  # why the usual step may not be one native call now
        # Serializes steps, group additions and checkpoints (the engine's own lock comes later)
        self._lock = threading.RLock()
        self.last_step_info: StepInfo = NOTHING_MEASURED
        super().__init__(params, {**probe.defaults, **{k: v for k, v in given.items() if k in probe.defaults},
                                  **torch_keys})
        engine = self._numpy_class(self._pending, *args, **kwargs)
        self._attach(engine)
        self._engine = engine
        # The usual step is one native call where the engine's plain step is Optimizer.step's own
        if isinstance(engine, _numpy_optimizer.Optimizer) and type(engine).step is _numpy_optimizer.Optimizer.step:
            self._binding = _Binding(self._lock, engine, self._held, self._params, self._grads, self._grad_views,
                                     self._stepped, _increment_version, _versions_unbumped, self._native_refusals,
                                     _GLOBAL_PRE_HOOKS,
                                     _GLOBAL_POST_HOOKS, _autograd_profiler, _function_modes_enabled, self._orders,
                                     self._grad_labels, torch.Tensor, torch.strided, NUMPY_VIEWED, bfloat16_view(),
                                     Bound)
        self._pending = []
        self._set_guards(engine)

    def _attach(self, engine: Any) -> None:
        """Make the engine fit for views of tensors: no Python code may run while its kernels write."""
        engine._release_gil = False
        engine._built_plan().release_gil = False

    # ---- groups -------------------------------------------------------------------------------
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """torch's ``add_param_group``: the group's tensors are checked and viewed; on any error
        nothing changes."""
        with self._lock:
            self._add_param_group(param_group)

    def _add_param_group(self, param_group: dict[str, Any]) -> None:
        groups = self.param_groups
        count = len(groups)
        super().add_param_group(param_group)
        try:
            group = groups[-1] = TrackedGroup(groups[-1])  # edits raise its flag (_groups.py)
            first = len(self._params)
            bounds, orders = [], []
            for index, tensor in enumerate(group["params"]):
                bound, order = param_view(f"params[{first + index}]", tensor)
                if not self._any_order and order != tuple(range(len(order))):
                    raise ValueError(f"params[{first + index}] is not contiguous (strides {tensor.stride()}); "
                                     f"{type(self).__name__} reads a tensor's last two axes as its rows and columns: "
                                     "make it contiguous before creating the optimizer (p.data = p.data.contiguous())")
                bounds.append(bound)
                orders.append(order)
            numpy_group = {key: plain(group[key]) for key in self._hyper_keys}
            numpy_group["params"] = [b.view for b in bounds]
            numpy_group["param_names"] = list(range(first, first + len(bounds)))
            engine = self._engine
            if engine is None:
                self._pending.append(numpy_group)
            else:
                self._check_params_in_place()
                with engine._lock:
                    held_guards = engine._guards
                    engine._guards = self._guard_list(self._params + bounds)  # the new plan's
                    try:
                        engine.add_param_group(numpy_group)
                    except BaseException:
                        engine._guards = held_guards
                        raise
        except BaseException:
            del groups[count:]
            raise
        self._params += bounds
        self._orders += orders
        self._grads += [None] * len(bounds)
        self._grad_views += [None] * len(bounds)
        self._grad_labels += [f"params[{first + index}].grad" for index in range(len(bounds))]
        self._held.append((group, list(group["params"])))
        if self._engine is not None:
            self._set_guards(self._engine)

    def _sync_groups(self, engine: _numpy_optimizer.Optimizer) -> None:
        """Refuse a changed structure; hand the engine the hyper-parameters edited since the last step."""
        groups = self.param_groups
        held = self._held
        if len(groups) != len(held):
            raise ValueError("param_groups was changed; add groups with add_param_group (nothing was updated)")
        for index, (group, tensors) in enumerate(held):
            if groups[index] is not group:
                raise ValueError(f"param_groups[{index}] was replaced; edit its entries in place "
                                 "(nothing was updated)")
            params = group.get("params")
            if not isinstance(params, list) or len(params) != len(tensors) or \
                    not all(map(operator.is_, params, tensors)):
                raise ValueError(f"param_groups[{index}]['params'] was changed; the tensors of a group are fixed "
                                 "(add tensors with add_param_group; nothing was updated)")
            if group.edited or group.mutable:
                self._sync_group(index, group, engine.param_groups[index])

    def _sync_group(self, index: int, group: TrackedGroup, engine_group: dict[str, Any]) -> None:
        """Hand the engine this group's hyper-parameters as it takes them (tensors as floats, lists
        as tuples), those that differ from what it holds."""
        missing = [key for key in self._hyper_keys if key not in group]
        if missing:
            raise ValueError(f"param_groups[{index}] lacks {missing[0]!r} (nothing was updated)")
        raw = [group[key] for key in self._hyper_keys]
        for key, value in zip(self._hyper_keys, map(plain, raw)):
            if value != engine_group[key] or type(value) is not type(engine_group[key]):
                engine_group[key] = value
        group.edited = False  # after the engine took them: an invalid value is handed again next step
        group.mutable = any(map(_changes_in_place, raw))

    # ---- the step -----------------------------------------------------------------------------
    def _gathered(self) -> list[Any]:
        """Each parameter's gradient view (None where ``.grad`` is None). A gradient tensor seen at
        the last step keeps its view (the native guard re-checks its memory); a new one is checked
        and viewed, and the guards change with it."""
        views = self._grad_views
        cache = self._grads
        changed = False
        try:
            for index, param in enumerate(self._params):
                grad = param.tensor.grad
                bound = cache[index]
                if bound is None:
                    if grad is None and views[index] is None:
                        continue
                elif grad is bound.tensor:
                    continue
                changed = True
                cache[index] = views[index] = None  # until the new one is viewed: a refusal leaves none
                if grad is None:
                    continue
                label = self._grad_labels[index]
                if grad.layout == torch.sparse_coo and self._takes_sparse:  # viewed anew at each step
                    views[index] = self._sparse_rows(label, grad, param.tensor)
                else:
                    bound = grad_view(label, grad, param, self._orders[index])
                    cache[index] = bound
                    views[index] = bound.view
        finally:
            if changed:  # the guards cover exactly the views held, even after a refusal
                self._set_guards(self._built())
                self._stepped[:] = [b.tensor for b, view in zip(self._params, views) if view is not None]
        return views

    def _sparse_rows(self, label: str, grad: torch.Tensor, param: torch.Tensor) -> Any:
        """A sparse COO gradient as the engine takes it (``_takes_sparse`` classes)."""
        raise NotImplementedError

    def _guard_list(self, params: list[Bound] | None = None) -> list[Guard]:
        """The guards of the parameters' views (`params`, default all) and of the gradients' held."""
        guards = [b.guard for b in (self._params if params is None else params)]
        return guards + [b.guard for b in self._grads if b is not None]

    def _set_guards(self, engine: Any) -> None:
        """Hand the engine (and its plan, which the native step checks them in) the guards."""
        engine._guards = self._guard_list()
        engine._built_plan().set_guards(engine._guards)

    def _moved_grads(self) -> bool:
        """Forget the views of gradients whose memory moved (the guard refused them); whether any did."""
        moved = False
        for index, bound in enumerate(self._grads):
            if bound is not None and bound.tensor.data_ptr() != bound.address:
                self._grads[index] = self._grad_views[index] = None
                moved = True
        if moved:
            self._set_guards(self._built())
        return moved

    def _check_params_in_place(self) -> None:
        """Before Python code reads the parameters' views outside a step (an EMA restarted by a load,
        a plan rebuilt for a new group): ValueError, as the native guard words it, for one that moved."""
        for bound in self._params:
            if bound.tensor.data_ptr() != bound.address:
                raise ValueError(f"{bound.guard[0]}: its memory moved since the optimizer bound it (p.data = ..., "
                                 "set_() or share_memory_()); nothing was changed. Copy new values in place "
                                 "instead (p.data.copy_(...)), or create the optimizer again")

    def step(self, *args: Any, **kwargs: Any) -> Any:
        """``step(closure=None)``: one step over every parameter whose ``.grad`` is not None, in one
        native call. With a closure, it is called first (with grad enabled) and its loss returned,
        as torch.optim. What the step measured or skipped (``max_grad_norm``, ``skip_nonfinite``)
        is in :attr:`last_step_info`.

        torch's step wrapper is this method's own: the global and the optimizer's step pre- and
        post-hooks run as torch runs them, and the step is a ``record_function`` range while a
        profiler records (the only time the range is seen; torch's wrapper opens it at every
        step, several microseconds each)."""
        plain_call = not args and not kwargs
        if plain_call and self._stepped_natively(self._optimizer_step_pre_hooks, self._optimizer_step_post_hooks):
            return None
        if _autograd_profiler._is_profiler_enabled:
            with torch.autograd.profiler.record_function(f"Optimizer.step#{type(self).__name__}.step"):
                return self._hooked_step(args, kwargs)
        if _GLOBAL_PRE_HOOKS or _GLOBAL_POST_HOOKS or self._optimizer_step_pre_hooks or \
                self._optimizer_step_post_hooks:
            return self._hooked_step(args, kwargs)
        if plain_call:  # the native call found a change: handle it
            self._python_step()
            return None
        return self._step(*args, **kwargs)  # no hook, and nothing for _optimizer_step_code

    step.hooked = True  # type: ignore[attr-defined]  # torch.optim.Optimizer.__init__ wraps an unhooked step

    def _hooked_step(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """The hooks around the step, as torch's ``Optimizer.profile_hook_step`` runs them."""
        full: tuple[Any, ...] = (self, *args)
        for pre_hook in chain(_GLOBAL_PRE_HOOKS.values(), self._optimizer_step_pre_hooks.values()):
            result = pre_hook(self, full, kwargs)
            if result is not None:
                if not (isinstance(result, tuple) and len(result) == 2):
                    raise RuntimeError(f"a step pre-hook must return None or a tuple of (new_args, new_kwargs), "
                                       f"got {result!r}")
                full, kwargs = result
        out = self._step(*full[1:], **kwargs)
        self._optimizer_step_code()
        for post_hook in chain(self._optimizer_step_post_hooks.values(), _GLOBAL_POST_HOOKS.values()):
            post_hook(self, full, kwargs)
        return out

    def _step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if not self._stepped_natively(None, None):  # the hooks ran, or there are none
            self._python_step()
        return loss

    def _python_step(self) -> None:
        """The step, every change since the last one handled (and every refusal worded)."""
        engine = self._built()
        with self._lock:
            if self._ema_swapped:
                raise RuntimeError("a step is refused inside swap_ema(): the parameters hold the EMA until the block "
                                   "ends (nothing was changed)")
            self._sync_groups(engine)
            try:
                grads = self._gathered()
                info = engine.step(grads)
            except ValueError as error:
                moved = self._moved_grads()
                if isinstance(error, PartialStepError):  # not retried: autograd sees what it changed
                    _increment_version([self._params[i].tensor for i in error.stepped if isinstance(i, int)])
                    raise
                if not moved:
                    raise
                grads = self._gathered()  # a .grad's memory moved: view it anew
                info = engine.step(grads)
            self.last_step_info = info
            if not info.skipped:  # autograd sees the in-place update, as after torch.optim's step
                _increment_version(self._stepped)

    def _stepped_natively(self, pre_hooks: Any, post_hooks: Any) -> bool:
        """The usual step: nothing changed since the last one but the values (the groups, the
        engine's settings; each ``.grad`` the tensor viewed before, or a new one grad_view's short
        test takes, viewed there; with `pre_hooks`, no hook or profiler awaits the step), checked
        and stepped in one native call, ``_core.torch_step`` (cpp/src/torch_step.hpp),
        whose checks cost a step with cold caches less than the Python path's (bench/README.md,
        issue 28). False, with nothing written, where anything differs or the step refused (new
        gradients it viewed stay recorded, as _gathered records them): the Python path then
        handles the change, or words the refusal."""
        binding = self._binding
        if binding is None:
            return False
        try:
            if not _torch_step(self.param_groups, binding, pre_hooks, post_hooks):
                return False
        except ValueError:  # raised before anything was written
            return False
        self.last_step_info = NOTHING_MEASURED
        return True

    @torch.no_grad()
    def zero_grad(self, set_to_none: bool = True) -> None:
        """torch's ``zero_grad``. With ``set_to_none`` the optimizer also lets go of the gradients
        it viewed, so they are freed now rather than at the next step (``model.zero_grad()`` and
        ``p.grad = None`` leave them held until then)."""
        super().zero_grad(set_to_none)
        if set_to_none:
            with self._lock:
                self._grads[:] = [None] * len(self._grads)
                self._grad_views[:] = [None] * len(self._grad_views)
                self._stepped.clear()
                if self._engine is not None:
                    self._set_guards(self._engine)

    # ---- the options the engine keeps -------------------------------------------------------------
    @property
    def max_grad_norm(self) -> float | None:
        """Clip the gradients to this global 2-norm inside the step (None: no clipping)."""
        return self._built().max_grad_norm

    @max_grad_norm.setter
    def max_grad_norm(self, value: float | None) -> None:
        self._built().max_grad_norm = value

    @property
    def skip_nonfinite(self) -> bool:
        """Skip, changing nothing, a step whose gradients hold a NaN or an infinity."""
        return self._built().skip_nonfinite

    @skip_nonfinite.setter
    def skip_nonfinite(self, value: bool) -> None:
        self._built().skip_nonfinite = value

    @property
    def state_dtype(self) -> str | None:
        """How the state is stored: None (the parameter's dtype), "bfloat16", "int8" or "float32"."""
        return getattr(self._built(), "state_dtype", None)  # None: the rules stepped one array at a time

    def memory(self) -> dict[str, int]:
        """The bytes this optimizer allocated beside the parameters (see fastoptim.Optimizer.memory)."""
        return self._built().memory()

    @property
    def ema(self) -> list[torch.Tensor] | None:
        """With ``ema_decay``: the EMA of each parameter, in parameter order, as tensors over the
        arrays the steps update (no copy; float32 for bfloat16 parameters). Else None."""
        ema = getattr(self._built(), "ema", None)  # the rules stepped one array at a time keep none
        if ema is None:
            return None
        return [tensor_of(ema[index], order) for index, order in enumerate(self._orders)]

    @contextlib.contextmanager
    def swap_ema(self) -> Iterator[None]:
        """Within the block the parameters hold their EMA (copied in with torch's ``copy_``, which
        rounds bfloat16 ones to nearest); on exit, exceptions included, they get their own values
        back exactly. Steps inside the block raise."""
        ema = self.ema
        if ema is None:
            raise ValueError(f"swap_ema needs an EMA of the weights: construct the {type(self).__name__} with "
                             "ema_decay")
        with self._lock:
            if self._ema_swapped:
                raise RuntimeError("swap_ema is already in effect; blocks of it do not nest")
            tensors = [b.tensor for b in self._params]
            kept = [t.detach().clone() for t in tensors]
            with torch.no_grad():
                for tensor, average in zip(tensors, ema):
                    tensor.copy_(average)
            self._native_refusals.append("swap_ema")  # the native step refuses while it is here
        try:
            yield
        finally:
            with self._lock, torch.no_grad():
                for tensor, values in zip(tensors, kept):
                    tensor.copy_(values)
                self._native_refusals.remove("swap_ema")

    @property
    def _ema_swapped(self) -> bool:
        """Inside swap_ema(): the parameters hold the EMA (the native step reads the same list)."""
        return "swap_ema" in self._native_refusals

    def _built(self) -> _numpy_optimizer.Optimizer:
        engine = self._engine
        if engine is None:
            raise RuntimeError(f"this {type(self).__name__} has no engine: its construction did not finish")
        return engine

    # ---- state ----------------------------------------------------------------------------------
    @property
    def state(self) -> defaultdict[torch.Tensor, dict[str, Any]]:
        """Parameter tensor -> its state in torch's layout (``step`` and the state tensors; ``{}``
        for a parameter that never stepped): a snapshot holding copies, made at each access (read it
        once: ``state = opt.state``). Edits of it change nothing: restore state with
        load_state_dict."""
        result: defaultdict[torch.Tensor, dict[str, Any]] = defaultdict(dict)
        engine = self._engine
        if engine is None:
            return result
        with self._lock:
            saved = self._torch_layout(engine)["state"]
        result.update((self._params[index].tensor, entry) for index, entry in saved.items())
        return result

    @state.setter
    def state(self, value: Mapping[Any, Any]) -> None:
        if self._engine is not None or len(value):
            raise AttributeError("the state of a fastoptim.torch optimizer is its engine's: restore it with "
                                 "load_state_dict")

    def _torch_layout(self, engine: Any) -> dict[str, Any]:
        """The engine's state dict in torch's layout, 8-bit state decoded into float32: torch.optim
        would read the codes as values."""
        saved = engine.state_dict()
        layout = saved.get("state_format")
        if layout is not None and layout.get("state_dtype") == "int8":
            signed: frozenset[str] = getattr(engine, "_signed_slots", frozenset())
            state = {}
            for name, entry in saved["state"].items():
                entry = dict(entry)
                for key in [k for k in entry if k.endswith(ABSMAX)]:
                    slot = key[:-len(ABSMAX)]
                    values = stored_values(entry, slot, "int8", slot in signed, self._params[name].view)
                    entry[slot] = np.asarray(values, np.float32)
                    del entry[key]
                state[name] = entry
            saved = {**saved, "state": state, "state_format": {**layout, "state_dtype": None}}
        return to_torch(saved, self.param_groups, self._orders, self._step_tensor)

    def state_dict(self) -> dict[str, Any]:
        """torch's layout: ``{"state": {id: {"step": tensor, slot: tensor}}, "param_groups": [{...,
        "params": [ids]}]}``, tensors holding copies; ``torch.save`` writes it, and torch.optim's
        optimizer of the same rule loads it. fastoptim's additions (``state_format``, ``ema``) ride
        along as tensors and plain values. 8-bit state is saved decoded, as float32 (torch.optim
        reads it; loading it back requantizes it)."""
        return hooked_state_dict(self, self._state_dict)

    def _state_dict(self) -> dict[str, Any]:
        engine = self._built()
        with self._lock:
            return self._torch_layout(engine)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a state dict of this class or of torch.optim's optimizer of the same rule (ids
        matched by order, as torch). Everything is checked first: on any error nothing changes."""
        hooked_load(self, state_dict, self._load_state_dict)

    def _load_state_dict(self, state_dict: dict[str, Any]) -> None:
        engine = self._built()
        with self._lock:
            if self._ema_swapped:
                raise RuntimeError("load_state_dict is refused inside swap_ema() (nothing was changed)")
            self._sync_groups(engine)
            self._check_params_in_place()  # a load without "ema" restarts the EMA from the parameters
            numpy_dict, torch_groups = from_torch(state_dict, self.param_groups, self._orders, self._hyper_keys,
                                                  getattr(engine, "_scalar_names", tuple)())
            engine.load_state_dict(self._completed(numpy_dict))
            for group, saved in zip(self.param_groups, torch_groups):
                group.update(saved)

    def _completed(self, numpy_dict: dict[str, Any]) -> dict[str, Any]:
        """The engine's state dict as it loads it (the plan's engines take missing entries as fresh)."""
        return numpy_dict

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError(f"a fastoptim.torch.{type(self).__name__} is not pickled or copied (its arrays are views of "
                        "the model's tensors): save opt.state_dict() with torch.save, and load it into an optimizer "
                        "built over the model")

    def __setstate__(self, state: dict[str, Any]) -> None:
        raise TypeError(f"a fastoptim.torch.{type(self).__name__} is not unpickled; load a state dict instead")
