"""No Python code can crash fastoptim or make it write outside an array (issue 15).

Each case that crashed or wrote out of bounds before runs in a child process, so that a crash
fails its test instead of ending the test run. A case passes when the child finishes, the
refused steps raised the documented error, and the arrays hold what they should.
"""

from __future__ import annotations

import re
import textwrap

import numpy as np
import pytest
from child import run_python
from inplace import set_in_place

import fastoptim as fo

PRELUDE = """
import threading, time
import numpy as np
import fastoptim as fo

def refused(call, error, text):
    try:
        call()
    except error as e:
        assert text in str(e), f"{type(e).__name__}: {e}"
        return
    raise AssertionError(f"{text!r} was not refused")
"""


def run_child(body: str, setup: str = "") -> None:
    """Run PRELUDE, `setup` and `body` in a fresh interpreter; it must exit 0 and print 'ok'."""
    result = run_python(PRELUDE + setup + textwrap.dedent(body))
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), (
        f"the child exited with {result.returncode} (a negative code is the signal that killed it)\n"
        f"stdout: {result.stdout[-2000:]}\nstderr: {result.stderr[-4000:]}")


def test_a_gradient_dropped_by_another_thread_while_the_kernel_reads_it():
    """Case 1: another thread drops the last reference to a gradient during a 3e7-element step.
    The step holds its own reference: it completes with the gradient it was given."""
    run_child("""
        n = 30_000_000
        p = np.zeros(n, np.float32)
        opt = fo.SGD([p], lr=1.0)
        for round in range(4):
            grads = [np.full(n, 1.0, np.float32)]
            started = threading.Event()
            def drop():
                started.wait()
                time.sleep(0.002)
                grads[0] = None  # the last reference: freed now, unless the step holds one
            thread = threading.Thread(target=drop)
            thread.start()
            started.set()
            opt.step(grads)
            thread.join()
            assert p[0] == p[-1] == -(round + 1), (p[0], p[-1])
        print("ok")
    """)


def test_a_name_whose_hash_drops_an_earlier_gradient():
    """Case 1, single-threaded: each lookup of the second name runs its __hash__, which replaces
    the first gradient in the dict (freeing the one before); the gradient the step took must
    stay alive through the step."""
    run_child("""
        class Name:
            def __init__(self, key, hook=None):
                self.key, self.hook = key, hook
            def __hash__(self):
                if self.hook:
                    self.hook()
                return hash(self.key)
            def __eq__(self, other):
                return isinstance(other, Name) and other.key == self.key
        n = 30_000_000
        first, second = Name("a"), Name("b")
        p, q = np.zeros(n, np.float32), np.zeros(3, np.float32)
        opt = fo.SGD({first: p, second: q}, lr=1.0)
        grads = {first: np.full(n, 2.0, np.float32), second: np.ones(3, np.float32)}
        def replace_first():  # at every lookup of `second`: the gradient before is freed
            dict.__setitem__(grads, first, np.full(n, 2.0, np.float32))
        second.hook = replace_first
        opt.step(grads)
        assert p[0] == p[-1] == -2.0 and (q == -1.0).all()
        print("ok")
    """)


NAME_HOOK = """
class Name(str):
    hook = None
    def __hash__(self):
        if Name.hook:
            Name.hook()
        return str.__hash__(self)
"""


def test_a_name_whose_hash_reallocates_an_earlier_gradient():
    """Each lookup of 'b' gives gradient 'a' a new buffer in place (__setstate__ frees the old
    one). The step must read the buffer 'a' has once the lookups are over, never a freed one."""
    run_child(setup=NAME_HOOK, body="""
        n = 30_000_000  # far above malloc's mmap threshold: a freed buffer is unmapped
        p, q = np.zeros(n, np.float32), np.zeros(3, np.float32)
        opt = fo.SGD({"a": p, Name("b"): q}, lr=1.0)
        grads = {"a": np.zeros(n, np.float32), "b": np.ones(3, np.float32)}
        ones = np.ones(n, np.float32).__reduce__()[2]
        calls = []
        Name.hook = lambda: (calls.append(1), grads["a"].__setstate__(ones))
        opt.step(grads)
        assert calls and (p == -1.0).all() and (q == -1.0).all(), (len(calls), p[:3])
        print("ok")
    """)


