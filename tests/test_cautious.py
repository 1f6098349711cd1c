"""cautious=True (Liang et al. 2024, "Cautious Optimizers"): which classes take it, what it reads
back, that it survives checkpoints and copies, and that the mask's count n/(k + 1) is per array.

The update against the float64 references is the registry's (adam_cautious, sgd_cautious,
sgdw_cautious, lion_cautious, ademamix_cautious rows), and Lion's and AdEMAMix's against
pytorch_optimizer in test_oracle_parity.py.
"""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

import fastoptim as fo
from fastoptim import _core
from problems import make_problem
from registry import CASES

OPTIMIZERS = sorted((c for c in vars(fo).values()
                     if isinstance(c, type) and issubclass(c, fo.Optimizer) and c is not fo.Optimizer),
                    key=lambda c: c.__name__)
WITH_VARIANT = [c for c in OPTIMIZERS if c._cautious_rule is not None]
WITHOUT_VARIANT = [c for c in OPTIMIZERS if c._cautious_rule is None]
CAUTIOUS_CASES = [c for c in CASES if c.name.endswith("_cautious")]
NAMED = "Adam, AdamW, SGD, SGDW, Lion and AdEMAMix"

# Settings under which each class's cautious step differs from its plain one (SGD needs momentum).
SETTINGS = {"Adam": dict(lr=1e-2), "AdamW": dict(lr=1e-2), "SGD": dict(lr=1e-2, momentum=0.9),
            "SGDW": dict(lr=1e-2, momentum=0.9, weight_decay=0.1), "Lion": dict(lr=1e-3), "AdEMAMix": dict(lr=1e-2)}


def _run(opt, grads):
    for g in grads:
        opt.step(g)


def test_the_classes_with_a_variant():
    assert {c.__name__ for c in WITH_VARIANT} == set(SETTINGS)
    rules = _core.rules()
    for cls in WITH_VARIANT:
        assert cls._cautious_rule == f"{cls._rule}_cautious" and cls._cautious_rule in rules, cls.__name__
    assert {c.name for c in CAUTIOUS_CASES} == {c._cautious_rule for c in WITH_VARIANT}  # a registry row each


@pytest.mark.parametrize("cls", WITHOUT_VARIANT, ids=lambda c: c.__name__)
def test_cautious_is_refused_by_a_class_without_a_variant(cls):
    with pytest.raises(TypeError, match=f"cautious=True: {cls.__name__} has no cautious variant") as info:
        cls([np.zeros(3)], cautious=True)
    assert NAMED in str(info.value)
    assert cls([np.zeros(3)], cautious=False).cautious is False  # the default, said out loud, is fine
    assert cls([np.zeros(3)]).cautious is False


def test_ranger_refuses_cautious():
    with pytest.raises(TypeError, match="cautious"):
        fo.Ranger([np.zeros(3)], cautious=True)


@pytest.mark.parametrize("value", [1, 0, "yes", None, 1.0])
def test_cautious_must_be_true_or_false(value):
    with pytest.raises(TypeError, match="cautious must be True or False"):
        fo.Adam([np.zeros(3)], cautious=value)


@pytest.mark.parametrize("cls", WITH_VARIANT, ids=lambda c: c.__name__)
def test_cautious_reads_back_and_changes_the_step(cls, rng):
    settings = SETTINGS[cls.__name__]
    plain, cautious = cls([np.zeros(3)], **settings), cls([np.zeros(3)], cautious=True, **settings)
    assert plain.cautious is False and plain._rule == cls._rule
    assert cautious.cautious is True and cautious._rule == cls._cautious_rule
    assert cls([np.zeros(3)], cautious=np.bool_(True)).cautious is True
    # and the flag is the step's: the two part where g turns against the update
    params, grads = make_problem(rng, [(257,)], np.float64, 4)
    a, b = [p.copy() for p in params], [p.copy() for p in params]
    _run(cls(a, **settings), grads)
    _run(cls(b, cautious=True, **settings), grads)
    assert not np.array_equal(a[0], b[0])


def test_adamw_cautious_is_adam_cautious_with_decoupled_decay(rng):
    params, grads = make_problem(rng, [(1025,), (7, 3)], np.float32, 6)
    a, b = [p.copy() for p in params], [p.copy() for p in params]
    _run(fo.AdamW(a, lr=1e-2, weight_decay=0.1, amsgrad=True, cautious=True), grads)
    _run(fo.Adam(b, lr=1e-2, weight_decay=0.1, amsgrad=True, decoupled_weight_decay=True, cautious=True), grads)
    for x, y in zip(a, b):
        assert x.tobytes() == y.tobytes()


