"""bfloat16 parameters (issue 23): each element widened to float32, updated there and stored back
rounded, to nearest even or stochastically. The references: a float32-parameter run of the same
rule whose parameters are rounded after every step by test_bfloat16_state's definitions of the
rounding (nearest even from the format's definition, the stochastic draw from the generator's),
so every rule is checked bit for bit, state included; plus the stall that stochastic rounding
cures, the fused options, Lookahead, checkpoints, refusals and memory."""

from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest
from child import run_python
from test_bfloat16_state import _flat, bits, nearest_even, stochastic_param, widened

import fastoptim as fo
from registry import ARG_CASES, arg_id

ml_dtypes = pytest.importorskip("ml_dtypes")
BF16 = np.dtype(ml_dtypes.bfloat16)
SHAPES = [(7,), (1025,), (33, 31), (70001,), ()]
ALWAYS, NEVER = 0, 2**62  # fo.set_prefetch_above, as test_bits
SETTINGS = [(1, NEVER), (2, ALWAYS)]


# ---- helpers ---------------------------------------------------------------------------------
def _order(a: np.ndarray) -> str:
    return "F" if a.flags.f_contiguous and not a.flags.c_contiguous else "C"


def as_bf16(values) -> np.ndarray:
    """Values rounded to the nearest bfloat16 (the reference's rounding), as an ml_dtypes array of
    their shape and memory order."""
    x = np.asarray(values, np.float32)
    return nearest_even(x).view(BF16).reshape(x.shape, order=_order(x))


def wide(a: np.ndarray) -> np.ndarray:
    """A bfloat16 array widened to float32 exactly (from its bits), same shape and memory order."""
    return widened(bits(a)).reshape(a.shape, order=_order(a))


def round_in_place(p: np.ndarray, rounded: np.ndarray) -> None:
    """Write bfloat16 bit patterns (flat, in memory order) into float32 `p` as their values."""
    np.copyto(p, widened(rounded).reshape(p.shape, order=_order(p)))


def bf16_problem(rng, shapes, steps, orders=None):
    """bfloat16 parameters and `steps` lists of bfloat16 gradients (memory order per shape)."""
    orders = orders or ["C"] * len(shapes)

    def make(shape, order):
        return as_bf16(np.asarray(rng.standard_normal(shape), np.float32, order=order))

    params = [make(s, o) for s, o in zip(shapes, orders)]
    grads = [[make(s, o) for s, o in zip(shapes, orders)] for _ in range(steps)]
    return params, grads




def _core(opt):
    return opt.optimizer if isinstance(opt, fo.Lookahead) else opt


def _state_leaves(opt):
    return _flat(_core(opt).state_dict()["state"])


def _all_bytes(opt, params):
    """Every parameter's and state array's bytes (Lookahead's slow weights included)."""
    out = [p.tobytes(order="A") for p in params]
    out += _state_leaves(opt)
    if isinstance(opt, fo.Lookahead):
        out += [np.asarray(opt.slow[n]).tobytes() for n in sorted(opt.slow, key=repr)]
    return out


def _state_options(state, for_bf16, holds_weights=False):
    """The state_dtype a bfloat16-parameter run (`state`: None or "float32") and its float32 twin
    take; state that holds weights (Schedule-Free's z, ASGD's ax) is float32 by default."""
    if for_bf16:
        return {} if state is None else {"state_dtype": state}
    return {} if state == "float32" or holds_weights else {"state_dtype": "bfloat16"}


def twin_runs(make, params, grads, *, state=None, seed=0, stochastic_rounding=False,
              state_rounding="nearest"):
    """Step bfloat16 `params` (in place) with `make(params, **options)`, and their float32 twins with the
    same rule, the twins' parameters rounded after every step by the reference (nearest even, or the
    generator's parameter draws with the parameter's position and step); Lookahead's synchronisation is
    replayed in NumPy (float32, rounded to nearest). Asserts the bfloat16 parameters equal the
    twins' after every step; returns both optimizers, the twins' parameters and their slow weights."""
    options = dict(seed=seed, state_rounding=state_rounding)
    fparams = [wide(p) for p in params]
    bopt = make(params, **options, stochastic_rounding=stochastic_rounding, **_state_options(state, True))
    holds_weights = getattr(_core(bopt), "_state_holds_weights", False)  # False for a test's own wrapper
    fouter = make(fparams, **options, **_state_options(state, False, holds_weights))
    look = isinstance(fouter, fo.Lookahead)
    finner = _core(fouter)
    slow = [p.copy() for p in fparams] if look else None
    drew_differently = False
    for t, g in enumerate(grads, 1):
        bopt.step(g)
        finner.step([wide(x) for x in g])
        for position, p in enumerate(fparams):
            if stochastic_rounding:
                drawn = stochastic_param(p, seed, position, t)
                drew_differently |= bool((drawn != nearest_even(p)).any())
                round_in_place(p, drawn)
            else:
                round_in_place(p, nearest_even(p))
        if look and t % fouter.k == 0:
            alpha = np.float32(fouter.alpha)
            for p, s in zip(fparams, slow):
                s += alpha * (p - s)
                round_in_place(p, nearest_even(s))
        for i, (b, f) in enumerate(zip(params, fparams)):
            assert b.dtype == BF16
            assert widened(bits(b)).tobytes() == f.ravel(order="K").tobytes(), f"param {i} after step {t}"
    if stochastic_rounding:
        assert drew_differently, "stochastic rounding never differed from nearest: the check checks nothing"
    return bopt, fouter, fparams, slow