def test_a_name_whose_hash_resizes_an_earlier_gradient_is_refused():
    """A gradient resized (refcheck=False) by Python code that runs during the lookups is
    checked after every lookup: refused, nothing changed."""
    run_child(setup=NAME_HOOK, body="""
        p, q = np.zeros(1_000_000, np.float32), np.zeros(3, np.float32)
        opt = fo.SGD({"a": p, Name("b"): q}, lr=1.0)
        grads = {"a": np.ones(1_000_000, np.float32), "b": np.ones(3, np.float32)}
        Name.hook = lambda: grads["a"].resize(10, refcheck=False)
        refused(lambda: opt.step(grads), ValueError, "grads['a'] has shape (10,)")
        assert not p.any() and not q.any()
        print("ok")
    """)


def test_a_gradient_resized_by_another_thread_during_steps():
    """While a step runs, the gradient's buffer is pinned: NumPy refuses to resize it. Between
    steps a resize succeeds, and the next step refuses the gradient. Never a crash."""
    run_child("""
        n = 10_000_000
        p = np.zeros(n, np.float32)
        g = np.ones(n, np.float32)
        opt = fo.SGD([p], lr=1.0)
        stop = threading.Event()
        outcomes = {"refused by numpy": 0, "resized": 0}
        def resize():
            while not stop.is_set() and not outcomes["resized"]:
                try:
                    g.resize(5, refcheck=False)
                    outcomes["resized"] += 1
                except ValueError:
                    outcomes["refused by numpy"] += 1
        thread = threading.Thread(target=resize)
        thread.start()
        steps = 0
        try:
            for _ in range(200):
                opt.step([g])
                steps += 1
        except ValueError as e:
            assert "has shape (5,)" in str(e), e
        stop.set()
        thread.join()
        assert (p == -steps).all(), (p[:3], steps)
        print(outcomes, "ok")
    """)


def test_a_replaced_entry_of_params_is_refused_before_and_after_a_rebuild():
    """Case 2: params[j] replaced by an int8 array of a third of the bytes. The next step, and
    add_param_group, refuse it with nothing changed (never write past the new array)."""
    run_child("""
        p = np.zeros(1_000_000, np.float32)
        opt = fo.SGD([p], lr=0.1)
        other = np.zeros(1_000_000, np.int8)
        opt.param_groups[0]["params"][0] = other
        g = [np.ones(1_000_000, np.float32)]
        refused(lambda: opt.step(g), ValueError, "param_groups[0]['params'] was changed")
        refused(lambda: opt.add_param_group({"params": [np.zeros(3, np.float32)]}), ValueError,
                "param_groups[0]['params'] was changed")
        assert len(opt.param_groups) == 1 and not p.any() and not other.any()
        opt.param_groups[0]["params"][0] = p  # put back: steps again
        opt.step(g)
        assert np.allclose(p, -0.1) and not other.any()
        print("ok")
    """)


def test_a_state_array_replaced_by_a_smaller_one_is_refused():
    """Case 3: a 1-element exp_avg for a million-element parameter, then a rebuild: refused
    with nothing changed, never a heap overflow."""
    run_child("""
        p = np.zeros(1_000_000, np.float32)
        opt = fo.Adam({"p": p})
        g = {"p": np.ones(1_000_000, np.float32)}
        opt.step(g)
        before = p.copy()
        opt.state["p"]["exp_avg"] = np.zeros(1, np.float32)
        refused(lambda: opt.add_param_group({"params": {"q": np.zeros(3, np.float32)}}), ValueError,
                "state['p']['exp_avg'] has shape (1,); its parameter has shape (1000000,)")
        refused(lambda: opt.step(g), ValueError, "state['p']['exp_avg'] has shape (1,)")
        assert (p == before).all() and len(opt.param_groups) == 1
        print("ok")
    """)


