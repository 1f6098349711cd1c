"""bfloat16 state: the format's rounding bit for bit, stochastic rounding's generator, exact
resume, conversions between layouts, refusals that change nothing, memory, and uint16 state
without ml_dtypes. The references here are written from the definitions, not from fastoptim."""

from __future__ import annotations

import copy

import numpy as np
import pytest

import fastoptim as fo
from problems import make_problem

M64 = 2**64 - 1
# Every finite bfloat16 >= 0, in order: entry i is the value of bit pattern i.
_POSITIVE = (np.arange(0x7F80, dtype=np.uint32) << np.uint32(16)).view(np.float32).astype(np.float64)


def bits(array: np.ndarray) -> np.ndarray:
    """The uint16 bit patterns of a bfloat16 array (either layout), in memory order: a copy."""
    return np.asarray(array).view(np.uint16).flatten(order="K")


def widened(patterns: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns as float32: the top half of a float32."""
    return (np.asarray(patterns).astype(np.uint32) << np.uint32(16)).view(np.float32)


def nearest_even(values: np.ndarray) -> np.ndarray:
    """float32 values rounded to nearest bfloat16, ties to even, from the format's definition:
    the neighbours below and above, the nearer by exact float64 distance; past the largest
    finite value by half an ulp or more, infinity (the step after it counts as 2**128)."""
    x = np.asarray(values, np.float32).ravel(order="K")
    with np.errstate(invalid="ignore"):  # signalling NaNs
        mag = np.abs(x.astype(np.float64))
    out = np.zeros(x.size, np.uint16)
    finite = np.isfinite(mag)
    lo = np.searchsorted(_POSITIVE, mag[finite], side="right") - 1
    above = np.where(lo + 1 < _POSITIVE.size, _POSITIVE[np.minimum(lo + 1, _POSITIVE.size - 1)], 2.0**128)
    down, up = mag[finite] - _POSITIVE[lo], above - mag[finite]
    out[finite] = lo + ((up < down) | ((up == down) & (lo % 2 == 1)))
    out[np.isinf(mag)] = 0x7F80
    out[np.isnan(mag)] = 0x7FC0
    return out | np.where(np.signbit(x), 0x8000, 0).astype(np.uint16)


def _mix64(x: int) -> int:
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def _mix32(x: np.ndarray) -> np.ndarray:
    x = (x ^ (x >> np.uint32(16))) * np.uint32(0x7FEB352D)
    x = (x ^ (x >> np.uint32(15))) * np.uint32(0x846CA68B)
    return x ^ (x >> np.uint32(16))


def stochastic(values: np.ndarray, seed: int, position: int, step: int, slot: int) -> np.ndarray:
    """float32 values rounded stochastically as bfloat16.hpp defines it (arrays under 2**32
    elements: the index's high 32 bits are 0)."""
    u = np.asarray(values, np.float32).ravel(order="K").view(np.uint32)
    round_key = _mix64(_mix64(_mix64((seed + 0x9E3779B97F4A7C15) & M64) ^ position) ^ step)
    key = _mix64(_mix64(round_key ^ (slot // 2)) ^ 0)  # one draw per element for each pair of slots
    index = np.arange(u.size, dtype=np.uint32)
    h = _mix32(_mix32(index ^ np.uint32(key & 0xFFFFFFFF)) ^ np.uint32(key >> 32))
    r = h & np.uint32(0xFFFF) if slot % 2 == 0 else h >> np.uint32(16)
    u = np.where(np.isnan(u.view(np.float32)), (u & np.uint32(0x80000000)) | np.uint32(0x7FC00000), u)
    return ((u + r) >> np.uint32(16)).astype(np.uint16)


def stochastic_param(values: np.ndarray, seed: int, position: int, step: int) -> np.ndarray:
    """float32 values rounded stochastically as a bfloat16 parameter (bfloat16.hpp): pair 2's
    key, elements 2j and 2j + 1 taking the low and the high 16 bits of h(j)."""
    u = np.asarray(values, np.float32).ravel(order="K").view(np.uint32)
    round_key = _mix64(_mix64(_mix64((seed + 0x9E3779B97F4A7C15) & M64) ^ position) ^ step)
    key = _mix64(_mix64(round_key ^ 2) ^ 0)
    index = np.arange(u.size, dtype=np.uint32)
    h = _mix32(_mix32((index >> np.uint32(1)) ^ np.uint32(key & 0xFFFFFFFF)) ^ np.uint32(key >> 32))
    r = np.where(index % 2 == 0, h & np.uint32(0xFFFF), h >> np.uint32(16))
    u = np.where(np.isnan(u.view(np.float32)), (u & np.uint32(0x80000000)) | np.uint32(0x7FC00000), u)
    return ((u + r) >> np.uint32(16)).astype(np.uint16)


def _momentum_bits(grads, **options) -> list[np.ndarray]:
    """The bits of SGD's momentum buffers after one step on `grads`: the rounding of each grad."""
    params = [np.zeros_like(g) for g in grads]
    opt = fo.SGD(params, lr=0.01, momentum=0.9, state_dtype="bfloat16", **options)
    opt.step(grads)
    return [bits(opt.state[i]["momentum_buffer"]) for i in range(len(grads))]


def _special_values(rng) -> np.ndarray:
    """Many magnitudes, exact ties (even and odd), near-ties, subnormals, zeros, infinities,
    NaNs, values near float32's largest, and random bit patterns."""
    random = rng.standard_normal(3000) * 10.0 ** rng.uniform(-45, 38, 3000)
    high = rng.integers(0, 0x7F80, 2000, dtype=np.uint32) << np.uint32(16)
    ties = np.concatenate([high | 0x8000, high | 0x7FFF, high | 0x8001, high | 0x0001, high | 0xFFFF])
    edges = np.array([0x7F7FFFFF, 0x7F7F8000, 0x7F7F7FFF, 0x7F7F8001, 0x7F7E8000, 0x00000001, 0x00008000,
                      0x00018000, 0x0000FFFF, 0x007FFFFF, 0x00800000, 0x7FC00000, 0x7F800001, 0x7FBFFFFF],
                     np.uint32)
    patterns = np.concatenate([ties, edges, rng.integers(0, 2**32, 4000, dtype=np.uint32)])
    signs = np.where(rng.integers(0, 2, patterns.size) == 1, 0x80000000, 0).astype(np.uint32)
    named = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 1e-40, -1e-40, 1e-45, 3.4e38, -3.4e38])
    with np.errstate(over="ignore"):
        return np.concatenate([random.astype(np.float32), (patterns | signs).view(np.float32),
                               (patterns | signs ^ np.uint32(0x80000000)).view(np.float32), named.astype(np.float32)])


def test_nearest_rounding_matches_the_format_definition(rng):
    """The momentum buffer of a first SGD step is g rounded to nearest even, bit for bit, on
    every kind of float32 (NaN becomes the quiet NaN of its sign); ml_dtypes agrees."""
    g = _special_values(rng)
    want = nearest_even(g)
    assert np.isnan(g).sum() > 20 and (want[np.isnan(g)] & 0x7FFF == 0x7FC0).all()
    assert want[g == np.float32(np.finfo(np.float32).max)][0] == 0x7F80  # overflows to inf
    with np.errstate(invalid="ignore", over="ignore"):
        got = _momentum_bits([g])[0]
    mismatch = np.flatnonzero(got != want)
    assert mismatch.size == 0, [(hex(g.view(np.uint32)[i]), hex(want[i]), hex(got[i])) for i in mismatch[:5]]
    ml_dtypes = pytest.importorskip("ml_dtypes")
    with np.errstate(invalid="ignore"):
        assert (bits(g.astype(ml_dtypes.bfloat16)) == want).all()


@pytest.mark.parametrize("seed", [0, 2**64 - 3])
def test_stochastic_rounding_matches_the_generator(rng, seed):
    """Two parameters (one in Fortran order: indices in memory order), steps 1 and 2, two
    seeds: the stored bits are the generator's, bit for bit, and a seed changes them."""
    g1 = [(rng.standard_normal((13, 97)) * 10.0 ** rng.integers(-30, 30, (13, 97))).astype(np.float32),
          np.asfortranarray(rng.standard_normal((37, 41)), np.float32)]
    g1[0][0, :3] = [0.0, -0.0, 1e-40]
    g2 = [rng.standard_normal(g.shape).astype(np.float32) for g in g1]
    g2[1] = np.asfortranarray(g2[1])
    params = [np.zeros_like(g) for g in g1]
    opt = fo.SGD(params, lr=0.01, momentum=0.75, state_dtype="bfloat16", state_rounding="stochastic", seed=seed)
    opt.step(g1)
    first = [bits(opt.state[i]["momentum_buffer"]) for i in range(2)]
    for position, g in enumerate(g1):
        assert (first[position] == stochastic(g, seed, position, 1, 0)).all()
        assert (first[position] != nearest_even(g)).any()
    opt.step(g2)
    for position, g in enumerate(g2):
        buf = np.float32(0.75) * widened(first[position]) + g.ravel(order="K")
        assert (bits(opt.state[position]["momentum_buffer"]) == stochastic(buf, seed, position, 2, 0)).all()
    assert (first[0] != _momentum_bits(g1, state_rounding="stochastic", seed=seed ^ 1)[0]).any()
    special = np.array([np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0], np.float32)
    with np.errstate(invalid="ignore"):
        assert (_momentum_bits([special], state_rounding="stochastic", seed=seed)[0]
                == [0x7FC0, 0xFFC0, 0x7F80, 0xFF80, 0, 0x8000]).all()


def test_stochastic_rounding_draws_both_halves_for_a_pair_of_slots(rng):
    """Adam's exp_avg (slot 0) and exp_avg_sq (slot 1) share one draw per element: the low 16
    bits round the first, the high 16 bits the second."""
    g = rng.uniform(0.5, 2.0, 4099).astype(np.float32) * rng.choice([-1, 1], 4099).astype(np.float32)
    opt = fo.Adam([np.zeros_like(g)], lr=0.0, betas=(0.9, 0.999), state_dtype="bfloat16",
                  state_rounding="stochastic", seed=11)
    opt.step([g])
    m = np.float32(1 - 0.9) * g  # β·0 + (1 − β)·g, each product rounded once, as the kernel
    v = np.float32(1 - 0.999) * (g * g)
    assert (bits(opt.state[0]["exp_avg"]) == stochastic(m, 11, 0, 1, 0)).all()
    assert (bits(opt.state[0]["exp_avg_sq"]) == stochastic(v, 11, 0, 1, 1)).all()
    assert (stochastic(v, 11, 0, 1, 1) != stochastic(v, 11, 0, 1, 0)).any()


@pytest.mark.parametrize("fraction", [3 / 256, 0.1, 0.25, 0.5, 0.75, 0.9])
def test_stochastic_rounding_rounds_up_with_the_right_probability(fraction):
    """1e6 copies of x between neighbours lo < x < hi: each lands on lo or hi, and the share on
    hi is (x - lo) / (hi - lo) within 1% relative (or 4 standard deviations, for 3/256)."""
    lo_bits = 0x3FA3  # 1.2734375; the gap is 2**-7
    lo, hi = (float(v) for v in widened(np.array([lo_bits, lo_bits + 1], np.uint16)))
    x = np.float32(lo + fraction * 2.0**-7)
    p = (float(x) - lo) / (hi - lo)
    assert lo < x < hi
    n = 1_000_000
    got = _momentum_bits([np.full(n, x, np.float32)], state_rounding="stochastic", seed=11)[0]
    assert set(np.unique(got)) == {lo_bits, lo_bits + 1}
    share = np.count_nonzero(got == lo_bits + 1) / n
    assert abs(share - p) <= max(0.01 * p, 4 * np.sqrt(p * (1 - p) / n)), (share, p)


def _run(cls, kwargs, params, grads, opt=None):
    opt = opt or cls(params, **kwargs)
    for g in grads:
        opt.step(g)
    return opt


def _bytes(opt, params) -> list[bytes]:
    return [p.tobytes() for p in params] + [a.tobytes() for s in opt.state.values() for a in s.values()]


CASES = [(fo.Adam, dict(lr=1e-2)), (fo.SGD, dict(lr=0.05, momentum=0.9)), (fo.Lion, dict(lr=1e-3))]


@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
@pytest.mark.parametrize(("cls", "kwargs"), CASES, ids=lambda v: getattr(v, "__name__", ""))
def test_resume_is_exact_and_only_stochastic_depends_on_the_seed(rng, cls, kwargs, rounding):
    """6 steps straight == 3 steps, state_dict, a fresh optimizer (default rounding and seed)
    loading it, 3 more steps: the same bytes. The seed moves a stochastic run only."""
    shapes = [(5, 3), (1025,), ()]
    params, grads = make_problem(rng, shapes, np.float32, 6)
    options = dict(kwargs, state_dtype="bfloat16", state_rounding=rounding, seed=7)
    straight = [p.copy() for p in params]
    whole = _run(cls, options, straight, grads)
    half = [p.copy() for p in params]
    saved = _run(cls, options, half, grads[:3]).state_dict()
    assert saved["state_format"] == {"state_dtype": "bfloat16", "state_rounding": rounding, "seed": 7}
    resumed = [p.copy() for p in half]
    second = cls(resumed, **kwargs, state_dtype="bfloat16")
    second.load_state_dict(saved)
    assert (second.state_rounding, second.seed) == (rounding, 7)
    assert _bytes(_run(cls, options, resumed, grads[3:], second), resumed) == _bytes(whole, straight)
    other = [p.copy() for p in params]
    differs = _bytes(_run(cls, dict(options, seed=8), other, grads), other) != _bytes(whole, straight)
    assert differs == (rounding == "stochastic")


def _adam_state_dict(rng, **options):
    params = {"w": rng.standard_normal((4, 33)).astype(np.float32), "b": rng.standard_normal(7).astype(np.float32)}
    opt = fo.Adam({k: v.copy() for k, v in params.items()}, lr=1e-2, **options)
    for _ in range(2):
        opt.step({k: rng.standard_normal(v.shape).astype(np.float32) for k, v in params.items()})
    return params, opt.state_dict()


def test_bfloat16_state_loads_into_float32_state_exactly(rng):
    """A bfloat16 state dict (saved as bfloat16) widens exactly into a float32-state optimizer."""
    params, sd = _adam_state_dict(rng, state_dtype="bfloat16", state_rounding="stochastic", seed=3)
    assert sd["state"]["w"]["exp_avg"].dtype == fo.bfloat16_dtype()  # ml_dtypes' bfloat16, or uint16 without it
    opt = fo.Adam(params, lr=1e-2)
    opt.load_state_dict(sd)
    for name in params:
        for slot in ("exp_avg", "exp_avg_sq"):
            got = opt.state[name][slot]
            assert got.dtype == np.float32
            assert got.ravel().tobytes() == widened(bits(sd["state"][name][slot])).tobytes()


def test_float32_state_loads_into_bfloat16_state_rounded_to_nearest(rng):
    """A float32 state dict loads into a bfloat16-state optimizer as its nearest-even rounding."""
    params, sd = _adam_state_dict(rng)
    opt = fo.Adam(params, lr=1e-2, state_dtype="bfloat16", state_rounding="stochastic")
    opt.load_state_dict(sd)
    for name in params:
        for slot in ("exp_avg", "exp_avg_sq"):
            assert (bits(opt.state[name][slot]) == nearest_even(sd["state"][name][slot])).all()


def test_uint16_state_dict_loads_to_the_same_bits_and_takes_its_seed(rng):
    """The same bfloat16 state dict with uint16 arrays loads to the same bits; the loaded
    optimizer takes rounding and seed from the dict (seed 1 at construction, 5 saved)."""
    params, sd = _adam_state_dict(rng, state_dtype="bfloat16", state_rounding="stochastic", seed=5)
    as_uint16 = {**sd, "state": {n: {k: v.view(np.uint16) if isinstance(v, np.ndarray) else v for k, v in s.items()}
                                 for n, s in sd["state"].items()}}
    loaded = []
    for d in (sd, as_uint16):
        opt = fo.Adam({k: v.copy() for k, v in params.items()}, lr=1e-2, state_dtype="bfloat16", seed=1)
        opt.load_state_dict(d)
        assert (opt.state_dtype, opt.state_rounding, opt.seed) == ("bfloat16", "stochastic", 5)
        loaded.append(opt)
    for name in params:
        for slot in ("exp_avg", "exp_avg_sq"):
            assert all((bits(opt.state[name][slot]) == bits(sd["state"][name][slot])).all() for opt in loaded)


@pytest.mark.parametrize(("options", "error", "message"), [
    (dict(state_dtype="float16"), ValueError, "state_dtype"),
    (dict(state_dtype=np.float64), ValueError, "state_dtype"),
    (dict(state_rounding="up"), ValueError, "state_rounding"),
    (dict(seed=-1), ValueError, "seed"),
    (dict(seed=2**64), ValueError, "seed"),
    (dict(seed=1.5), TypeError, "seed"),
    (dict(seed=True), TypeError, "seed"),
])
def test_bad_state_options_are_refused(options, error, message):
    """Each bad state_dtype, state_rounding or seed is refused at construction."""
    with pytest.raises(error, match=message):
        fo.Adam([np.zeros(3, np.float32)], **options)


def test_float64_parameters_cannot_have_bfloat16_state():
    """bfloat16 state is for float32 parameters; the refusal says so."""
    with pytest.raises(ValueError, match="float32"):
        fo.Adam([np.zeros(3, np.float32), np.zeros(3)], state_dtype="bfloat16")


def _flat(obj, path=()):
    """A state dict as comparable leaves: arrays by dtype, shape and bytes."""
    if isinstance(obj, dict):
        return [leaf for k in sorted(obj, key=repr) for leaf in _flat(obj[k], path + (k,))]
    if isinstance(obj, (list, tuple)):
        return [leaf for i, v in enumerate(obj) for leaf in _flat(v, path + (i,))]
    if isinstance(obj, np.ndarray):
        return [(path, obj.dtype.name, obj.shape, obj.tobytes())]
    return [(path, repr(obj))]


def _bfloat16_adam():
    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    opt = fo.Adam({"w": w}, lr=0.2, betas=(0.5, 0.999), state_dtype="bfloat16")
    opt.step({"w": np.full((2, 3), 0.3, np.float32)})
    return opt, w


def _edited(change):
    sd = _bfloat16_adam()[0].state_dict()
    change(sd, sd["state"]["w"])
    return sd


def _as_float32(sd, w):
    w.update({k: widened(bits(w[k])).reshape(2, 3) for k in ("exp_avg", "exp_avg_sq")})


def _as_uint16_without_format(sd, w):
    w.update({k: w[k].view(np.uint16) for k in ("exp_avg", "exp_avg_sq")})
    del sd["state_format"]


def _bad_loads():
    return [
        ("float32 arrays saved as bfloat16", _edited(_as_float32), TypeError, "dtype float32"),
        ("uint16 arrays, no state_format", _edited(_as_uint16_without_format), TypeError, "dtype uint16"),
        ("state_dtype int4", _edited(lambda sd, w: sd["state_format"].update(state_dtype="int4")), ValueError,
         "int4"),
    ]


@pytest.mark.parametrize(("what", "sd", "error", "message"), _bad_loads(),
                         ids=lambda v: v if isinstance(v, str) else "")
def test_bad_layout_is_refused_and_nothing_changes(what, sd, error, message):
    """A state dict whose arrays do not match its recorded layout is refused, and the
    optimizer's parameters, state and state dict are as they were."""
    opt, w = _bfloat16_adam()
    before = _bytes(opt, [w]), _flat(opt.state_dict())
    with pytest.raises(error, match=message):
        opt.load_state_dict(sd)
    assert (_bytes(opt, [w]), _flat(opt.state_dict())) == before


def test_assigned_state_must_be_bfloat16_and_is_then_used():
    """A float32 array assigned to a bfloat16 slot is refused at the step, changing nothing;
    bfloat16 zeros assigned are used: exp_avg = (1 - 0.5) * g afterwards."""
    opt, w = _bfloat16_adam()
    old = opt.state["w"]["exp_avg"]
    before = w.tobytes(), bits(old).tobytes(), bits(opt.state["w"]["exp_avg_sq"]).tobytes()
    g = np.array([[0.7, -1.9, 3.3], [1e-3, 5.0, -0.2]], np.float32)
    opt.state["w"]["exp_avg"] = np.zeros((2, 3), np.float32)
    with pytest.raises(TypeError, match="dtype float32"):
        opt.step({"w": g})
    assert (w.tobytes(), bits(old).tobytes(), bits(opt.state["w"]["exp_avg_sq"]).tobytes()) == before
    opt.state["w"]["exp_avg"] = np.zeros((2, 3), old.dtype)
    opt.step({"w": g})
    assert opt.state_dict()["state"]["w"]["step"] == 2
    want = nearest_even(np.float32(0.5) * g)
    assert (bits(opt.state["w"]["exp_avg"]) == want).all()
    assert (nearest_even(np.float32(0.5) * widened(bits(old)) + np.float32(0.5) * g.ravel()) != want).any()


def test_bfloat16_state_halves_the_memory():
    """Adam's two slots take 4 bytes an element as bfloat16 (padding aside), 8 as float32."""
    sizes = [100_000, 50_000, 3_000]
    for options, low, high in [(dict(state_dtype="bfloat16"), 4.0, 4.05), ({}, 8.0, 8.05)]:
        opt = fo.Adam([np.zeros(n, np.float32) for n in sizes], **options)
        opt.step([np.ones(n, np.float32) for n in sizes])
        memory = opt.memory()
        assert set(memory) == {"state", "ema", "accumulated"}
        assert low <= memory["state"] / sum(sizes) <= high


def test_without_ml_dtypes_state_is_uint16_with_the_same_bits(rng, monkeypatch):
    """Where ml_dtypes is missing, the state arrays are uint16 holding the same bits a run with
    ml_dtypes gives, and their state dict loads where ml_dtypes is installed."""
    pytest.importorskip("ml_dtypes")
    params, grads = make_problem(rng, [(3, 17), (40,)], np.float32, 3)
    options = dict(lr=1e-2, state_dtype="bfloat16", state_rounding="stochastic", seed=9)
    runs = []
    for patched in (False, True):
        if patched:  # both where it is defined and where optimizer.py imported it
            monkeypatch.setattr("fastoptim._state_format.bfloat16_dtype", lambda: np.dtype(np.uint16))
        copies = [p.copy() for p in params]
        runs.append((_run(fo.Adam, options, copies, grads), copies))
    (with_ml, p_ml), (without, p_without) = runs
    assert all(a.dtype == np.uint16 for s in without.state.values() for a in s.values())
    assert all(a.dtype.name == "bfloat16" for s in with_ml.state.values() for a in s.values())
    assert _bytes(without, p_without) == _bytes(with_ml, p_ml)
    sd = without.state_dict()
    monkeypatch.undo()
    fresh = fo.Adam([p.copy() for p in p_ml], lr=1e-2, state_dtype="bfloat16")
    fresh.load_state_dict(sd)
    assert _flat(fresh.state_dict()) == _flat(with_ml.state_dict())


def test_lamb_rounds_its_norm_pass_stores_stochastically(rng):
    """LAMB stores m and v in its norm pass: they are rounded by the generator too, and its
    trust ratio is measured on the values as stored (what its update pass reads back)."""
    g = rng.uniform(0.5, 2.0, 5000).astype(np.float32)

    def lamb(seed):
        opt = fo.LAMB([np.ones_like(g)], lr=0.1, state_dtype="bfloat16", state_rounding="stochastic", seed=seed)
        opt.step([g])
        return opt

    first, second = lamb(1), lamb(2)
    m = np.float32(1 - 0.9) * g
    assert (bits(first.state[0]["exp_avg"]) == stochastic(m, 1, 0, 1, 0)).all()
    assert (bits(first.state[0]["exp_avg"]) != bits(second.state[0]["exp_avg"])).any()


def test_a_state_dict_saved_without_bfloat16_state_keeps_the_loaders_rounding():
    """Only a state dict saved with bfloat16 state imposes its rounding and seed (they made its
    bits); one saved with float32 state (and a seed) leaves the loading optimizer's."""
    saved = fo.Adam([np.ones(10, np.float32)], seed=3).state_dict()
    assert saved["state_format"]["seed"] == 3
    opt = fo.Adam([np.ones(10, np.float32)], state_dtype="bfloat16", state_rounding="stochastic", seed=7)
    opt.load_state_dict(saved)
    assert (opt.state_rounding, opt.seed) == ("stochastic", 7)


def test_a_copy_keeps_the_generators_counters(rng):
    """ZeroRedundancyOptimizer's pieces keep their parameter's counters (_set_counters); a deep
    copy of such an optimizer draws as the original does."""
    g = rng.standard_normal(3000).astype(np.float32)
    opt = fo.SGD([np.zeros_like(g)], lr=0.1, momentum=0.9, state_dtype="bfloat16", state_rounding="stochastic")
    opt._set_counters([5], [1000])
    twin = copy.deepcopy(opt)
    opt.step([g])
    twin.step([g])
    assert (bits(opt.state[0]["momentum_buffer"]) == bits(twin.state[0]["momentum_buffer"])).all()
    plain = fo.SGD([np.zeros_like(g)], lr=0.1, momentum=0.9, state_dtype="bfloat16", state_rounding="stochastic")
    plain.step([g])
    assert (bits(opt.state[0]["momentum_buffer"]) != bits(plain.state[0]["momentum_buffer"])).any()
    with pytest.raises(ValueError, match="multiple of 4096"):
        fo.LAMB([np.zeros(10, np.float32)], state_dtype="bfloat16")._set_counters([0], [10])