def assert_same_state(bopt, fopt, slow=None):
    """Every state entry (arrays by dtype and bytes) of the two runs is the same; Lookahead's slow
    weights equal the replayed ones and are float32."""
    assert _state_leaves(bopt) == _state_leaves(fopt)
    if slow is not None:
        names = list(bopt.slow)
        assert len(names) == len(slow)
        for name, want in zip(names, slow):
            got = bopt.slow[name]
            assert got.dtype == np.float32
            assert got.tobytes(order="A") == want.tobytes(order="A"), name


def _about(nbytes, per_element, params):
    """`nbytes` is `per_element` bytes for each element of `params`, give or take each array's
    alignment padding (64 bytes)."""
    want = per_element * sum(p.size for p in params)
    return want <= nbytes <= want + 64 * len(params)


def _changed(before, after):
    return any((bits(a) != bits(b)).any() for a, b in zip(before, after))


# ---- 1. every rule, nearest rounding: the float32 run rounded to nearest after each step --------
@pytest.mark.parametrize("state", [None, "float32"])
@pytest.mark.parametrize(("case", "kwargs"), ARG_CASES, ids=arg_id)
def test_every_rule_rounds_to_nearest_as_the_float32_run(case, kwargs, state):
    """4 steps of every registry case on bfloat16 parameters (odd sizes, a 0-d one) with
    stochastic_rounding=False: the parameters equal a float32 run's rounded to nearest even after
    every step, and every state array's bytes equal its (bfloat16 state for the default, float32
    state with state_dtype="float32")."""
    rng = np.random.default_rng(23)
    params, grads = bf16_problem(rng, SHAPES, 4)
    start = [p.copy() for p in params]
    bopt, fopt, _, slow = twin_runs(lambda ps, **o: case.cls(ps, **kwargs, **o), params, grads, state=state)
    assert_same_state(bopt, fopt, slow)
    want = BF16 if state is None and not _core(bopt)._state_holds_weights else np.dtype(np.float32)
    arrays = [a for s in _core(bopt).state.values() for a in s.values()]
    assert all(a.dtype == want for a in arrays)
    assert _changed(start, params), "no parameter moved"


@pytest.mark.parametrize("stochastic_rounding", [False, True])
@pytest.mark.parametrize("state", [None, "float32"])
def test_ranger_composition_rounds_as_the_float32_run(state, stochastic_rounding):
    """Lookahead(RAdam), Ranger's exact composition (built by hand: see the Ranger test below),
    with bfloat16 parameters: the float32 run rounded after each inner step, its synchronisation
    replayed in float32 and rounded to nearest."""
    rng = np.random.default_rng(24)
    params, grads = bf16_problem(rng, SHAPES, 6)
    bopt, fopt, _, slow = twin_runs(
        lambda ps, **o: fo.Lookahead(fo.RAdam(ps, lr=1e-2, weight_decay=0.01, **o), k=2, alpha=0.7),
        params, grads, state=state, seed=5, stochastic_rounding=stochastic_rounding)
    assert_same_state(bopt, fopt, slow)


def test_ranger_takes_stochastic_rounding():
    """Ranger takes every option its RAdam takes, stochastic_rounding included."""
    opt = fo.Ranger([np.ones(5, BF16)], stochastic_rounding=False, seed=3)
    assert opt.optimizer.stochastic_rounding is False and opt.seed == 3


def test_lookahead_shows_the_inner_stochastic_rounding():
    """Lookahead forwards stochastic_rounding beside state_dtype, state_rounding and seed."""
    look = fo.Lookahead(fo.Adam([np.ones(5, BF16)], stochastic_rounding=False, seed=3))
    assert (look.seed, look.stochastic_rounding) == (3, False)


# ---- 2. stochastic rounding: the generator's parameter draws ------------------------------------
STOCHASTIC_RULES = [
    ("adam", lambda ps, **o: fo.Adam(ps, lr=1e-3, **o)),
    ("adamw", lambda ps, **o: fo.AdamW(ps, lr=1e-3, weight_decay=0.1, **o)),
    ("sgd_momentum", lambda ps, **o: fo.SGD(ps, lr=1e-3, momentum=0.9, **o)),
    ("lion", lambda ps, **o: fo.Lion(ps, lr=1e-4, weight_decay=0.1, **o)),
    ("lamb", lambda ps, **o: fo.LAMB(ps, lr=1e-3, weight_decay=0.01, **o)),
    ("lars", lambda ps, **o: fo.LARS(ps, lr=0.1, momentum=0.9, **o)),
    ("adam_groups", lambda ps, **o: fo.Adam([{"params": ps[:1]}, {"params": ps[1:], "lr": 3e-3}], lr=1e-3, **o)),
]


@pytest.mark.parametrize(("state", "state_rounding"), [(None, "nearest"), (None, "stochastic"), ("float32", "nearest")])
@pytest.mark.parametrize("seed", [0, 2**64 - 7])
@pytest.mark.parametrize(("name", "make"), STOCHASTIC_RULES, ids=[n for n, _ in STOCHASTIC_RULES])
def test_stochastic_rounding_draws_as_the_generator_defines(name, make, seed, state, state_rounding):
    """Small updates (many under half an ulp) on three parameters (positions 0, 1, 2, one in
    Fortran order: indices in memory order), 4 steps: each stored parameter is the generator's
    rounding of the float32 update, stochastic_param(values, seed, position, step), bit for bit, and
    the state as the float32 run's (bfloat16 state rounded by state_rounding from the same generator)."""
    rng = np.random.default_rng(5)
    params, grads = bf16_problem(rng, [(1025,), (33, 31), (4099,)], 4, orders=["C", "F", "C"])
    assert params[1].flags.f_contiguous and not params[1].flags.c_contiguous
    bopt, fopt, _, _ = twin_runs(make, params, grads, state=state, seed=seed, stochastic_rounding=True,
                                 state_rounding=state_rounding)
    assert bopt.stochastic_rounding is True and bopt.seed == seed
    assert_same_state(bopt, fopt)