def test_a_parameter_resized_in_place_is_refused():
    """Case 4: resize(refcheck=False) is refused by NumPy itself (the plan pins the buffer);
    reloading the array in place with __setstate__ (which frees the buffer regardless) is
    refused at the next step, never written through."""
    run_child("""
        p = np.zeros(10_000_000, np.float32)
        opt = fo.Adam([p])
        refused(lambda: p.resize(10, refcheck=False), ValueError, "cannot resize")
        p.__setstate__(np.zeros(10, np.float32).__reduce__()[2])
        refused(lambda: opt.step([np.ones(10, np.float32)]), ValueError, "params[0] now has shape (10,)")
        assert not p.any()
        print("ok")
    """)


def test_a_state_array_reloaded_in_place_is_refused():
    run_child("""
        p = np.zeros(100_000, np.float64)
        opt = fo.SGD([p], lr=0.1, momentum=0.9)
        buffer = opt.state[0]["momentum_buffer"]
        buffer.__setstate__(np.zeros(100_000, np.float64).__reduce__()[2])  # same shape, new buffer
        refused(lambda: opt.step([np.ones(100_000)]), ValueError,
                "state[0]['momentum_buffer'] now has another buffer")
        print("ok")
    """)


def test_the_ema_and_accumulation_buffers_cannot_be_swapped_from_under_a_step():
    """The EMA arrays (opt.ema) and the accumulation buffers are the plan's too: pinned against
    resizing, re-checked before every step and accumulation, and held while the kernels run."""
    run_child("""
        n = 1_000_000
        p = np.zeros(n, np.float32)
        opt = fo.SGD([p], lr=1.0, ema_decay=0.5)
        opt.accumulate([np.ones(n, np.float32)])
        ema, buffer = opt.ema[0], opt._extras.accumulated[0]
        refused(lambda: ema.resize(10, refcheck=False), ValueError, "cannot resize")
        refused(lambda: buffer.resize(10, refcheck=False), ValueError, "cannot resize")
        ema.__setstate__(np.zeros(10, np.float32).__reduce__()[2])
        refused(lambda: opt.step(), ValueError, "ema[0] now has shape (10,)")
        opt.accumulate([np.ones(n, np.float32)])  # writes the buffers alone: the EMA is not its concern
        assert not p.any() and opt.pending == 2
        ema.__setstate__(np.zeros(n, np.float32).__reduce__()[2])  # the right shape, another buffer
        refused(lambda: opt.step(), ValueError, "ema[0] now has another buffer")
        buffer.__setstate__(np.zeros(10, np.float32).__reduce__()[2])
        refused(lambda: opt.accumulate([np.ones(n, np.float32)]), ValueError, "accumulated[0] now has shape (10,)")
        assert not p.any()
        print("ok")
    """)


def test_bfloat16_state_arrays_are_held_like_any_other():
    """bfloat16 state (2-byte elements beside 4-byte parameters): a smaller replacement, one
    reloaded in place, or one re-typed in place (float16: the same element size) is refused at
    the next step with nothing changed, never read or written past its end."""
    run_child("""
        n = 1_000_000
        g = [np.ones(n, np.float32)]
        def adam():
            p = np.zeros(n, np.float32)
            opt = fo.Adam([p], state_dtype="bfloat16", state_rounding="stochastic")
            opt.step(g)
            return p, p.copy(), opt
        p, before, opt = adam()
        m = opt.state[0]["exp_avg"]
        refused(lambda: m.resize(10, refcheck=False), ValueError, "cannot resize")
        m.__setstate__(np.zeros(10, np.uint16).__reduce__()[2])
        refused(lambda: opt.step(g), ValueError, "state[0]['exp_avg'] now has shape (10,)")
        assert (p == before).all()
        p, before, opt = adam()
        opt.state[0]["exp_avg"] = np.zeros(10, fo.bfloat16_dtype())
        refused(lambda: opt.step(g), ValueError, "state[0]['exp_avg'] has shape (10,)")
        assert (p == before).all()
        p, before, opt = adam()
        v = opt.state[0]["exp_avg_sq"]
        v.dtype = np.float16
        refused(lambda: opt.step(g), ValueError, "state[0]['exp_avg_sq'] now has dtype float16")
        assert (p == before).all()
        v.dtype = fo.bfloat16_dtype()
        opt.step(g)
        assert (p != before).all()
        print("ok")
    """)