@pytest.mark.parametrize("cls", [fo.SGD, fo.SGDW], ids=lambda c: c.__name__)
def test_sgd_without_momentum_has_nothing_to_mask(cls, rng):
    """Without momentum the direction is the gradient itself: no caution, the plain step's bits."""
    params, grads = make_problem(rng, [(1025,), ()], np.float32, 4)
    a, b = [p.copy() for p in params], [p.copy() for p in params]
    settings = dict(lr=0.05, weight_decay=0.01, maximize=True)
    _run(cls(a, **settings), grads)
    _run(cls(b, cautious=True, **settings), grads)
    for x, y in zip(a, b):
        assert x.tobytes() == y.tobytes()


def _named(arrays):
    return {f"w{i}": a for i, a in enumerate(arrays)}


@pytest.mark.parametrize("case", CAUTIOUS_CASES, ids=lambda c: c.name)
def test_checkpoints_and_copies_keep_cautious_and_resume_bit_exactly(case, rng):
    kwargs = case.arg_sets[-1]
    params, grads = make_problem(rng, [(1025,), (5, 3), ()], np.float32, 6)
    straight_params = [p.copy() for p in params]
    straight = case.cls(_named(straight_params), **kwargs)
    for g in grads:
        straight.step(_named(g))

    first = case.cls(_named(params), **kwargs)
    for g in grads[:3]:
        first.step(_named(g))
    saved, saved_params = pickle.loads(pickle.dumps((first.state_dict(), [p.copy() for p in params])))
    loaded = case.cls(_named(saved_params), **kwargs)
    loaded.load_state_dict(saved)
    copies = [copy.deepcopy(first), pickle.loads(pickle.dumps(first))]
    for opt in [loaded, *copies]:
        assert opt.cautious is True and opt._rule == case.name
        for g in grads[3:]:
            opt.step(_named(g))
    for opt in [loaded, *copies]:
        arrays = [p for group in opt.param_groups for p in group["params"]]
        for got, want in zip(arrays, straight_params):
            assert got.tobytes() == want.tobytes(), case.name


def test_copies_of_a_plain_optimizer_stay_plain():
    opt = fo.Adam([np.zeros(3)])
    assert copy.deepcopy(opt).cautious is False and pickle.loads(pickle.dumps(opt))._rule == "adam"


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("target", fo.available_targets())
def test_the_count_is_per_array(target, threads, dtype, restore_runtime):
    """SGD with momentum μ = 0.5 from p = 0: step 1 (g = 1) keeps every component, scaled by
    n/(n + 1); step 2 turns g against the momentum (b = μ·1 + g = 0.25 > 0 with g = -0.25) on
    every third element of a large array and on 7 of a small one's 10, so each array is scaled
    by its own n/(k + 1), 3/2 and 10/4 roughly, where one count for both would give another."""
    fo.set_target(target)
    fo.set_num_threads(threads)
    lr, sizes = 0.5, (100_003, 10)
    against = [np.arange(sizes[0]) % 3 == 0, np.arange(sizes[1]) < 7]
    g1 = [np.ones(n, dtype) for n in sizes]
    g2 = [np.where(a, -0.25, 1.0).astype(dtype) for a in against]
    together = [np.zeros(n, dtype) for n in sizes]
    apart = [np.zeros(n, dtype) for n in sizes]
    opt = fo.SGD(together, lr=lr, momentum=0.5, cautious=True)
    alone = [fo.SGD([p], lr=lr, momentum=0.5, cautious=True) for p in apart]
    for grads in (g1, g2):
        opt.step(grads)
        for o, g in zip(alone, grads):
            o.step([g])
    tol = dict(rtol=1e-15, atol=0) if dtype == np.float64 else dict(rtol=1e-6, atol=0)
    for p, q, n, a in zip(together, apart, sizes, against):
        assert p.tobytes() == q.tobytes()  # the other array changes nothing
        k = n - np.count_nonzero(a)
        assert 0 < k < n
        p1 = -lr * (n / (n + 1))
        buf = np.where(a, 0.25, 1.5)
        want = p1 - lr * np.where(a, 0.0, buf * (n / (k + 1)))
        np.testing.assert_allclose(p, want, **tol, err_msg=f"n={n}, k={k}")
    joint = sum(sizes) / (sum(n - np.count_nonzero(a) for n, a in zip(sizes, against)) + 1)
    assert not np.isclose(joint, 10 / 4)  # one count for both would have scaled the small array by about 3/2