def test_stochastic_rounding_is_on_by_default_and_the_seed_moves_it(rng):
    """Without options a bfloat16 parameter rounds stochastically with seed 0 (the generator's bits
    of the parameter draws, not nearest's); another seed gives other bits."""
    params, grads = bf16_problem(rng, [(5000,)], 1)
    results = {}
    for seed in (0, 1):
        p = params[0].copy()
        opt = fo.SGD([p], lr=1e-3) if seed == 0 else fo.SGD([p], lr=1e-3, seed=seed)
        opt.step(grads[0])
        results[seed] = bits(p)
    assert fo.SGD([params[0].copy()]).stochastic_rounding is True
    update = wide(params[0]) - np.float32(1e-3) * wide(grads[0][0])
    assert (results[0] == stochastic_param(update, 0, 0, 1)).all()
    assert (results[0] != nearest_even(update)).any()
    assert (results[1] == stochastic_param(update, 1, 0, 1)).all()
    assert (results[0] != results[1]).any()


def test_stochastic_rounding_flag_is_checked():
    with pytest.raises(TypeError, match="stochastic_rounding"):
        fo.Adam([np.zeros(3, BF16)], stochastic_rounding=1)
    assert fo.Adam([np.zeros(3, BF16)], stochastic_rounding=False).stochastic_rounding is False


# ---- 8-bit state for bfloat16 parameters -----------------------------------------------------
@pytest.mark.parametrize("stochastic_rounding", [False, True])
@pytest.mark.parametrize(("name", "make"), [STOCHASTIC_RULES[0], STOCHASTIC_RULES[4], STOCHASTIC_RULES[2]],
                         ids=["adam", "lamb", "sgd_momentum"])
def test_int8_state_of_bfloat16_parameters_is_the_float32_runs(name, make, stochastic_rounding):
    """state_dtype="int8" on a bfloat16 parameter of 5000 elements: codes and absmax as a float32
    run's 8-bit state, parameters its rounding; a 100-element one keeps bfloat16 state."""
    rng = np.random.default_rng(8)
    params, grads = bf16_problem(rng, [(5000,)], 4)
    options = dict(state_dtype="int8")
    fparams = [wide(p) for p in params]
    bopt = make(params, **options, stochastic_rounding=stochastic_rounding, seed=9)
    fopt = make(fparams, **options, seed=9)
    for t, g in enumerate(grads, 1):
        bopt.step(g)
        fopt.step([wide(x) for x in g])
        p = fparams[0]
        round_in_place(p, stochastic_param(p, 9, 0, t) if stochastic_rounding else nearest_even(p))
        assert widened(bits(params[0])).tobytes() == fparams[0].tobytes(), t
    leaves = _state_leaves(bopt)
    assert leaves == _state_leaves(fopt)
    assert any(leaf[1] == "uint8" for leaf in leaves)
    small = [as_bf16(rng.standard_normal(100))]
    opt = make(small, **options)
    opt.step([as_bf16(rng.standard_normal(100))])
    assert all(a.dtype == BF16 for a in opt.state[0].values())


# ---- 3. the same bits on every target, thread count and prefetch setting ----------------------
TARGET_RULES = [
    ("adam_stochastic_state", lambda ps: fo.Adam(ps, lr=1e-3, seed=3, state_rounding="stochastic")),
    ("sgd_momentum", lambda ps: fo.SGD(ps, lr=1e-2, momentum=0.9, seed=4)),
    ("lamb", lambda ps: fo.LAMB(ps, lr=1e-3, weight_decay=0.01, seed=5)),
    ("lars", lambda ps: fo.LARS(ps, lr=0.1, momentum=0.9, seed=6)),
    ("lion_float32_state", lambda ps: fo.Lion(ps, lr=1e-4, seed=7, state_dtype="float32")),
    ("adam_int8", lambda ps: fo.Adam(ps, lr=1e-3, seed=8, state_dtype="int8")),
    ("lamb_int8", lambda ps: fo.LAMB(ps, lr=1e-3, seed=8, state_dtype="int8")),
    ("adamw_clip_ema", lambda ps: fo.AdamW(ps, lr=1e-3, seed=9, max_grad_norm=1.0, ema_decay=0.9)),
]


def _target_trajectory(make, mixed, target, threads, prefetch_above):
    fo.set_target(target)
    fo.set_num_threads(threads)
    fo.set_prefetch_above(prefetch_above)
    rng = np.random.default_rng(31)
    shapes = [(70001,), (7,), (33, 31), (5000,), ()]
    params, grads = bf16_problem(rng, shapes, 4)
    if mixed:  # float64 and float32 parameters between the bfloat16 ones (the float64 one under min_8bit_size)
        params[1] = wide(params[1]).astype(np.float64)
        params[2] = wide(params[2])
        grads = [[g if i not in (1, 2) else (wide(g).astype(np.float64) if i == 1 else wide(g))
                  for i, g in enumerate(gs)] for gs in grads]
    opt = make(params)
    for g in grads:
        opt.step(g)
    extra = [] if opt.ema is None else [e.tobytes() for e in opt.ema.values()]
    return _all_bytes(opt, params) + extra


@pytest.mark.parametrize("mixed", [False, True], ids=["bf16", "mixed"])
@pytest.mark.parametrize(("name", "make"), TARGET_RULES, ids=[n for n, _ in TARGET_RULES])
def test_same_bits_on_every_target_thread_count_and_prefetch(name, make, mixed, restore_runtime):
    runs = {(t, n, p): _target_trajectory(make, mixed, t, n, p)
            for t, (n, p) in itertools.product(fo.available_targets(), SETTINGS)}
    (first_key, first), *rest = runs.items()
    for key, other in rest:
        assert other == first, f"{key} differs from {first_key}"