def test_8bit_state_arrays_are_held_like_any_other():
    """8-bit state (1-byte codes, and a float32 absmax per block of 256): a code array or an
    absmax array reloaded in place with fewer elements, replaced by a shorter one, or re-typed in
    place (int8: the same element size) is refused at the next step with nothing changed, never
    read or written past its end."""
    run_child("""
        n = 1_000_000
        g = [np.ones(n, np.float32)]
        def adam():
            p = np.zeros(n, np.float32)
            opt = fo.Adam([p], state_dtype="int8")
            opt.step(g)
            return p, p.copy(), opt
        p, before, opt = adam()
        absmax = opt.state[0]["exp_avg_absmax"]
        refused(lambda: absmax.resize(10, refcheck=False), ValueError, "cannot resize")
        absmax.__setstate__(np.zeros(10, np.float32).__reduce__()[2])
        refused(lambda: opt.step(g), ValueError, "state[0]['exp_avg_absmax'] now has shape (10,)")
        assert (p == before).all()
        p, before, opt = adam()
        opt.state[0]["exp_avg_sq_absmax"] = np.zeros(10, np.float32)
        refused(lambda: opt.step(g), ValueError, "state[0]['exp_avg_sq_absmax'] has shape (10,)")
        assert (p == before).all()
        p, before, opt = adam()
        m = opt.state[0]["exp_avg"]
        m.__setstate__(np.zeros(10, np.uint8).__reduce__()[2])
        refused(lambda: opt.step(g), ValueError, "state[0]['exp_avg'] now has shape (10,)")
        assert (p == before).all()
        p, before, opt = adam()
        v = opt.state[0]["exp_avg_sq"]
        v.dtype = np.int8
        refused(lambda: opt.step(g), ValueError, "state[0]['exp_avg_sq'] now has dtype int8")
        assert (p == before).all()
        v.dtype = np.uint8
        opt.step(g)
        assert (p != before).all()
        print("ok")
    """)


@pytest.mark.parametrize(("on_state", "attribute", "value", "back", "message"), [
    (False, "writeable", False, True, "params[0] is read-only now"),
    (False, "dtype", np.int32, np.float32, "params[0] now has dtype int32 (it was float32)"),
    (False, "shape", (2, 500), (1000,), "params[0] now has shape (2, 500) (it was (1000,))"),
    (True, "shape", (10, 100), (1000,), "state[0]['exp_avg'] now has shape (10, 100)"),
    (True, "writeable", False, True, "state[0]['exp_avg'] is read-only now"),
])
def test_an_array_changed_in_place_is_refused_until_it_is_changed_back(on_state, attribute, value, back, message):
    """Case 4's kin: re-typing, re-shaping or making read-only a parameter or state array in
    place. Refused at the next step with nothing changed; usable again once undone."""
    p = np.zeros(1000, np.float32)
    opt = fo.Adam([p], lr=0.1)
    s = opt.state[0]["exp_avg"]
    g = [np.ones(1000, np.float32)]
    target = s if on_state else p
    if set_in_place(target, attribute, value):
        with pytest.raises(ValueError, match=re.escape(message)):
            opt.step(g)
        assert set_in_place(target, attribute, back)
    assert not p.any() and not s.any()
    opt.step(g)
    assert np.allclose(p, -0.1)


