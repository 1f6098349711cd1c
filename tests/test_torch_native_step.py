"""fastoptim.torch's usual step as one native call (cpp/src/torch_step.hpp): taken exactly when
nothing but the values changed since the last step, and stepping as the Python path does."""

from __future__ import annotations

import operator
import textwrap
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from child import run_python

torch = pytest.importorskip("torch")
fot = pytest.importorskip("fastoptim.torch")
from torch_nets import Net, twins  # noqa: E402

import fastoptim.torch._optimizer as torch_optimizer  # noqa: E402
from fastoptim import _core  # noqa: E402


@pytest.fixture
def native_calls(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """What each native call answered (True: it stepped), in order."""
    answers: list[bool] = []

    def counted(*args: Any) -> bool:
        try:
            answer = _core.torch_step(*args)
        except ValueError:
            answers.append("raised")  # type: ignore[arg-type]
            raise
        answers.append(answer)
        return answer

    monkeypatch.setattr(torch_optimizer, "_torch_step", counted)
    return answers


def _backward(net: Net, seed: int) -> None:
    x = torch.from_numpy(np.random.default_rng(seed).standard_normal((4, 2, 6, 6))).to(net.out.weight.dtype)
    net(x).pow(2).mean().backward()


def _copy_grads(source: Net, target: Net) -> None:
    for p, q in zip(source.parameters(), target.parameters()):
        if p.grad is None:
            q.grad = None
        elif q.grad is None:
            q.grad = p.grad.clone(memory_format=torch.preserve_format)
        else:
            q.grad.copy_(p.grad)  # kept: the same tensor, as after zero_grad(set_to_none=False)


def _versions(net: Net) -> list[int]:
    return [p._version for p in net.parameters()]


def _assert_bits_equal(net: Net, twin: Net, bumps: list[int]) -> None:
    """The same values, and each parameter's autograd version bumped as often (`bumps`: the
    difference of the versions when the twins started: a deep copy starts from 0)."""
    for (name, p), q, bump in zip(net.named_parameters(), twin.parameters(), bumps):
        assert torch.equal(p, q), name
        assert p._version - q._version == bump, name


# Each change between two steps, done to both optimizers; then the native call of the step after
# it must answer False (the Python path steps, and handles the change) and the next one True,
# except where the native call handles the change itself (a new or dropped .grad).
def _new_grad_tensor(opt: Any, net: Net) -> None:
    net.out.weight.grad = net.out.weight.grad.clone()


def _lr_by_a_scheduler(opt: Any, net: Net) -> None:
    opt.param_groups[0]["lr"] *= 0.5


def _grad_dropped(opt: Any, net: Net) -> None:
    net.hidden.bias.grad = None


def _group_added(opt: Any, net: Net) -> None:
    opt.add_param_group({"params": [net.unused.weight], "lr": 1e-2})
    net.unused.weight.grad = torch.ones_like(net.unused.weight)


def _params_list_edited(opt: Any, net: Net) -> None:  # refused alike by both paths
    opt.param_groups[0]["params"].append(torch.nn.Parameter(torch.ones(1)))


def _tensor_lr(opt: Any, net: Net) -> None:  # a value that changes in place: every step reads it
    opt.param_groups[0]["lr"] = torch.tensor(3e-3)


def _state_dict_loaded(opt: Any, net: Net) -> None:
    opt.load_state_dict(opt.state_dict())


def _grad_memory_moved(opt: Any, net: Net) -> None:  # the native call's own check refuses it
    net.out.weight.grad.share_memory_()


NATIVE = [False, True, True, False, True, True]  # the change's step declines, the next is native again
ALWAYS = [False, True, True, True, True, True]  # the first step syncs the groups; the change is viewed natively
CHANGES: list[tuple[Callable[[Any, Net], None], list[Any] | None]] = [
    (_new_grad_tensor, ALWAYS), (_lr_by_a_scheduler, NATIVE), (_grad_dropped, ALWAYS), (_group_added, NATIVE),
    (_state_dict_loaded, NATIVE), (_tensor_lr, [False, True, True, False, False, False]),
    (_grad_memory_moved, [False, True, True, "raised", True, True]),
]


@pytest.mark.parametrize(("change", "calls"), CHANGES, ids=lambda c: getattr(c, "__name__", "").strip("_"))
@pytest.mark.parametrize("closure", [False, True], ids=["step()", "step(closure)"])
def test_steps_are_native_until_something_changes_and_equal_the_python_path(change, calls, closure, native_calls):
    net, twin = twins(Net, torch.float32)
    params = [p for p in net.parameters() if p is not net.unused.weight]
    twin_params = [p for p in twin.parameters() if p is not twin.unused.weight]
    opt = fot.AdamW(params, lr=1e-2, weight_decay=0.1)
    python_path = fot.AdamW(twin_params, lr=1e-2, weight_decay=0.1)
    python_path._binding = None  # never the native call
    bumps = [a - b for a, b in zip(_versions(net), _versions(twin))]
    _backward(net, 0)
    for step in range(6):
        if step == 3:
            for o, n in ((opt, net), (python_path, twin)):
                change(o, n)
        _copy_grads(net, twin)
        if closure:
            assert opt.step(lambda: 1.5) == 1.5
            assert python_path.step(lambda: 1.5) == 1.5
        else:
            opt.step()
            python_path.step()
        _assert_bits_equal(net, twin, bumps)
    # the first step views the gradients (the Python path), then native ones, until the change
    assert native_calls == calls
    assert python_path._binding is None


def test_a_changed_group_structure_is_refused_as_before(native_calls):
    net, _ = twins(Net, torch.float32)
    opt = fot.SGD(net.parameters(), lr=0.1)
    _backward(net, 0)
    opt.step()
    opt.step()
    before = [p.detach().clone() for p in net.parameters()]
    _params_list_edited(opt, net)
    with pytest.raises(ValueError, match=r"param_groups\[0\]\['params'\] was changed"):
        opt.step()
    assert all(torch.equal(p, b) for p, b in zip(net.parameters(), before))
    assert native_calls == [False, True, False]


def test_hooks_and_a_recording_profiler_take_the_step_around_the_native_call(native_calls):
    net, _ = twins(Net, torch.float32)
    opt = fot.AdamW(net.parameters(), lr=1e-2)
    _backward(net, 0)
    opt.step()
    seen: list[str] = []
    handle = opt.register_step_pre_hook(lambda *args: seen.append("pre"))
    opt.step()  # the hook runs first, then the step: native, its hooks checked by the caller
    handle.remove()
    with torch.autograd.profiler.profile() as profile:
        opt.step()
    assert seen == ["pre"]
    assert any(e.name.startswith("Optimizer.step#AdamW") for e in profile.function_events)
    assert native_calls == [False, False, True, False, True]


def test_options_and_swap_ema_send_the_step_the_python_way(native_calls):
    net, _ = twins(Net, torch.float32)
    opt = fot.AdamW(net.parameters(), lr=1e-2, ema_decay=0.9)
    _backward(net, 0)
    opt.step()
    opt.max_grad_norm = 1e-3
    opt.step()
    assert opt.last_step_info.grad_norm is not None  # measured: the engine's step with options
    opt.max_grad_norm = None
    opt.step()
    assert opt.last_step_info.grad_norm is None
    with opt.swap_ema(), pytest.raises(RuntimeError, match="swap_ema"):
        opt.step()
    opt.step()
    assert native_calls == [False, False, True, False, True]


def test_the_native_call_does_not_wait_for_a_lock_another_thread_holds():
    net, _ = twins(Net, torch.float32)
    opt = fot.SGD(net.parameters(), lr=0.1)
    _backward(net, 0)
    opt.step()
    answers: list[bool] = []
    call = lambda: answers.append(_core.torch_step(opt.param_groups, opt._binding, None, None))  # noqa: E731
    with opt._lock:
        before = [p.detach().clone() for p in net.parameters()]
        thread = threading.Thread(target=call)
        thread.start()
        thread.join(timeout=60)
        assert not thread.is_alive()
        assert all(torch.equal(p, b) for p, b in zip(net.parameters(), before))
    call()
    assert answers == [False, True]


@pytest.mark.parametrize("binding", [None, (), ("not", "a", "binding"), tuple(range(12)),
                                     tuple(range(len(torch_optimizer._Binding._fields)))])
def test_a_malformed_binding_is_a_type_error(binding):
    with pytest.raises(TypeError, match="binding"):
        _core.torch_step([], binding, None, None)


# The child processes' Parameter whose .grad property runs the attack put in `armed` (once).
SNEAKY_PARAMETER = textwrap.dedent("""
    import torch
    armed = []
    class Sneaky(torch.nn.Parameter):
        @property
        def grad(self):
            if armed:
                attack = armed.pop()
                with torch.no_grad():
                    exec(attack)
            return torch.nn.Parameter.grad.__get__(self)
        @grad.setter
        def grad(self, value):
            torch.nn.Parameter.grad.__set__(self, value)
""")

ATTACKS_FROM_A_GRAD_PROPERTY = {  # attack: outcome
    "other.data = torch.zeros(1_000_000)": "refused: params[1]",  # its view's memory freed
    "opt.zero_grad()": "stepped 0.0",  # p's .grad is None by the time it is read: p is left alone
    "opt.add_param_group({'params': [torch.nn.Parameter(torch.ones(3))]})": "stepped -0.5",
    "other.grad = torch.ones(1_000_000)": "stepped -0.5",
}


def test_python_code_a_grad_property_runs_inside_the_native_call_cannot_crash_it():
    """The native call reads each .grad, and a Parameter subclass may make that Python code that
    frees a view's memory or edits the optimizer's lists, or a data_ptr() override (which the
    memory check never calls): in a fresh process (one for the attacks, each on an optimizer of
    its own), so that a crash fails the test, the step refuses or handles the change, and never
    writes freed memory."""
    code = SNEAKY_PARAMETER + textwrap.dedent(f"""
        import fastoptim.torch as fot
        for attack in {list(ATTACKS_FROM_A_GRAD_PROPERTY)!r}:
            p, other = Sneaky(torch.ones(1_000_000)), torch.nn.Parameter(torch.ones(1_000_000))
            p.grad, other.grad = torch.ones(1_000_000), torch.ones(1_000_000)
            opt = fot.SGD([p, other], lr=0.5)
            opt.step()
            opt.step()
            armed.append(attack)
            junk = [torch.ones(1_000_000) for _ in range(4)]  # reuse freed memory
            try:
                opt.step()
            except ValueError as error:
                print("refused:", str(error).split(":")[0])
            else:
                print("stepped", float(p[0]))

        # The memory check calls torch's own data_ptr, not a subclass's: this one, reached after
        # `other` was checked, would free other's memory before the kernels write it.
        class Mover(torch.nn.Parameter):
            def data_ptr(self):
                if armed:
                    armed.pop()
                    with torch.no_grad():
                        other.data = torch.zeros(1_000_000)
                    junk.extend(torch.ones(1_000_000) for _ in range(4))  # reuse freed memory
                return super().data_ptr()
        other, p = torch.nn.Parameter(torch.ones(1_000_000)), Mover(torch.ones(1_000_000))
        other.grad, p.grad = torch.ones(1_000_000), torch.ones(1_000_000)
        opt = fot.SGD([other, p], lr=0.5)
        opt.step()
        opt.step()
        junk = []
        armed.append("move")
        opt.step()
        print("data_ptr override", "never ran" if armed else "ran", float(other[0].detach()), float(p[0].detach()))
    """)
    done = run_python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [*ATTACKS_FROM_A_GRAD_PROPERTY.values(), "data_ptr override never ran -0.5 -0.5"]


@pytest.mark.parametrize(("trigger", "outcome"), [
    # at q's memory check, after p's: the checks run with modes off, so the mode never sees one
    (("data_ptr", 2), "stepped -0.5, the mode saw no data_ptr"),
    # at the Python path's first .grad read: before the checks, which see the move
    (("__get__", 1), "refused: params[0]"),
])
def test_a_torch_function_mode_that_moves_memory_inside_the_step_cannot_crash_it(trigger, outcome):
    """Under a TorchFunctionMode torch runs the mode's Python code for data_ptr() and .grad: the
    native call declines, and the memory checks (both paths) switch torch function handling off,
    so a mode cannot move a tensor after it was checked. In a fresh process: a crash fails it."""
    code = textwrap.dedent(f"""
        import torch, fastoptim.torch as fot
        from torch.overrides import TorchFunctionMode
        p, q = torch.nn.Parameter(torch.ones(1_000_000)), torch.nn.Parameter(torch.ones(1_000_000))
        p.grad, q.grad = torch.ones(1_000_000), torch.ones(1_000_000)
        opt = fot.SGD([p, q], lr=0.5)
        opt.step()
        opt.step()
        seen = []
        name, count = {trigger!r}
        class Mover(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                seen.append(getattr(func, "__name__", ""))
                if seen[-1] == name and seen.count(name) == count:
                    with torch.no_grad():
                        p.data = torch.zeros(1_000_000)  # frees the memory the optimizer views
                return func(*args, **(kwargs or {{}}))
        with Mover():
            junk = [torch.ones(1_000_000) for _ in range(4)]
            try:
                opt.step()
            except ValueError as error:
                print("refused:", str(error).split(":")[0])
            else:
                print(f"stepped {{float(p[0])}}, the mode saw", "data_ptr" if "data_ptr" in seen else "no data_ptr")
    """)
    done = run_python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == outcome


def test_betas_given_as_tensors_and_filled_in_place_reach_the_next_step(native_calls):
    """A tuple of tensors changes without an edit of its group: every step reads it again (so
    none is the native call's), as a bare tensor lr."""
    ours, edited = torch.nn.Parameter(torch.ones(5)), torch.nn.Parameter(torch.ones(5))
    beta1, beta2 = torch.tensor(0.9, dtype=torch.float64), torch.tensor(0.999, dtype=torch.float64)
    opt = fot.Adam([ours], lr=0.1, betas=(beta1, beta2))
    twin = fot.Adam([edited], lr=0.1, betas=(0.9, 0.999))
    ours.grad, edited.grad = torch.zeros(5), torch.zeros(5)
    for step in range(4):
        ours.grad.fill_(step + 1)  # the same gradient tensors: only the betas keep it from the native call
        edited.grad.fill_(step + 1)
        if step == 2:
            beta1.fill_(0.5)
            twin.param_groups[0]["betas"] = (0.5, 0.999)
        opt.step()
        twin.step()
        assert torch.equal(ours, edited), step
    # in turn: ours (read again at every step), then the twin (native but for its edited step)
    assert native_calls == [False, False, False, True, False, False, False, True]


def test_a_torch_function_mode_or_the_lock_held_by_this_thread_sends_the_step_the_python_way(native_calls):
    net, twin = twins(Net, torch.float32)
    opt, python_path = fot.SGD(net.parameters(), lr=0.1), fot.SGD(twin.parameters(), lr=0.1)
    python_path._binding = None
    bumps = [a - b for a, b in zip(_versions(net), _versions(twin))]
    _backward(net, 0)
    _copy_grads(net, twin)
    for o in (opt, python_path):
        o.step()
        with torch.device("cpu"):  # a TorchFunctionMode: it would see the native call's .grad reads
            o.step()
    _assert_bits_equal(net, twin, bumps)
    assert native_calls == [False, False]
    with opt._lock:  # as from inside one of the optimizer's own critical sections
        before = [p.detach().clone() for p in net.parameters()]
        assert not _core.torch_step(opt.param_groups, opt._binding, None, None)
        assert all(torch.equal(p, b) for p, b in zip(net.parameters(), before))
    assert _core.torch_step(opt.param_groups, opt._binding, None, None)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("zeroed_by", ["optimizer", "module"])
def test_the_usual_loop_views_each_new_gradient_in_the_native_call(dtype, zeroed_by, native_calls):
    """torch's default zero_grad() sets every .grad to None and backward makes new ones: the
    native call views them (the conv weight's channels_last order too), steps as the Python path,
    and bumps the same versions; a parameter whose .grad stays None is left alone. The module's
    zero_grad() leaves the optimizer holding the last views, which the new ones replace."""
    if dtype is torch.bfloat16:
        pytest.importorskip("ml_dtypes")  # fastoptim[bf16]: bfloat16 tensors are viewed through it
    net, twin = twins(Net, dtype)
    opt = fot.AdamW(net.parameters(), lr=1e-2, weight_decay=0.1)
    python_path = fot.AdamW(twin.parameters(), lr=1e-2, weight_decay=0.1)
    python_path._binding = None
    bumps = [a - b for a, b in zip(_versions(net), _versions(twin))]
    for step in range(5):
        for zeroed in ((opt, python_path) if zeroed_by == "optimizer" else (net, twin)):
            zeroed.zero_grad()
        _backward(net, step)
        if step == 3:
            net.hidden.weight.grad = None  # a step without one gradient
        _copy_grads(net, twin)
        opt.step()
        python_path.step()
        _assert_bits_equal(net, twin, bumps)
        stepped = [p for p in net.parameters() if p.grad is not None]
        assert opt._stepped == stepped and all(map(operator.is_, opt._stepped, stepped))
        assert [b.tensor if b else None for b in opt._grads] == [p.grad for p in net.parameters()]
        assert sorted(g[3] for g in opt._engine._guards) == sorted(
            [p.data_ptr() for p in net.parameters()] + [p.grad.data_ptr() for p in stepped])
        for view, p in zip(opt._grad_views, net.parameters()):  # each a view of its .grad, in the param's order
            assert (view is None) == (p.grad is None)
            if view is not None:
                assert view.ctypes.data == p.grad.data_ptr() and view.flags.c_contiguous
    assert native_calls == [False, True, True, True, True]  # the first step syncs the groups


def _subclass(grad: torch.Tensor) -> torch.Tensor:
    class Marked(torch.Tensor):
        pass
    return grad.as_subclass(Marked)


# New gradients the native call leaves to the Python path, which steps or refuses each
NEW_GRADS: list[Callable[[torch.Tensor], Any]] = [
    _subclass,
    lambda g: g.double(),  # another dtype
    lambda g: g.t().contiguous().t(),  # dense, in another order than the parameter's
    lambda g: torch.empty(g.shape[1] * 2, g.shape[0]).t()[:, ::2],  # not dense
    lambda g: g.clone().requires_grad_(),  # stepped, through a detached view
    lambda g: torch._neg_view(-g),  # a lazily negated view
    lambda g: g.to_sparse(),
    torch.nn.Parameter,  # not exactly a torch.Tensor (and requires grad)
]


@pytest.mark.parametrize("make", NEW_GRADS, ids=["subclass", "float64", "transposed", "strided", "requires_grad",
                                                 "negated", "sparse", "Parameter"])
def test_a_new_gradient_the_short_test_rejects_goes_the_python_way(make, native_calls):
    """The native call declines (nothing done), and the step does exactly what the Python path
    does: the same error, or the same update."""
    outcomes = []
    for native in (True, False):
        w = torch.nn.Parameter(torch.ones(3, 4))
        opt = fot.SGD([w], lr=0.5)
        if not native:
            opt._binding = None
        w.grad = torch.ones(3, 4)
        opt.step()
        opt.step()
        w.grad_dtype = None  # torch takes a gradient of another dtype
        w.grad = make(torch.full((3, 4), 2.0))
        try:
            opt.step()
        except (TypeError, ValueError) as error:
            outcomes.append((type(error), str(error), w.detach().clone()))
        else:
            outcomes.append((None, "", w.detach().clone()))
        assert opt._stepped == ([w] if opt._grads[0] is not None else [])
    assert native_calls == [False, True, False]  # syncs, native (kept .grad), declined (the new one)
    (kind, message, ours), (kind_python, message_python, theirs) = outcomes
    assert (kind, message) == (kind_python, message_python)
    assert torch.equal(ours, theirs)


ATTACKS_AFTER_A_NEW_VIEW = {  # attack: outcome
    "other.grad.set_(torch.zeros(1_000_000))": "other 0.0 p -0.5 refused natively",  # the new view's memory freed
    "other.grad.share_memory_()": "other -0.5 p -0.5 refused natively",  # moved, the values kept
    "other.grad = torch.zeros(1_000_000)": "other -0.5 p -0.5 stepped natively",  # the one viewed is stepped
}


def test_python_code_run_after_a_new_gradient_is_viewed_cannot_crash_the_native_call():
    """The native call views `other`'s new .grad, then reads p's .grad: a property that moves or
    frees the memory just viewed is caught by the memory check before any write (the Python path
    then views the gradient anew); so are finalizers, run after the call or refused a change of
    the guards inside the step, and a version bump (made before the sweep) that moves memory, whose
    refused step leaves the versions as they were. In a fresh process (one for all: each starts
    its own optimizer), so that a crash fails the test."""
    code = SNEAKY_PARAMETER + textwrap.dedent(f"""
        import fastoptim.torch as fot
        import fastoptim.torch._optimizer as torch_optimizer
        answers, native = [], torch_optimizer._torch_step
        def counted(*args):
            try:
                answers.append(native(*args))
            except ValueError:
                answers.append("refused")
                raise
            return answers[-1]
        torch_optimizer._torch_step = counted
        for attack in {list(ATTACKS_AFTER_A_NEW_VIEW)!r}:
            other, p = torch.nn.Parameter(torch.ones(1_000_000)), Sneaky(torch.ones(1_000_000))
            other.grad, p.grad = torch.ones(1_000_000), torch.ones(1_000_000)
            opt = fot.SGD([other, p], lr=0.5)
            opt.step()
            opt.step()
            other.grad = torch.ones(1_000_000)  # new: viewed by the next native call, before p's .grad is read
            armed.append(attack)
            junk = [torch.ones(1_000_000) for _ in range(4)]  # reuse freed memory
            opt.step()
            print("other", float(other[0]), "p", float(p[0]), "refused natively" if answers[-1] == "refused" else
                  "stepped natively" if answers[-1] is True else answers[-1])

        # A finalizer of the gradient a new one replaces runs once the step is done and the lock
        # released, not while the native call records the new views.
        import weakref
        p = torch.nn.Parameter(torch.ones(1_000_000))
        p.grad = torch.ones(1_000_000)
        opt = fot.SGD([p], lr=0.5)
        opt.step()
        opt.step()
        old, new = p.grad, torch.ones(1_000_000)
        inside = []
        def attack():
            inside.append(opt._lock._is_owned())
            opt.zero_grad()
            new.share_memory_()
        weakref.finalize(old, attack)
        p.grad = new
        del old
        opt.step()
        print("finalizer inside the call" if inside[0] else "finalizer after the call", float(p[0]), answers[-1])

        # A finalizer the collector runs while the plan steps (pinning a transposed view's chain of
        # arrays makes objects) cannot change its memory guards: the gradient it moves after a
        # zero_grad() is still checked, and the native step refused (the Python path then finds
        # no gradient, and its plan the guard the failed zero_grad() left: refused too).
        import gc
        p = torch.nn.Parameter(torch.ones(1000, 1000).t())
        p.grad = torch.ones(1000, 1000).t()
        opt = fot.SGD([p], lr=0.5)
        opt.step()
        opt.step()
        plan = opt._engine._plan
        fired = []
        class Bomb:
            def __init__(self):
                self.cycle = self
            def __del__(self):
                if plan.busy and not fired:
                    fired.append(True)
                    grad = p.grad
                    try:
                        opt.zero_grad()
                    except RuntimeError as error:
                        fired.append(str(error).split(" while")[0])
                    grad.share_memory_()
                elif not fired:
                    Bomb()
        Bomb()
        gc.set_threshold(1)
        outcome = "stepped"
        for _ in range(3):  # until a collection falls inside the plan's step
            p.grad = torch.ones(1000, 1000).t()
            try:
                opt.step()
            except ValueError as error:  # the zero_grad left the gradient's guard (over-guarded: refused)
                outcome = "refused: " + str(error).split(":")[0]
            if fired:
                break
        gc.set_threshold(700)
        print(fired[1:], float(p[0, 0].detach()), answers[-1], outcome)

        # The version bump comes before the sweep, once the views are taken, and may run Python
        # code (here the binding's bump itself): memory it moves is caught by the check after it,
        # nothing is written, and the bump is taken back (the Python path then refuses too).
        for attack in ("q.data = torch.zeros(1_000_000)", "p.grad.share_memory_()"):
            p, q = torch.nn.Parameter(torch.ones(1_000_000)), torch.nn.Parameter(torch.ones(1_000_000))
            p.grad, q.grad = torch.ones(1_000_000), torch.ones(1_000_000)
            opt = fot.SGD([p, q], lr=0.5)
            opt.step()
            opt.step()
            versions = (p._version, q._version)
            def bump(tensors, attack=attack, torch_bump=opt._binding.bump):
                torch_bump(tensors)
                with torch.no_grad():
                    exec(attack)
                junk.extend(torch.ones(1_000_000) for _ in range(4))  # reuse freed memory
            junk = []
            opt._binding = opt._binding._replace(bump=bump)
            try:
                opt.step()
            except ValueError as error:
                outcome = "refused: " + str(error).split(":")[0]
            else:
                outcome = "stepped"
            print(outcome, answers[-1], float(p[0].detach()), "versions kept" if (p._version, q._version) == versions
                  else f"versions {{versions}} -> {{(p._version, q._version)}}")
    """)
    done = run_python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [*ATTACKS_AFTER_A_NEW_VIEW.values(), "finalizer after the call -0.5 True",
                                        "[\"this optimizer's memory guards cannot change\"] 0.0 refused refused: "
                                        "params[0].grad",
                                        "refused: params[1] refused 0.0 versions kept",
                                        "stepped refused -0.5 versions (2, 2) -> (3, 3)"]