# ---- 4. resume -------------------------------------------------------------------------------
RESUME_RULES = [
    ("adam", lambda ps, **o: fo.Adam(ps, lr=1e-3, **o)),
    ("sgd_momentum", lambda ps, **o: fo.SGD(ps, lr=1e-2, momentum=0.9, **o)),
    ("lamb", lambda ps, **o: fo.LAMB(ps, lr=1e-3, **o)),
    ("adam_float32_state", lambda ps, **o: fo.Adam(ps, lr=1e-3, state_dtype="float32", **o)),
    ("adam_int8", lambda ps, **o: fo.Adam(ps, lr=1e-3, state_dtype="int8", **o)),
    ("adamw_ema", lambda ps, **o: fo.AdamW(ps, lr=1e-3, ema_decay=0.9, **o)),
]
RESUME_OPTIONS = dict(seed=12345, state_rounding="stochastic")


def _resume_problem():
    rng = np.random.default_rng(41)
    params, grads = bf16_problem(rng, [(5000,), (33, 31), (7,)], 6)
    return {f"p{i}": p for i, p in enumerate(params)}, [{f"p{i}": x for i, x in enumerate(g)} for g in grads]


def _options(name):
    return {k: v for k, v in RESUME_OPTIONS.items() if not (name.endswith(("int8", "float32_state"))
                                                             and k == "state_rounding")}


def _run(opt, grads):
    for g in grads:
        opt.step(g)
    return opt


@pytest.mark.parametrize(("name", "make"), RESUME_RULES, ids=[n for n, _ in RESUME_RULES])
def test_resume_is_exact(name, make):
    """6 steps straight == 3 steps, state_dict, a new optimizer (same options) on copies loading it,
    3 more: the same parameter and state bytes, stochastic rounding on, nonzero seed. The state dict
    records the seed (and stochastic_rounding where False: test_state_dict_records_nearest_rounding)."""
    params, grads = _resume_problem()
    options = _options(name)
    straight = {k: v.copy() for k, v in params.items()}
    whole = _run(make(straight, **options), grads)
    half = {k: v.copy() for k, v in params.items()}
    saved = _run(make(half, **options), grads[:3]).state_dict()
    assert saved["state_format"].get("stochastic_rounding", True) is True  # recorded where False
    assert saved["state_format"]["seed"] == 12345
    resumed = {k: v.copy() for k, v in half.items()}
    second = make(resumed, **options)
    second.load_state_dict(copy.deepcopy(saved))
    _run(second, grads[3:])
    assert [bits(resumed[k]).tobytes() for k in params] == [bits(straight[k]).tobytes() for k in params]
    assert _flat(second.state_dict()) == _flat(whole.state_dict())
    other = {k: v.copy() for k, v in params.items()}
    _run(make(other, **dict(options, seed=1)), grads)
    assert [bits(other[k]).tobytes() for k in params] != [bits(straight[k]).tobytes() for k in params]


def test_state_dict_records_nearest_rounding():
    opt = fo.Adam([np.zeros(3, BF16)], stochastic_rounding=False)
    assert opt.state_dict()["state_format"]["stochastic_rounding"] is False


@pytest.mark.parametrize("state_dtype", [None, "bfloat16"])
def test_loading_takes_the_saved_rounding_of_bfloat16_parameters(state_dtype):
    """A state dict of bfloat16 parameters (their state bfloat16: the default, or asked for) loaded
    into a new optimizer built with the defaults resumes exactly: it takes the dict's seed and
    stochastic_rounding, which made the parameters' bits, as a dict saved with bfloat16 state
    sets state_rounding and seed (Optimizer.load_state_dict)."""
    params, grads = _resume_problem()
    layout = {} if state_dtype is None else {"state_dtype": state_dtype}
    for stochastic_rounding in (True, False):
        options = dict(layout, seed=12345, stochastic_rounding=stochastic_rounding)
        straight = {k: v.copy() for k, v in params.items()}
        _run(fo.Adam(straight, lr=1e-3, **options), grads)
        half = {k: v.copy() for k, v in params.items()}
        saved = _run(fo.Adam(half, lr=1e-3, **options), grads[:3]).state_dict()
        second = fo.Adam(half, lr=1e-3, **layout)
        second.load_state_dict(saved)
        assert (second.seed, second.stochastic_rounding) == (12345, stochastic_rounding)
        _run(second, grads[3:])
        assert all((bits(half[k]) == bits(straight[k])).all() for k in params)


def test_loading_takes_the_saved_state_rounding_of_the_default_bfloat16_state():
    """A bfloat16 parameter's state is bfloat16 by default (state_dtype None): a dict saved with
    state_rounding="stochastic" sets it on the loader too, and the resumed run is exact."""
    params, grads = _resume_problem()
    options = dict(state_rounding="stochastic", seed=3)
    straight = {k: v.copy() for k, v in params.items()}
    whole = _run(fo.Adam(straight, lr=1e-3, **options), grads)
    half = {k: v.copy() for k, v in params.items()}
    saved = _run(fo.Adam(half, lr=1e-3, **options), grads[:3]).state_dict()
    second = fo.Adam(half, lr=1e-3)
    second.load_state_dict(saved)
    assert (second.state_rounding, second.seed) == ("stochastic", 3)
    _run(second, grads[3:])
    assert all((bits(half[k]) == bits(straight[k])).all() for k in params)
    for name in params:
        for slot, array in whole.state[name].items():
            assert (bits(second.state[name][slot]) == bits(array)).all()