def test_the_bandwidth_probe_holds_its_arrays():
    """fastoptim._core.probe takes a list: another thread emptying it during a sweep must not
    free the arrays under it."""
    run_child("""
        from fastoptim import _core
        swept = 0
        for _ in range(5):
            arrays = [np.ones(20_000_000, np.float32) for _ in range(2)]
            thread = threading.Thread(target=lambda: (time.sleep(0.002), arrays.clear()))
            thread.start()
            try:
                _core.probe(arrays, 1, 2)
                swept += 1
            except ValueError:  # the clear came first (a slow build, such as TSan's): an empty list is refused
                assert not arrays
            thread.join()
        assert swept >= 1, "every clear came before the sweep: nothing was tested"
        print("ok")
    """)


TABLES = ("[(p, np.zeros(100, np.float32), None, np.ones_like(p), None, 1.0, (0.0, 0.0, 1.0))"
          " for p in [np.zeros((100, 10), np.float32) for _ in range(3)]]")


@pytest.mark.parametrize(("items", "call"), [
    ("[np.ones(1000, np.float32) for _ in range(2)]", "_core.probe(arrays, 1, 1)"),
    ("[np.ones(1000, np.float32) for _ in range(2)]", "_core.measure_arrays(arrays, 0)"),
    (TABLES, "_core.row_step('rowwise_adagrad', arrays)"),
], ids=["probe", "measure_arrays", "row_step"])
def test_a_list_emptied_by_another_thread_at_the_first_call(items, call):
    """The first call of a list-taking binding in a process once released the GIL (pybind11
    looking NumPy's C API up) after reading the list's length and before holding its items: a
    thread emptying the list there made the binding read freed memory (a CI run's crash, about one
    child in three with this churn). Several fresh children, since only the first call counts."""
    for _ in range(4):
        run_child(f"""
            import sys
            from fastoptim import _core
            sys.setswitchinterval(1e-6)  # the churning thread takes the GIL whenever it is let go
            saved = {items}
            arrays = list(saved)
            stop = False
            def churn():
                while not stop:
                    arrays.clear()
                    arrays.extend(saved)
            thread = threading.Thread(target=churn)
            thread.start()
            calls = 0
            for _ in range(20_000):  # until some calls found the list whole (the churn decides how often)
                try:
                    {call}
                    calls += 1
                except ValueError:  # the list was empty, or held one array
                    pass
                if calls >= 20:
                    break
            stop = True
            thread.join()
            assert calls >= 1, "every call found the list emptied: nothing was tested"
            print("ok")
        """)


def test_a_step_from_python_code_that_a_step_runs_is_refused():
    """A name's __hash__ that steps (or rebuilds) the optimizer again: refused, no deadlock."""
    class Name:
        def __init__(self, key: str) -> None:
            self.key, self.armed, self.errors = key, False, []

        def __hash__(self) -> int:
            if self.armed:
                self.armed = False
                for call in (lambda: opt.step(grads), lambda: opt.add_param_group({"params": [np.zeros(2)]})):
                    try:
                        call()
                    except RuntimeError as error:
                        self.errors.append(str(error))
            return hash(self.key)

        def __eq__(self, other: object) -> bool:
            return isinstance(other, Name) and other.key == self.key

    a, b = Name("a"), Name("b")
    opt = fo.SGD({a: np.zeros(4), b: np.zeros(4)}, lr=1.0)
    grads = {a: np.ones(4), b: np.ones(4)}
    b.armed = True
    opt.step(grads)
    assert len(b.errors) == 2 and "already stepping" in b.errors[0] and "while this optimizer steps" in b.errors[1]
    assert len(opt.param_groups) == 1 and (opt.param_groups[0]["params"][0] == -1).all()