@pytest.mark.parametrize("state_dtype", [None, "float32", "int8"])
def test_a_float32_checkpoint_loads_into_bfloat16_parameters_and_back(rng, state_dtype):
    """The state of float32 parameters (float32) loads beside the same parameters in bfloat16,
    rounded to the loader's layout, and the state of bfloat16 parameters (bfloat16 by default)
    loads beside float32 ones, widened exactly: switching a model's width keeps its moments."""
    p32, g32 = rng.standard_normal(5000).astype(np.float32), rng.standard_normal(5000).astype(np.float32)
    wide_opt = fo.Adam([p32.copy()], lr=1e-3)
    wide_opt.step([g32])
    narrow = fo.Adam([p32.astype(BF16)], lr=1e-3, **({} if state_dtype is None else {"state_dtype": state_dtype}))
    narrow.load_state_dict(wide_opt.state_dict())
    exp_avg = wide_opt.state[0]["exp_avg"]
    if state_dtype == "float32":
        assert (narrow.state[0]["exp_avg"] == exp_avg).all()
    elif state_dtype is None:
        assert (bits(narrow.state[0]["exp_avg"]) == nearest_even(exp_avg)).all()
    narrow.step([g32.astype(BF16)])
    back = fo.Adam([p32.copy()], lr=1e-3)
    default = fo.Adam([p32.astype(BF16)], lr=1e-3)
    default.step([g32.astype(BF16)])
    back.load_state_dict(default.state_dict())
    assert back.state[0]["exp_avg"].dtype == np.float32
    assert (back.state[0]["exp_avg"] == widened(bits(default.state[0]["exp_avg"]))).all()


def test_lookahead_says_how_to_restart_the_float32_slow_weights_of_a_bfloat16_parameter():
    w = np.ones(8, BF16)
    opt = fo.Lookahead(fo.Adam({"w": w}, lr=1e-3), k=2)
    opt.step({"w": np.ones(8, BF16)})
    opt.step({"w": np.ones(8, BF16)})
    del opt.slow["w"]
    with pytest.raises(ValueError, match=r"param.astype\(np.float32\) for a bfloat16 parameter"):
        opt.step({"w": np.ones(8, BF16)})
    opt.slow["w"] = w.astype(np.float32)
    opt.step({"w": np.ones(8, BF16)})


# ---- 5. the stall that stochastic rounding cures -----------------------------------------------
def _loss(w: np.ndarray, target: np.ndarray) -> float:
    return 0.5 * float(np.sum((wide(w).astype(np.float64) - target) ** 2))


def _descend(make, w0, target, steps, stochastic_rounding):
    w = w0.copy()
    opt = make([w], stochastic_rounding=stochastic_rounding, seed=17)
    for _ in range(steps):
        g = wide(w).astype(np.float64) - target
        opt.step([g.astype(np.float32).astype(BF16)])
    return _loss(w, target)


@pytest.mark.parametrize(("name", "make", "steps"), [
    ("sgd", lambda ps, **o: fo.SGD(ps, lr=1e-2, **o), 400),
    ("adam", lambda ps, **o: fo.Adam(ps, lr=1e-3, **o), 300),
], ids=["sgd", "adam"])
def test_stochastic_rounding_moves_weights_that_nearest_leaves_stalled(name, make, steps):
    """Minimise ½‖w − target‖² from w in [1, 2) (bfloat16 ulp 2^-7) with the target 0.05 away: every
    step moves an element by under 2^-9, under half an ulp. Rounded to nearest the weights never
    move (the loss stays); rounded stochastically they follow in expectation: the loss ends under
    1/5 of nearest's."""
    rng = np.random.default_rng(3)
    w0 = as_bf16(rng.uniform(1.1, 1.9, 4096))
    target = wide(w0).astype(np.float64) + rng.choice([-0.05, 0.05], 4096)
    start = _loss(w0, target)
    nearest = _descend(make, w0, target, steps, False)
    drawn = _descend(make, w0, target, steps, True)
    assert nearest >= 0.99 * start, (start, nearest)  # stalled
    assert drawn <= nearest / 5, (start, nearest, drawn)


# ---- 6. a mixed model ------------------------------------------------------------------------
MIXED_RULES = [
    ("adam", lambda ps, **o: fo.Adam(ps, lr=1e-3, **o)),
    ("sgd_momentum", lambda ps, **o: fo.SGD(ps, lr=1e-2, momentum=0.9, nesterov=True, **o)),
    ("lamb", lambda ps, **o: fo.LAMB(ps, lr=1e-3, weight_decay=0.01, **o)),
    ("lars", lambda ps, **o: fo.LARS(ps, lr=0.1, momentum=0.9, **o)),
    ("lion", lambda ps, **o: fo.Lion(ps, lr=1e-4, **o)),
    ("adagrad", lambda ps, **o: fo.Adagrad(ps, lr=0.01, **o)),
    ("rmsprop", lambda ps, **o: fo.RMSprop(ps, lr=1e-3, momentum=0.9, centered=True, **o)),
]


def _mixed_problem():
    rng = np.random.default_rng(13)
    f32 = rng.standard_normal((33, 31)).astype(np.float32)
    b16 = as_bf16(rng.standard_normal(70001))
    f64 = rng.standard_normal(1025)
    grads = [[rng.standard_normal(f32.shape).astype(np.float32), as_bf16(rng.standard_normal(b16.shape)),
              rng.standard_normal(f64.shape)] for _ in range(4)]
    return [f32, b16, f64], grads


@pytest.mark.parametrize("state_dtype", [None, "float32"])
@pytest.mark.parametrize(("name", "make"), MIXED_RULES, ids=[n for n, _ in MIXED_RULES])
def test_mixed_model_steps_each_parameter_as_alone(name, make, state_dtype):
    """float32, bfloat16 and float64 parameters in one optimizer: each ends as an optimizer holding
    it alone leaves it, bit for bit, state included: nearest rounding for the lone bfloat16
    parameter; stochastic rounding compared with the float32 twin drawn at the bfloat16 parameter's
    position, 1."""
    layout = {} if state_dtype is None else {"state_dtype": state_dtype}
    for stochastic_rounding in (False, True):
        params, grads = _mixed_problem()
        mixed = [p.copy() for p in params]
        opt = make(mixed, stochastic_rounding=stochastic_rounding, seed=21, **layout)
        _run(opt, grads)
        assert [p.dtype for p in mixed] == [np.float32, BF16, np.float64]
        state = opt.state_dict()["state"]
        for i in (0, 2):
            alone = [params[i].copy()]
            lone = _run(make(alone, **layout), [[g[i]] for g in grads])
            assert alone[0].tobytes() == mixed[i].tobytes(), i
            assert _flat(lone.state_dict()["state"][0]) == _flat(state[i]), i
        b16 = [params[1].copy()]
        if not stochastic_rounding:
            lone = _run(make(b16, stochastic_rounding=False, **layout), [[g[1]] for g in grads])
            assert (bits(b16[0]) == bits(mixed[1])).all()
            assert _flat(lone.state_dict()["state"][0]) == _flat(state[1])
        else:  # its position in the mixed optimizer is 1
            f = wide(b16[0])
            twin = make([f], seed=21, **({"state_dtype": "bfloat16"} if state_dtype is None else {}))
            for t, g in enumerate(grads, 1):
                twin.step([wide(g[1])])
                round_in_place(f, stochastic_param(f, 21, 1, t))
            assert widened(bits(mixed[1])).tobytes() == f.tobytes()
            assert _flat(twin.state_dict()["state"][0]) == _flat(state[1])


def test_float64_parameters_beside_bfloat16_ones_cannot_take_bfloat16_state():
    with pytest.raises(ValueError, match="float32"):
        fo.Adam([np.zeros(3, BF16), np.zeros(3)], state_dtype="bfloat16")


# ---- 7. the fused options ---------------------------------------------------------------------
@pytest.mark.parametrize("max_grad_norm", [0.5, 1e9])
@pytest.mark.parametrize("state", [None, "float32"])
def test_clipping_measures_the_widened_gradients(max_grad_norm, state):
    """max_grad_norm with bfloat16 gradients: the step equals the float32 run's with the widened
    gradients (bit for bit, nearest rounding), and the norm it reports is theirs."""
    rng = np.random.default_rng(17)
    params, grads = bf16_problem(rng, [(70001,), (33, 31), (7,)], 3)
    norms = []

    def make(ps, **o):
        opt = fo.Adam(ps, lr=1e-3, max_grad_norm=max_grad_norm, **o)
        original = opt.step

        def step(g):  # record what each step reports
            info = original(g)
            norms.append((g[0].dtype, info.grad_norm))
            return info
        opt.step = step
        return opt

    bopt, fopt, _, _ = twin_runs(make, params, grads, state=state)
    assert_same_state(bopt, fopt)
    by_dtype = {BF16: [n for d, n in norms if d == BF16], np.float32: [n for d, n in norms if d == np.float32]}
    assert by_dtype[BF16] == by_dtype[np.float32] and len(by_dtype[BF16]) == 3
    for norm, g in zip(by_dtype[BF16], grads):
        want = np.sqrt(sum(np.sum(wide(x).astype(np.float64) ** 2) for x in g))
        assert norm == pytest.approx(want, rel=1e-6)
        if max_grad_norm < 1:
            assert norm > 10 * max_grad_norm  # the clipping acts


def test_grad_scale_on_bfloat16_gradients(rng):
    """grad_scale=4 on bfloat16 gradients is the step on gradients divided by 4 (exact in
    bfloat16), and the float32 run's with the same scale."""
    params, grads = bf16_problem(rng, [(1025,), (33, 31)], 3)
    quarter = [[as_bf16(wide(x) / np.float32(4)) for x in g] for g in grads]
    a = [p.copy() for p in params]
    b = [p.copy() for p in params]
    oa = fo.Adam(a, lr=1e-3, seed=2)
    ob = fo.Adam(b, lr=1e-3, seed=2)
    for g, q in zip(grads, quarter):
        oa.step(g, grad_scale=4.0)
        ob.step(q)
    assert _all_bytes(oa, a) == _all_bytes(ob, b)
    c = [p.copy() for p in params]

    class Scaled:  # the twin runner's optimizer interface with grad_scale
        def __init__(self, ps, **o):
            self.opt = fo.Adam(ps, lr=1e-3, **o)

        def step(self, g):
            return self.opt.step(g, grad_scale=4.0)

        def state_dict(self):
            return self.opt.state_dict()

    bopt, fopt, _, _ = twin_runs(Scaled, c, grads)
    assert _state_leaves(bopt) == _state_leaves(fopt)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_skip_nonfinite_with_a_nonfinite_bfloat16_gradient_changes_nothing(rng, bad):
    params, grads = bf16_problem(rng, [(1025,), (7,)], 2)
    opt = fo.Adam(params, lr=1e-2, skip_nonfinite=True, ema_decay=0.9, seed=4)
    opt.step(grads[0])
    before = _flat(opt.state_dict()), [bits(p).copy() for p in params], [e.copy() for e in opt.ema.values()]
    g = [x.copy() for x in grads[1]]
    g[0][17] = bad
    info = opt.step(g)
    assert info.skipped is True
    after = _flat(opt.state_dict()), [bits(p) for p in params], list(opt.ema.values())
    assert after[0] == before[0]
    assert all((x == y).all() for x, y in zip(after[1], before[1]))
    assert all(x.tobytes() == y.tobytes() for x, y in zip(after[2], before[2]))
    assert opt.step(grads[1]).skipped is False


@pytest.mark.parametrize("last_in_step", [False, True])
def test_accumulated_bfloat16_gradients_are_summed_in_float32(last_in_step):
    """accumulate() of three bfloat16 micro-batches then step() (or two, then step(third)): float32
    buffers, and the step is the float32 twin's step on the float32 sum, rounded."""
    rng = np.random.default_rng(19)
    params, micro = bf16_problem(rng, [(1025,), (33, 31), (5000,)], 3)
    fparams = [wide(p) for p in params]
    opt = fo.Adam(params, lr=1e-3, stochastic_rounding=False)
    twin = fo.Adam(fparams, lr=1e-3, state_dtype="bfloat16")
    for _ in range(2):  # two rounds: the buffers are cleared by each step
        for g in micro[:2]:
            opt.accumulate(g)
        saved = opt.state_dict()["accumulated"]
        assert saved["micro_batches"] == 2
        assert all(a.dtype == np.float32 for a in saved["arrays"].values())
        assert _about(opt.memory()["accumulated"], 4, params)
        if last_in_step:
            opt.step(micro[2])
        else:
            opt.accumulate(micro[2])
            opt.step()
        total = [(wide(a) + wide(b)) + wide(c) for a, b, c in zip(*micro)]
        twin.step(total)
        for p in fparams:
            round_in_place(p, nearest_even(p))
        for b, f in zip(params, fparams):
            assert widened(bits(b)).tobytes() == f.ravel(order="K").tobytes()
        assert _state_leaves(opt) == _state_leaves(twin)
        assert opt.pending == 0
        micro = [[as_bf16(rng.standard_normal(x.shape)) for x in g] for g in micro]


@pytest.mark.parametrize("decay", [0.9, 0.3])
def test_ema_is_float32_and_lerps_toward_the_stored_bfloat16_values(rng, decay):
    """ema_decay with bfloat16 parameters: the EMA arrays are float32, start as the widened
    parameters, and after each step move toward the parameter as stored (rounded), as torch's lerp
    in float32: e + w·(p − e) for w < ½, p − (p − e)·(1 − w) else, w = 1 − decay."""
    params, grads = bf16_problem(rng, [(1025,), (33, 31)], 4)
    opt = fo.AdamW(params, lr=1e-2, ema_decay=decay, seed=6)
    ema = [wide(p) for p in params]
    assert all(e.dtype == np.float32 for e in opt.ema.values())
    assert all(e.tobytes() == want.tobytes() for e, want in zip(opt.ema.values(), ema))
    w = np.float32(1 - decay)
    for g in grads:
        opt.step(g)
        for e, p in zip(ema, params):
            stored = wide(p)
            if w < 0.5:
                e += w * (stored - e)
            else:
                np.copyto(e, stored - (stored - e) * (np.float32(1) - w))
        for name, want in zip(opt.ema, ema):
            got = opt.ema[name]
            assert got.dtype == np.float32 and got.tobytes() == want.tobytes(), name
    assert _about(opt.memory()["ema"], 4, params)
    assert any((wide(p) != e).any() for p, e in zip(params, ema))  # the EMA is not the parameter


# ---- 8. bad input ----------------------------------------------------------------------------
def _stepped():
    rng = np.random.default_rng(29)
    w, b = as_bf16(rng.standard_normal((4, 5))), rng.standard_normal(3).astype(np.float32)
    opt = fo.Adam({"w": w, "b": b}, lr=1e-2)
    opt.step({"w": as_bf16(rng.standard_normal((4, 5))), "b": rng.standard_normal(3).astype(np.float32)})
    return opt, w, b


def _snapshot(opt, w, b):
    return bits(w).tobytes(), b.tobytes(), _flat(opt.state_dict()), \
        [a.view(np.uint8).tobytes() for s in opt.state.values() for a in s.values()]


GOOD_W, GOOD_B = np.ones((4, 5), BF16), np.ones(3, np.float32)
BAD_GRADS = [
    ("float32 grad for bf16 param", {"w": np.ones((4, 5), np.float32), "b": GOOD_B}, r"grads\['w'\]"),
    ("bf16 grad for float32 param", {"w": GOOD_W, "b": np.ones(3, BF16)}, r"grads\['b'\]"),
    ("uint16 grad for bf16 param", {"w": np.ones((4, 5), np.uint16), "b": GOOD_B}, r"grads\['w'\]"),
    ("float64 grad for bf16 param", {"w": np.ones((4, 5)), "b": GOOD_B}, r"grads\['w'\]"),
]


@pytest.mark.parametrize("how", ["step", "accumulate"])
@pytest.mark.parametrize(("what", "grads", "message"), BAD_GRADS, ids=[w for w, _, _ in BAD_GRADS])
def test_bad_gradients_are_refused_and_nothing_changes(what, grads, message, how):
    opt, w, b = _stepped()
    before = _snapshot(opt, w, b)
    with pytest.raises(TypeError, match=message):
        getattr(opt, how)(grads)
    assert _snapshot(opt, w, b) == before
    assert opt.pending == 0


def test_uint16_parameters_are_refused_with_the_way_to_bfloat16():
    for make in (lambda p: fo.Adam({"w": p}), lambda p: fo.SGD([{"params": {"w": p}}], lr=0.1)):
        p = np.arange(6, dtype=np.uint16)
        with pytest.raises(TypeError, match=r"params\['w'\].*ml_dtypes\.bfloat16.*fastoptim\[bf16\]"):
            make(p)
        assert (p == np.arange(6)).all()
    opt, w, b = _stepped()
    before = _snapshot(opt, w, b)
    with pytest.raises(TypeError, match=r"params\['u'\].*ml_dtypes"):
        opt.add_param_group({"params": {"u": np.zeros(4, np.uint16)}})
    assert _snapshot(opt, w, b) == before
    assert len(opt.param_groups) == 1


def test_bfloat16_state_array_assigned_to_a_float32_state_slot_is_refused():
    """state_dtype="float32" for a bfloat16 parameter: assigning bfloat16 zeros to a slot is refused
    at the step, changing nothing; float32 zeros are taken."""
    rng = np.random.default_rng(2)
    w = as_bf16(rng.standard_normal(10))
    opt = fo.SGD({"w": w}, lr=0.1, momentum=0.9, state_dtype="float32", stochastic_rounding=False)
    opt.step({"w": as_bf16(rng.standard_normal(10))})
    assert opt.state["w"]["momentum_buffer"].dtype == np.float32
    opt.state["w"]["momentum_buffer"] = np.zeros(10, BF16)
    before = bits(w).tobytes()
    with pytest.raises(TypeError, match="float32"):
        opt.step({"w": np.ones(10, BF16)})
    assert bits(w).tobytes() == before
    opt.state["w"]["momentum_buffer"] = np.zeros(10, np.float32)
    opt.step({"w": np.ones(10, BF16)})
    assert (opt.state["w"]["momentum_buffer"] == 1).all()


# ---- 9. without ml_dtypes ----------------------------------------------------------------------
def test_without_ml_dtypes_uint16_parameters_are_refused_naming_ml_dtypes():
    code = """
import sys
sys.modules["ml_dtypes"] = None
import numpy as np
import fastoptim as fo
assert fo.bfloat16_dtype() == np.uint16
w = np.zeros(3, np.uint16)
try:
    fo.Adam({"w": w})
except TypeError as e:
    print("REFUSED:", e)
fo.Adam([np.zeros(3, np.float32)], state_dtype="bfloat16").step([np.ones(3, np.float32)])
print("OK")
"""
    done = run_python(code)
    assert done.returncode == 0, done.stderr
    refused = [line for line in done.stdout.splitlines() if line.startswith("REFUSED:")]
    assert len(refused) == 1, done.stdout
    assert "params['w']" in refused[0] and "ml_dtypes" in refused[0] and "fastoptim[bf16]" in refused[0]
    assert done.stdout.rstrip().endswith("OK")


# ---- 10. Lookahead ---------------------------------------------------------------------------
@pytest.mark.parametrize("stochastic_rounding", [True, False])
def test_lookahead_keeps_float32_slow_weights_and_syncs_to_their_nearest(rng, stochastic_rounding):
    """Lookahead(Adam) on bfloat16 parameters, k=2: the slow weights are float32; the inner steps
    are a plain Adam's on the same arrays; each synchronisation is slow + α·(fast − slow) in float32
    and the parameter its nearest bfloat16."""
    params, grads = bf16_problem(rng, [(1025,), (33, 31)], 6)
    inner = fo.Adam({f"p{i}": p for i, p in enumerate(params)}, lr=1e-2, seed=3,
                    stochastic_rounding=stochastic_rounding)
    look = fo.Lookahead(inner, k=2, alpha=0.3)
    shadow_params = [p.copy() for p in params]
    shadow = fo.Adam({f"p{i}": p for i, p in enumerate(shadow_params)}, lr=1e-2, seed=3,
                     stochastic_rounding=stochastic_rounding)
    slow = [wide(p) for p in params]
    assert all(look.slow[f"p{i}"].dtype == np.float32 for i in range(2))
    for t, g in enumerate(grads, 1):
        look.step({f"p{i}": x for i, x in enumerate(g)})
        shadow.step({f"p{i}": x for i, x in enumerate(g)})
        if t % 2 == 0:
            for i, (s, fast) in enumerate(zip(slow, shadow_params)):
                s += np.float32(0.3) * (wide(fast) - s)
                np.copyto(fast, as_bf16(s))
                assert look.slow[f"p{i}"].dtype == np.float32
                assert look.slow[f"p{i}"].tobytes() == s.tobytes(), (t, i)
                assert (bits(params[i]) == nearest_even(s)).all(), (t, i)
        for p, q in zip(params, shadow_params):
            assert (bits(p) == bits(q)).all(), t
    saved = look.state_dict()
    assert all(v.dtype == np.float32 for v in saved["slow"].values())
    again = fo.Lookahead(fo.Adam({f"p{i}": p.copy() for i, p in enumerate(params)}, lr=1e-2), k=2, alpha=0.3)
    again.load_state_dict(saved)
    assert all(again.slow[n].tobytes() == look.slow[n].tobytes() for n in look.slow)


# ---- 11. memory ------------------------------------------------------------------------------
def test_bfloat16_parameters_default_state_takes_half_the_bytes():
    sizes = [100_000, 50_000, 3_000]
    memory = {}
    for state in (None, "float32"):
        opt = fo.AdamW([np.zeros(n, BF16) for n in sizes], **_state_options(state, True))
        opt.step([np.ones(n, BF16) for n in sizes])
        memory[state] = opt.memory()["state"]
    assert 8.0 <= memory["float32"] / sum(sizes) <= 8.05
    assert 4.0 <= memory[None] / sum(sizes) <= 4.05
