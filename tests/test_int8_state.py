"""8-bit block-wise state: the code format bit for bit against a float64 reference written from
its definition, a step's decode -> update -> requantize against float64 references and against
the float32-state step, the same bytes on every target and thread count, which arrays get 8-bit
state, memory, checkpoints between every layout, refusals that change nothing, convergence.
The references here share no code with fastoptim (no use of its quantizer's addition trick)."""

from __future__ import annotations

import itertools
import math
import pickle

import numpy as np
import pytest

import fastoptim as fo
import reference
from problems import make_problem

BLOCK = 256  # elements per absmax
# The slots that hold nonnegative values take the unsigned code; every other slot the signed one.
UNSIGNED = frozenset({"exp_avg_sq", "max_exp_avg_sq", "sum", "square_avg", "exp_inf", "acc_delta", "step_size"})
ABSMAX = "_absmax"


# ---- the format, from its definition ---------------------------------------------------------
# As cpp/include/fastoptim/int8_state.hpp defines it: a code is a float16 number cut to 3
# significant bits (signed s EEEE MMM is the float16 s 0EEEE MMM0000000, unsigned EEEEE MMM the
# float16 0 EEEEE MMM0000000), and a block of exponent e stores x·2^(top − e), top 0 (signed) or
# 15 (unsigned), -111 <= e <= 126. Written as here, a code's value is u·2^e with u = (8 + M)·2^(E − bias)
# (M·2^(1 − bias) when E = 0), bias 18 (signed) or 18 + 15 = 33 (unsigned); the unsigned E = 31
# (codes 248-255, never produced) is float16's infinity (M = 0) and NaNs. (Issue 22's first draft
# had the unsigned bias 34 and e >= -126: UNSIGNED_BIAS and LOWEST_BLOCK_EXPONENT below; e up to
# 127 was finite until both scales were kept normal floats.)
SIGNED_BIAS, UNSIGNED_BIAS = 18, 33
LOWEST_BLOCK_EXPONENT, NOT_FINITE = -111, 127


def code_values(signed: bool) -> np.ndarray:
    """u of every code magnitude (a signed code's low 7 bits, all 8 of an unsigned one), exact in
    float64: E = c >> 3, M = c & 7, u = M·2^(1 − bias) when E = 0, else (8 + M)·2^(E − bias); an
    unsigned E = 31 is infinity (M = 0) or NaN, as float16's."""
    c = np.arange(128 if signed else 256)
    exponent, mantissa = c >> 3, c & 7
    bias = SIGNED_BIAS if signed else UNSIGNED_BIAS
    u = np.where(exponent == 0, mantissa * 2.0 ** (1 - bias), (8 + mantissa) * 2.0 ** (exponent - bias))
    if not signed:
        u[248] = np.inf
        u[249:] = np.nan
    return u


def block_exponent(absmax: float) -> int | None:
    """e of a block: its absmax rounded to the codes' precision, 3 mantissa bits after the
    leading one as a normal code's 1.MMM, ties to even, lies in [2^e, 2^(e+1)); e >= -111;
    None where the absmax is not finite or rounds to 2^127 or more."""
    a = float(absmax)
    if not math.isfinite(a):
        return None
    if a == 0.0:
        return LOWEST_BLOCK_EXPONENT
    fraction, exponent = math.frexp(a)  # a = fraction·2^exponent, fraction in [0.5, 1)
    significand = round(fraction * 16)  # exact product; Python rounds half to even
    e = max(exponent - 1 if significand < 16 else exponent, LOWEST_BLOCK_EXPONENT)
    return None if e >= NOT_FINITE else e


def blocks_of(size: int) -> int:
    return -(-size // BLOCK)


def quantize_reference(values, signed: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(codes, absmax) of float32 values taken in C order: per block, by brute force over the
    whole code table, the code whose u is nearest |x|·2^-e (every distance that decides is exact
    in float64: y is, and near its nearest codes the subtraction is), ties to the even code; the
    sign bit of x on signed codes. A block that is not finite keeps all-zero codes."""
    x = np.asarray(values, np.float32).ravel()
    table = code_values(signed)
    table = table[np.isfinite(table)]  # every code but the unsigned 248-255, which lie above all y
    codes = np.zeros(x.size, np.uint8)
    absmax = np.zeros(blocks_of(x.size), np.float32)
    with np.errstate(invalid="ignore"):
        magnitude = np.abs(x.astype(np.float64))
    for b in range(absmax.size):
        block = slice(b * BLOCK, (b + 1) * BLOCK)
        absmax[b] = magnitude[block].max()  # NaN where the block holds one
        e = block_exponent(absmax[b])
        if e is None:
            continue
        y = magnitude[block] * 2.0**-e  # exact: a float32 times a power of two
        distance = np.abs(y[:, None] - table[None, :])
        nearest = distance == distance.min(axis=1, keepdims=True)
        low = nearest.argmax(axis=1)
        tie = nearest.sum(axis=1) == 2
        chosen = np.where(tie & (low % 2 == 1), low + 1, low).astype(np.uint8)
        if signed:
            chosen |= np.where(np.signbit(x[block]), 0x80, 0).astype(np.uint8)
        codes[block] = chosen
    return codes.reshape(np.shape(values)), absmax


def dequantize_reference(codes, absmax, signed: bool = True) -> np.ndarray:
    """float32 values of codes in C order: ±u·2^e exactly in float64, rounded once to float32;
    NaN for a block that is not finite; infinity or NaN for the unsigned codes 248-255."""
    c = np.asarray(codes, np.uint8).ravel()
    value = code_values(signed)[c & 0x7F if signed else c].astype(np.float64)
    for b, a in enumerate(np.asarray(absmax, np.float32)):
        block = slice(b * BLOCK, (b + 1) * BLOCK)
        e = block_exponent(a)
        value[block] = np.nan if e is None else value[block] * 2.0**e
    if signed:
        value = np.where(c & 0x80, -value, value)
    return value.astype(np.float32).reshape(np.shape(codes))


def assert_same_floats(got, want, what: str = "") -> None:
    """The same float32 bit patterns, NaNs aside (those only where the other has one)."""
    got, want = np.asarray(got).ravel(), np.asarray(want, np.float32).ravel()
    assert got.dtype == np.float32 and got.shape == want.shape, (what, got.dtype, got.shape, want.shape)
    nan = np.isnan(want)
    assert (np.isnan(got) == nan).all(), f"{what}: NaN at {np.flatnonzero(np.isnan(got) != nan)[:5]}"
    bad = np.flatnonzero((got.view(np.uint32) != want.view(np.uint32)) & ~nan)
    assert bad.size == 0, f"{what}: {bad.size} differ, e.g. " + ", ".join(
        f"[{i}] {got[i]!r} != {want[i]!r}" for i in bad[:5])


def assert_same_codes(got, want, what: str = "") -> None:
    got, want = np.asarray(got).ravel(), np.asarray(want).ravel()
    assert got.dtype == np.uint8 and got.shape == want.shape, (what, got.dtype, got.shape, want.shape)
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, f"{what}: {bad.size} codes differ, e.g. " + ", ".join(
        f"[{i}] {got[i]:#04x} != {want[i]:#04x}" for i in bad[:5])


def _order_of(array: np.ndarray) -> str:
    return "F" if array.flags.f_contiguous and not array.flags.c_contiguous else "C"


def _f32(patterns) -> np.ndarray:
    return np.asarray(patterns, np.uint32).view(np.float32)


def _signs(rng, n: int) -> np.ndarray:
    return np.where(rng.integers(0, 2, n) == 1, 0x80000000, 0).astype(np.uint32)


def _ties(rng, signed: bool) -> list[np.ndarray]:
    """Blocks whose absmax is 1.875·2^k (so e = k) holding every midpoint between neighbouring
    codes times 2^k, and the float32 neighbours of each, where float32 holds them exactly."""
    table = code_values(signed)
    mid = (table[1:] + table[:-1]) / 2
    blocks = []
    for k in (0, 37, -70, -112, -126):
        values = mid * 2.0**k
        values = values[values.astype(np.float32).astype(np.float64) == values].astype(np.float32)
        values = np.concatenate([values, np.nextafter(values, np.float32(0)), np.nextafter(values, np.float32(4))])
        if signed:
            values = np.where(rng.integers(0, 2, values.size) == 1, -values, values)
        for start in range(0, values.size, BLOCK - 1):
            blocks.append(np.concatenate([[np.float32(1.875 * 2.0**k)], values[start:start + BLOCK - 1]]))
    return blocks


def many_magnitudes(rng, signed: bool) -> np.ndarray:
    """Blocks of one kind each: magnitudes from 1e-38 to 1e38 spread over 12 decades within a
    block, zeros of both signs, subnormals, values about float32's smallest normal, random bit
    patterns, exact ties between codes and their neighbours, absmax at the edges of its rounding
    (1.9375·2^k rounds up a binade, one ulp below does not), at float32's largest (finite up to
    0x7EF7FFFF; from 0x7EF80000 it rounds to 2^127, not finite), infinities and NaNs; a partial
    last block.
    Unsigned codes get the magnitudes."""
    with np.errstate(over="ignore"):
        blocks = [rng.standard_normal(BLOCK) * 10.0 ** (k + rng.uniform(-12, 0, BLOCK))
                  for k in rng.uniform(-30, 37, 12)]
    blocks.append(rng.standard_normal(BLOCK))
    zeros = np.zeros(BLOCK)
    zeros[::3] = -0.0
    blocks.append(zeros)
    blocks.append(_f32(rng.integers(1, 0x800000, BLOCK, dtype=np.uint32) | _signs(rng, BLOCK)))
    blocks.append(_f32(rng.integers(0x7FFF00, 0x800100, BLOCK, dtype=np.uint32) | _signs(rng, BLOCK)))
    blocks.append(_f32(rng.integers(0, 0x7F800000, BLOCK, dtype=np.uint32) | _signs(rng, BLOCK)))
    blocks.extend(_ties(rng, signed))
    for edge in (0x3FF80000, 0x3FF7FFFF, 0x3FF00000, 0x3FE80000, 0x07F80000, 0x07F7FFFF, 0x07800000, 0x00F80000,
                 0x7EF7FFFF, 0x7EF80000, 0x7F77FFFF, 0x7F7FFFFF):
        block = rng.uniform(-1, 1, BLOCK) * _f32(edge)
        block[rng.integers(BLOCK)] = -_f32(edge)  # the absmax, negative
        blocks.append(block)
    for special in (np.inf, -np.inf, np.nan, -np.nan):
        block = rng.standard_normal(BLOCK)
        block[rng.integers(BLOCK)] = special
        blocks.append(block)
    both = rng.standard_normal(BLOCK)
    both[[3, 100]] = [np.nan, np.inf]
    blocks.append(both)
    blocks.append(rng.standard_normal(100) * 1e-3)  # partial
    with np.errstate(over="ignore"):
        values = np.concatenate([np.asarray(b, np.float32) for b in blocks])
    return values if signed else np.abs(values)


# ---- the format: fastoptim's quantizer against the reference --------------------------------

def test_the_code_tables_are_as_defined():
    """The references' own tables: increasing, 2^-14 / 2^-29 the smallest normal codes, 1.875 the
    largest finite; and the block exponent at its edges."""
    for signed, smallest_normal in ((True, 2.0**-14), (False, 2.0**-29)):
        table = code_values(signed)[:128 if signed else 248]
        assert (np.diff(table) > 0).all() and table[0] == 0 and table[-1] == 1.875 and table[8] == smallest_normal
    assert np.isinf(code_values(False)[248]) and np.isnan(code_values(False)[249:]).all()
    assert [block_exponent(_f32(p)) for p in (0x3FF7FFFF, 0x3FF80000, 0x3FE80000, 0x7EF7FFFF, 0x7EF80000, 0, 1,
                                              0x07F7FFFF, 0x07F80000, 0x08800000)] == [
        0, 1, 0, 126, None, -111, -111, -111, -111, -110]
    assert block_exponent(np.inf) is None and block_exponent(np.nan) is None


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
def test_quantize_blockwise_matches_the_format_bit_for_bit(rng, signed):
    """Codes and absmax of every kind of block equal the reference's, bit for bit."""
    values = many_magnitudes(rng, signed)
    assert values.size % BLOCK != 0 and np.isnan(values).any() and (np.abs(values) < 2.0**-126).any()
    with np.errstate(invalid="ignore", over="ignore"):
        codes, absmax = fo.quantize_blockwise(values, signed=signed)
        want_codes, want_absmax = quantize_reference(values, signed)
    assert codes.shape == values.shape and absmax.shape == (blocks_of(values.size),)
    assert_same_floats(absmax, want_absmax, "absmax")
    mismatch = np.flatnonzero(codes != want_codes)
    assert mismatch.size == 0, [(i // BLOCK, hex(values.view(np.uint32)[i]), hex(absmax[i // BLOCK].view(np.uint32)),
                                 hex(want_codes[i]), hex(codes[i])) for i in mismatch[:8]]
    # the data reached every code (ties, subnormal codes, the largest) and the not-finite blocks
    assert len(np.unique(want_codes)) == (256 if signed else 248)
    assert np.isnan(dequantize_reference(want_codes, want_absmax, signed)).sum() >= 5 * BLOCK


def test_unsigned_codes_refuse_negative_values():
    """Unsigned codes hold values that are never negative: a negative value is refused, never
    made positive behind the caller's back (-0.0 codes as zero), and a float32 state dict whose
    second moment holds one is refused on loading into 8-bit state, naming it, with nothing changed."""
    x = np.linspace(-3.0, 3.0, 1000, dtype=np.float32)
    with pytest.raises(ValueError, match="negative"):
        fo.quantize_blockwise(x, signed=False)
    codes, absmax = fo.quantize_blockwise(np.abs(x), signed=False)
    assert_same_codes(codes, quantize_reference(np.abs(x), signed=False)[0])
    assert_same_floats(absmax, quantize_reference(np.abs(x), signed=False)[1])
    assert fo.quantize_blockwise(np.array([-0.0, 1.0], np.float32), signed=False)[0][0] == 0
    p = np.ones(5000, np.float32)
    plain = fo.Adam({"w": p.copy()})
    plain.step({"w": np.ones_like(p)})
    sd = plain.state_dict()
    sd["state"]["w"]["exp_avg_sq"][7] = -1.0
    opt = fo.Adam({"w": p}, state_dtype="int8")
    opt.step({"w": np.ones_like(p)})
    before = {k: v.copy() for k, v in opt.state["w"].items()}
    with pytest.raises(ValueError, match=r"\['exp_avg_sq'\].*negative"):
        opt.load_state_dict(sd)
    assert all(np.array_equal(opt.state["w"][k], v) for k, v in before.items())


def test_the_block_scale_rounds_the_absmax_to_the_codes_precision():
    """1.90625 (1.1110_1 in binary) rounds to 1.875 at 3 bits after the leading one: e = 0 and the
    absmax itself takes the largest code; 1.9375 is a tie that rounds up to 2: e = 1."""
    for absmax, code in ((1.90625, 0x7F), (1.875, 0x7F), (1.9375, 0x78), (1.0, 0x78)):
        codes, got = fo.quantize_blockwise(np.array([absmax, 0.0], np.float32))
        assert (codes[0], got[0]) == (code, np.float32(absmax)), absmax


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
def test_dequantize_blockwise_matches_the_format_bit_for_bit(rng, signed):
    """Every code (unsigned: but 248-255, never produced) under absmax values of every kind (zero,
    subnormal, the rounding edges, near float32's largest, not finite, random) decodes as the
    reference's float64 value rounded once to float32, shaped as the codes; and
    dequantize(quantize(x)) likewise."""
    edges = _f32([0, 1, 0x000FFFFF, 0x007FFFFF, 0x00800000, 0x0B000000, 0x3F800000, 0x3FF7FFFF, 0x3FF80000,
                  0x3FE80000, 0x5F000000, 0x7F77FFFF, 0x7F780000, 0x7F7FFFFF, 0x7F800000, 0x7FC00000])
    absmax = np.concatenate([edges, _f32(rng.integers(0, 0x7F800000, 24, dtype=np.uint32))])
    every = np.arange(256) % (256 if signed else 248)
    codes = np.tile(every.astype(np.uint8), (absmax.size, 1))  # block b: every code under absmax[b]
    got = fo.dequantize_blockwise(codes, absmax, signed=signed)
    assert got.shape == codes.shape
    assert_same_floats(got, dequantize_reference(codes, absmax, signed), "every code")
    values = many_magnitudes(rng, signed)
    with np.errstate(invalid="ignore", over="ignore"):
        codes, absmax = fo.quantize_blockwise(values, signed=signed)
    assert_same_floats(fo.dequantize_blockwise(codes, absmax, signed=signed),
                       dequantize_reference(codes, absmax, signed), "round trip")


def _adam_reading_unused_codes():
    """An 8-bit Adam whose exp_avg_sq holds, in its first block, the unsigned codes 240-255 (248-255
    are never produced, but assigned or loaded state can hold them) under absmax 1."""
    p = np.ones(4096, np.float32)
    opt = fo.Adam([p], lr=1e-3, state_dtype="int8")
    opt.step([np.ones_like(p)])
    opt.state[0]["exp_avg_sq"][:BLOCK] = np.tile(np.arange(240, 256, dtype=np.uint8), BLOCK // 16)
    opt.state[0]["exp_avg_sq_absmax"][0] = 1.0
    return opt, p


@pytest.mark.parametrize("target", fo.available_targets())
def test_unused_unsigned_codes_decode_alike_on_every_target_and_in_dequantize(target, restore_runtime):
    """Codes 248-255 are read as dequantize_blockwise reads them (a float32-state twin loading
    the state dict steps to the same parameter bits) and as on the first target."""
    fo.set_target(fo.available_targets()[0])
    first, first_p = _adam_reading_unused_codes()
    first.step([np.ones(4096, np.float32)])
    fo.set_target(target)
    opt, p = _adam_reading_unused_codes()
    twin_p = p.copy()
    twin = fo.Adam([twin_p], lr=1e-3)
    twin.load_state_dict(opt.state_dict())
    decoded = fo.dequantize_blockwise(opt.state[0]["exp_avg_sq"][:BLOCK], np.ones(1, np.float32), signed=False)
    assert_same_floats(twin.state[0]["exp_avg_sq"][:BLOCK], decoded, "loaded")
    opt.step([np.ones_like(p)])
    twin.step([np.ones_like(twin_p)])
    assert_same_floats(p[:BLOCK], twin_p[:BLOCK], f"{target} against dequantize_blockwise")
    assert_same_floats(p, first_p, f"{target} against {fo.available_targets()[0]}")
    assert_same_floats(opt.state[0]["exp_avg_sq_absmax"], first.state[0]["exp_avg_sq_absmax"], "absmax")


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
def test_a_round_trip_is_within_half_a_code(rng, signed):
    """|dequantize(quantize(x)) − x| <= |x|/16 + half the subnormal code step (2^(e − bias)),
    plus the float32 rounding: an error bound of the format, independent of the reference's search."""
    x = (rng.standard_normal(5000) * 10.0 ** rng.uniform(-8, 3, 5000)).astype(np.float32)
    x = x if signed else np.abs(x)
    codes, absmax = fo.quantize_blockwise(x, signed=signed)
    back = fo.dequantize_blockwise(codes, absmax, signed=signed).astype(np.float64)
    e = np.repeat([block_exponent(a) for a in absmax], BLOCK)[:x.size].astype(np.float64)
    bound = np.abs(x.astype(np.float64)) / 16 + 2.0 ** (e - (SIGNED_BIAS if signed else UNSIGNED_BIAS)) + 2.0**-149
    assert (np.abs(back - x) <= bound).all()
    if signed:  # the sign bit survives, -0.0 included
        assert (np.signbit(back) == np.signbit(x)).all()


def test_values_are_taken_in_c_order_and_shapes_kept(rng):
    """A 2-D array (C or Fortran) is coded in C order, the codes shaped like it; empty arrays
    have no blocks; a wrong number of absmax values is refused."""
    x = rng.standard_normal((20, 30)).astype(np.float32)
    for array in (x, np.asfortranarray(x)):
        codes, absmax = fo.quantize_blockwise(array)
        want_codes, want_absmax = quantize_reference(x.ravel())
        assert codes.shape == (20, 30) and codes.dtype == np.uint8 and absmax.dtype == np.float32
        assert_same_codes(np.ascontiguousarray(codes).ravel(), want_codes)
        assert_same_floats(absmax, want_absmax)
        back = fo.dequantize_blockwise(codes, absmax)
        assert back.shape == (20, 30) and back.dtype == np.float32
    codes, absmax = fo.quantize_blockwise(np.zeros(0, np.float32))
    assert codes.shape == (0,) and absmax.shape == (0,)
    codes, absmax = fo.quantize_blockwise(x)
    with pytest.raises(ValueError, match="absmax"):
        fo.dequantize_blockwise(codes, absmax[:-1])


# ---- a step: decode, update in float32, requantize -------------------------------------------

def _decoded(opt, name, slot) -> np.ndarray:
    """The float64 values of an 8-bit slot as the reference decodes them (a C-order parameter)."""
    state = opt.state[name]
    return dequantize_reference(state[slot], state[slot + ABSMAX], slot not in UNSIGNED).astype(np.float64)


def _code_index(codes: np.ndarray, signed: bool) -> np.ndarray:
    """Codes as positions on the number line: neighbouring values differ by 1."""
    c = codes.astype(np.int64).ravel()
    return np.where(c & 0x80, -(c & 0x7F), c & 0x7F) if signed else c


def _assert_requantized(state, slot, value: np.ndarray, step: int) -> None:
    """The slot's codes and absmax are those of the float64 reference's new state (rounded to
    float32, which the kernel computes in): absmax within float32 rounding, and the codes equal
    but for a handful of elements at a rounding boundary, one code apart."""
    signed = slot not in UNSIGNED
    want_codes, want_absmax = quantize_reference(value.astype(np.float32), signed)
    np.testing.assert_allclose(state[slot + ABSMAX], want_absmax, rtol=1e-5, err_msg=f"{slot}{ABSMAX}, step {step}")
    apart = np.abs(_code_index(state[slot], signed) - _code_index(want_codes, signed))
    assert apart.max() <= 1 and np.count_nonzero(apart) <= 5, (
        f"{slot}, step {step}: {np.count_nonzero(apart)} codes differ, by up to {apart.max()}; e.g. " + ", ".join(
            f"[{i}] {state[slot].ravel()[i]:#04x} != {want_codes.ravel()[i]:#04x} ({value.ravel()[i]!r})"
            for i in np.flatnonzero(apart)[:5]))


def _assert_update_close(got: np.ndarray, before: np.ndarray, want: np.ndarray, lr: float, what: str) -> None:
    """The parameter equals the float64 reference but for float32's rounding: one ulp of the
    result, 1e-5 of the step taken, 1e-6·lr. An update from the quantized state (codes 1/16
    apart) would miss by far more."""
    got64, before64, want = got.astype(np.float64).ravel(), before.astype(np.float64).ravel(), want.ravel()
    tol = np.spacing(np.abs(want).astype(np.float32)).astype(np.float64) + 1e-5 * np.abs(want - before64) + 1e-6 * lr
    bad = np.flatnonzero(np.abs(got64 - want) > tol)
    assert bad.size == 0, f"{what}: {bad.size} elements off, e.g. " + ", ".join(
        f"[{i}] got {got64[i]!r}, want {want[i]!r} (from {before64[i]!r})" for i in bad[:5])


ADAM = dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, maximize=False)
REFERENCE_CASES = [
    ("adam", fo.Adam, dict(lr=1e-2), reference.adam, ADAM),
    ("adam-amsgrad-l2", fo.Adam, dict(lr=1e-2, betas=(0.8, 0.99), weight_decay=0.1, amsgrad=True), reference.adam,
     dict(ADAM, betas=(0.8, 0.99), weight_decay=0.1, amsgrad=True)),
    ("adamw", fo.AdamW, dict(lr=1e-2, weight_decay=0.1), reference.adam,
     dict(ADAM, weight_decay=0.1, decoupled_weight_decay=True)),
    ("sgd-momentum", fo.SGD, dict(lr=0.05, momentum=0.9, dampening=0.1), reference.sgd,
     dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=0.0, nesterov=False, maximize=False)),
    ("lion", fo.Lion, dict(lr=1e-3, weight_decay=0.1), reference.lion,
     dict(lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1, maximize=False)),
    ("adagrad", fo.Adagrad, dict(lr=0.1, lr_decay=0.01, initial_accumulator_value=0.1), reference.adagrad,
     dict(lr=0.1, lr_decay=0.01, weight_decay=0.0, initial_accumulator_value=0.1, eps=1e-10, maximize=False)),
]


@pytest.mark.parametrize(("cls", "kwargs", "rule", "hp"), [c[1:] for c in REFERENCE_CASES],
                         ids=[c[0] for c in REFERENCE_CASES])
def test_each_step_decodes_updates_and_requantizes_as_the_reference(rng, cls, kwargs, rule, hp):
    """4 steps on 5000 elements (a partial last block; each block of its own scale): before
    each, the reference decodes the optimizer's codes itself, steps in float64 (from no state on
    step 1, as torch) and quantizes the new state itself. The parameter moves as the reference's
    (from the new state before quantization) and the new codes are the reference's."""
    n = 5000
    scale = np.repeat(10.0 ** rng.uniform(-3, 2, blocks_of(n)), BLOCK)[:n]
    p = rng.standard_normal(n).astype(np.float32)
    opt = cls({"w": p}, **kwargs, state_dtype="int8")
    for t in range(1, 5):
        g = (rng.standard_normal(n) * scale * 10.0 ** rng.uniform(-1, 0, n)).astype(np.float32)
        st = {} if t == 1 else {s: _decoded(opt, "w", s) for s in opt.state["w"] if not s.endswith(ABSMAX)}
        want = p.astype(np.float64)
        rule(want, g.astype(np.float64), st, hp, t)
        before = p.copy()
        opt.step({"w": g})
        _assert_update_close(p, before, want, hp["lr"], f"step {t}")
        assert set(opt.state["w"]) == {k for s in st for k in (s, s + ABSMAX)}
        for slot, value in st.items():
            assert opt.state["w"][slot].dtype == np.uint8 and opt.state["w"][slot].shape == (n,)
            _assert_requantized(opt.state["w"], slot, value, t)


def _named(arrays):
    return dict(zip(("w", "b"), arrays))


EVERY_RULE = [
    (fo.Adam, dict(lr=1e-2, weight_decay=0.1, amsgrad=True)),
    (fo.AdamW, dict(lr=1e-2)),
    (fo.SGD, dict(lr=0.05, momentum=0.9, nesterov=True)),
    (fo.Adamax, dict(lr=1e-2)),
    (fo.NAdam, dict(lr=1e-2)),
    (fo.RAdam, dict(lr=1e-2, betas=(0.9, 0.9))),  # rectified from step 3 on
    (fo.RMSprop, dict(lr=1e-3, momentum=0.9, centered=True)),
    (fo.Adagrad, dict(lr=0.1, initial_accumulator_value=0.5)),
    (fo.Adadelta, dict()),
    (fo.Rprop, dict()),
    (fo.Lion, dict(lr=1e-3)),
    (fo.AdaBound, dict(amsbound=True)),
    (fo.LAMB, dict(lr=1e-2, weight_decay=0.01)),
    (fo.LARS, dict(lr=0.5, momentum=0.5)),
]
WITH_NORMS = (fo.LAMB, fo.LARS)  # their norms are summed per block of codes: the same up to rounding


@pytest.mark.parametrize(("cls", "kwargs"), EVERY_RULE, ids=lambda v: getattr(v, "__name__", ""))
def test_a_step_on_8bit_state_is_the_float32_step_from_its_decoded_values(rng, cls, kwargs):
    """Two steps with 8-bit state; its state dict loaded into a float32-state twin gives the
    reference's decoding of each slot (signed or unsigned as the slot's values); a third step
    on both: the same parameter bits (the kernel updates from the new float32 state; LAMB, whose
    norm pass stores m and v, from m and v as requantized) and the 8-bit codes are the reference's
    quantization of the twin's new float32 state."""
    params, grads = make_problem(rng, [(40, 130), (7,)], np.float32, 3)
    eight = [p.copy() for p in params]
    opt = cls(_named(eight), **kwargs, state_dtype="int8")
    for g in grads[:2]:
        opt.step(_named(g))
    slots = [s for s in opt.state["w"] if not s.endswith(ABSMAX)]
    assert slots and all(opt.state["w"][s].dtype == np.uint8 for s in slots)
    assert all(opt.state["b"][s].dtype == np.float32 for s in opt.state["b"])
    twin = [p.copy() for p in eight]
    plain = cls(_named(twin), **kwargs)
    plain.load_state_dict(opt.state_dict())
    for slot in slots:
        codes, absmax = opt.state["w"][slot], opt.state["w"][slot + ABSMAX]
        assert_same_floats(plain.state["w"][slot], dequantize_reference(codes, absmax, slot not in UNSIGNED), slot)
    before = eight[0].copy()
    opt.step(_named(grads[2]))
    plain.step(_named(grads[2]))
    if cls is fo.LAMB:  # its trust ratio is measured, and its update applied, on m and v as requantized
        m, v = _decoded(opt, "w", "exp_avg"), _decoded(opt, "w", "exp_avg_sq")
        (b1, b2), eps, t = plain.param_groups[0]["betas"], plain.param_groups[0]["eps"], 3
        r = (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps) + kwargs["weight_decay"] * before
        want = before - kwargs["lr"] * np.linalg.norm(before) / np.linalg.norm(r) * r
        _assert_update_close(eight[0], before, want, kwargs["lr"], "w")
    elif cls in WITH_NORMS:
        _assert_update_close(eight[0], before, twin[0].astype(np.float64), kwargs["lr"], "w")
    else:
        assert_same_floats(eight[0], twin[0], "w")
    assert eight[1].tobytes() == twin[1].tobytes()
    for slot in slots:
        want_codes, want_absmax = quantize_reference(plain.state["w"][slot], slot not in UNSIGNED)
        if cls in WITH_NORMS:
            _assert_requantized(opt.state["w"], slot, plain.state["w"][slot].astype(np.float64), 3)
        else:
            assert_same_floats(opt.state["w"][slot + ABSMAX], want_absmax, slot + ABSMAX)
            assert_same_codes(opt.state["w"][slot], want_codes, slot)


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("shape", [(64, 64), (50, 100), (280, 250)], ids=str)
def test_codes_follow_the_parameters_memory_order(rng, order, shape):
    """SGD's first momentum buffer is the gradient: its codes, shaped and ordered like the
    parameter, are the gradient's, blocks counted along memory order, as quantize_blockwise
    (and the reference) code the gradient flattened so."""
    g = np.asarray(rng.standard_normal(shape) * 10.0 ** rng.uniform(-3, 3, shape), np.float32, order=order)
    param = np.zeros_like(g)  # keeps g's order
    opt = fo.SGD([param], lr=0.1, momentum=0.9, state_dtype="int8")
    opt.step([g])
    codes, absmax = opt.state[0]["momentum_buffer"], opt.state[0]["momentum_buffer" + ABSMAX]
    assert codes.shape == shape and codes.dtype == np.uint8
    assert codes.flags.f_contiguous if order == "F" else codes.flags.c_contiguous
    flat = g.ravel(order=order)
    want_codes, want_absmax = quantize_reference(flat)
    assert_same_codes(codes.ravel(order=order), want_codes, "momentum_buffer")
    assert_same_floats(absmax, want_absmax, "absmax")
    assert_same_codes(fo.quantize_blockwise(flat)[0], want_codes, "quantize_blockwise")


# ---- the same bytes everywhere ---------------------------------------------------------------

ALWAYS, NEVER = 0, 2**62  # fo.set_prefetch_above
SETTINGS = [(1, NEVER), (2, ALWAYS)]
BITS_CASES = [
    (fo.Adam, dict(lr=1e-2)),
    (fo.AdamW, dict(lr=1e-2, weight_decay=0.1, amsgrad=True)),
    (fo.Lion, dict(lr=1e-3)),
    (fo.SGD, dict(lr=0.05, momentum=0.9, nesterov=True)),
    (fo.RMSprop, dict(lr=1e-3, momentum=0.9, centered=True)),
    (fo.LAMB, dict(lr=1e-2, weight_decay=0.01)),
]


def _bits_problem():
    """4096, 70000 (a partial block; 70001-element buffer, one element in: not vector aligned),
    a Fortran-order 300 x 257, and 1000 and 4095 elements (float32 state)."""
    rng = np.random.default_rng(7)
    shifted = np.empty(70_001, np.float32)
    params = [rng.standard_normal(4096).astype(np.float32), shifted[1:],
              np.asfortranarray(rng.standard_normal((300, 257)), np.float32),
              rng.standard_normal(1000).astype(np.float32), rng.standard_normal(4095).astype(np.float32)]
    params[1][...] = rng.standard_normal(70_000)
    grads = [[np.asarray(rng.standard_normal(p.shape) * 10.0 ** rng.uniform(-2, 1), np.float32, order=_order_of(p))
              for p in params] for _ in range(3)]
    return params, grads


def _coded_trajectory(cls, kwargs, target, threads, prefetch_above):
    fo.set_target(target)
    fo.set_num_threads(threads)
    fo.set_prefetch_above(prefetch_above)
    params, grads = _bits_problem()
    opt = cls(params, **kwargs, state_dtype="int8")
    for g in grads:
        opt.step(g)
    assert all(a.dtype == (np.float32 if k.endswith(ABSMAX) else np.uint8)
               for i in range(3) for k, a in opt.state[i].items())
    assert all(a.dtype == np.float32 and not k.endswith(ABSMAX) for i in (3, 4) for k, a in opt.state[i].items())
    state = [a for i in sorted(opt.state) for _, a in sorted(opt.state[i].items())]
    return [a.tobytes() for a in params + state]


@pytest.mark.parametrize(("cls", "kwargs"), BITS_CASES, ids=lambda v: getattr(v, "__name__", ""))
def test_8bit_state_gives_the_same_bytes_on_every_target_and_thread_count(cls, kwargs, restore_runtime):
    """Parameters, codes and absmax alike, on every target, one thread without prefetching and
    two with (the arrays together exceed the single-thread cut-off: pieces cut blocks)."""
    runs = {(t, n, p): _coded_trajectory(cls, kwargs, t, n, p)
            for t, (n, p) in itertools.product(fo.available_targets(), SETTINGS)}
    (first_key, first), *rest = runs.items()
    for key, other in rest:
        assert other == first, f"{key} differs from {first_key}"


# ---- which arrays, and the options --------------------------------------------------------

def test_arrays_below_min_8bit_size_keep_float32_state():
    """Default 4096: 4095 elements keep float32 state (no absmax), 4096 (1-D or 64 x 64) get
    codes and 16 absmax per slot; min_8bit_size=100 moves the line to 100."""
    sizes = {"a": (4095,), "b": (4096,), "c": (64, 64), "d": (1,)}
    opt = fo.Adam({k: np.zeros(s, np.float32) for k, s in sizes.items()}, state_dtype="int8")
    opt.step({k: np.ones(s, np.float32) for k, s in sizes.items()})
    for name in ("a", "d"):
        assert set(opt.state[name]) == {"exp_avg", "exp_avg_sq"}
        assert all(a.dtype == np.float32 and a.shape == sizes[name] for a in opt.state[name].values())
    for name in ("b", "c"):
        assert set(opt.state[name]) == {"exp_avg", "exp_avg_absmax", "exp_avg_sq", "exp_avg_sq_absmax"}
        for slot in ("exp_avg", "exp_avg_sq"):
            assert opt.state[name][slot].dtype == np.uint8 and opt.state[name][slot].shape == sizes[name]
            assert opt.state[name][slot + ABSMAX].dtype == np.float32
            assert opt.state[name][slot + ABSMAX].shape == (16,)
    opt = fo.SGD({"a": np.zeros(99, np.float32), "b": np.zeros(100, np.float32), "c": np.zeros(300, np.float32)},
                 lr=0.1, momentum=0.9, state_dtype="int8", min_8bit_size=100)
    opt.step({"a": np.ones(99, np.float32), "b": np.ones(100, np.float32), "c": np.ones(300, np.float32)})
    assert opt.state["a"]["momentum_buffer"].dtype == np.float32 and set(opt.state["a"]) == {"momentum_buffer"}
    assert opt.state["b"]["momentum_buffer"].dtype == np.uint8
    assert opt.state["b"]["momentum_buffer_absmax"].shape == (1,)
    assert opt.state["c"]["momentum_buffer_absmax"].shape == (2,)


@pytest.mark.parametrize(("value", "error"), [(-1, ValueError), (-4096, ValueError), (1.5, TypeError),
                                              (4096.0, TypeError), ("4096", TypeError), (True, TypeError)])
def test_bad_min_8bit_size_is_refused(value, error):
    with pytest.raises(error, match="min_8bit_size"):
        fo.Adam([np.zeros(5000, np.float32)], state_dtype="int8", min_8bit_size=value)


def test_float64_parameters_cannot_have_8bit_state():
    """The refusal names the parameter and says float32."""
    with pytest.raises(ValueError, match=r"(?s)params\['big'\].*float32"):
        fo.Adam({"w": np.zeros(5000, np.float32), "big": np.zeros(5000)}, state_dtype="int8")


def test_8bit_state_has_no_stochastic_rounding():
    with pytest.raises(ValueError, match="state_rounding"):
        fo.Adam([np.zeros(5000, np.float32)], state_dtype="int8", state_rounding="stochastic")


def test_8bit_adam_state_takes_about_two_bytes_an_element():
    """Two codes an element and two float32 absmax a block of 256, 2 + 8/256 bytes an element,
    padding aside (each buffer starts at its parameter's offset in a 64-byte line): at most 2.1
    bytes an element; amsgrad's third slot adds its share; a small array keeps 8 bytes."""
    sizes = [100_000, 50_000, 5000, 4096]
    for amsgrad, slots in ((False, 2), (True, 3)):
        opt = fo.Adam([np.zeros(n, np.float32) for n in sizes], amsgrad=amsgrad, state_dtype="int8")
        opt.step([np.ones(n, np.float32) for n in sizes])
        state = opt.memory()["state"]
        exact = sum(slots * (n + 4 * blocks_of(n)) for n in sizes)
        assert exact <= state <= exact + 2 * slots * 64 * len(sizes), (state, exact)
        if not amsgrad:
            assert state / sum(sizes) <= 2.1
    opt = fo.Adam([np.zeros(1000, np.float32)], state_dtype="int8")
    opt.step([np.ones(1000, np.float32)])
    assert 8000 <= opt.memory()["state"] <= 8000 + 2 * 64


# ---- checkpoints -----------------------------------------------------------------------------

def _layout_problem(rng, steps: int):
    """A Fortran-order 70 x 80, a C-order 5000 (8-bit state) and 7 elements (float32 state)."""
    shapes = {"w": ((70, 80), "F"), "v": ((5000,), "C"), "b": ((7,), "C")}
    params = {k: np.asarray(rng.standard_normal(s), np.float32, order=o) for k, (s, o) in shapes.items()}
    grads = [{k: np.asarray(rng.standard_normal(s) * 10.0 ** rng.uniform(-2, 1), np.float32, order=o)
              for k, (s, o) in shapes.items()} for _ in range(steps)]
    return params, grads


def _copies(params):
    return {k: v.copy(order="K") for k, v in params.items()}


def _state_bytes(opt, params) -> list[bytes]:
    return [params[k].tobytes(order="A") for k in sorted(params)] + [
        opt.state[k][s].tobytes(order="A") for k in sorted(opt.state) for s in sorted(opt.state[k])]


CHECKPOINT_CASES = [(fo.Adam, dict(lr=1e-2)), (fo.AdamW, dict(lr=1e-2, amsgrad=True)),
                    (fo.SGD, dict(lr=0.05, momentum=0.9)), (fo.Lion, dict(lr=1e-3)), (fo.Adagrad, dict(lr=0.1))]


@pytest.mark.parametrize(("cls", "kwargs"), CHECKPOINT_CASES, ids=lambda v: getattr(v, "__name__", ""))
def test_resume_from_an_8bit_state_dict_is_exact(rng, cls, kwargs):
    """6 steps straight == 3 steps, state_dict (pickled), a fresh 8-bit optimizer loading it, 3
    more steps: the same bytes, codes and absmax included. The state dict records the layout
    and saves codes (uint8) and absmax (float32) as they are held."""
    params, grads = _layout_problem(rng, 6)
    straight = _copies(params)
    whole = cls(straight, **kwargs, state_dtype="int8")
    for g in grads:
        whole.step(g)
    half = _copies(params)
    first = cls(half, **kwargs, state_dtype="int8")
    for g in grads[:3]:
        first.step(g)
    sd = pickle.loads(pickle.dumps(first.state_dict()))
    assert sd["state_format"]["state_dtype"] == "int8"
    for name in ("w", "v"):
        for slot in (s for s in sd["state"][name] if s != "step" and not s.endswith(ABSMAX)):
            assert sd["state"][name][slot].dtype == np.uint8
            assert sd["state"][name][slot + ABSMAX].dtype == np.float32
    assert all(v.dtype == np.float32 for k, v in sd["state"]["b"].items() if isinstance(v, np.ndarray))
    resumed = _copies(half)
    second = cls(resumed, **kwargs, state_dtype="int8")
    second.load_state_dict(sd)
    for g in grads[3:]:
        second.step(g)
    assert _state_bytes(second, resumed) == _state_bytes(whole, straight)


def _saved_float_state(cls, rng, **options):
    params, grads = _layout_problem(rng, 2)
    opt = cls(_copies(params), lr=1e-2, **options)
    for g in grads:
        opt.step(g)
    return params, opt.state_dict()


def _slots(state: dict) -> list[str]:
    return [s for s, v in state.items() if isinstance(v, np.ndarray) and not s.endswith(ABSMAX)]


@pytest.mark.parametrize("cls", [fo.Adam, fo.RMSprop], ids=lambda c: c.__name__)
def test_an_8bit_state_dict_loads_into_float32_state_as_its_decoded_values(rng, cls):
    """Codes decode (signed or unsigned per slot, blocks along the parameter's memory order)
    into float32 state exactly; float32 state saved beside them loads as it was."""
    options = dict(momentum=0.9, centered=True) if cls is fo.RMSprop else dict(amsgrad=True)
    params, sd = _saved_float_state(cls, rng, state_dtype="int8", **options)
    opt = cls(_copies(params), lr=1e-2, **options)
    opt.load_state_dict(sd)
    for name, param in params.items():
        saved = sd["state"][name]
        assert set(opt.state[name]) == set(_slots(saved))
        for slot in _slots(saved):
            got = opt.state[name][slot]
            assert got.dtype == np.float32 and got.shape == param.shape
            if name == "b":
                assert got.tobytes() == saved[slot].tobytes()
                continue
            order = _order_of(param)
            want = dequantize_reference(saved[slot].ravel(order=order), saved[slot + ABSMAX], slot not in UNSIGNED)
            assert_same_floats(got.ravel(order=order), want, f"{name}/{slot}")
            assert_same_floats(got.ravel(order=order), fo.dequantize_blockwise(
                saved[slot].ravel(order=order), saved[slot + ABSMAX], signed=slot not in UNSIGNED), f"{name}/{slot}")


@pytest.mark.parametrize("cls", [fo.Adam, fo.RMSprop], ids=lambda c: c.__name__)
def test_a_float32_state_dict_loads_into_8bit_state_quantized(rng, cls):
    """float32 state becomes the codes and absmax of its values along the parameter's memory
    order: the reference's and quantize_blockwise's alike; small parameters keep float32."""
    options = dict(momentum=0.9, centered=True) if cls is fo.RMSprop else dict(amsgrad=True)
    params, sd = _saved_float_state(cls, rng, **options)
    opt = cls(_copies(params), lr=1e-2, state_dtype="int8", **options)
    opt.load_state_dict(sd)
    for name, param in params.items():
        saved = sd["state"][name]
        if name == "b":
            assert all(opt.state[name][s].tobytes() == saved[s].tobytes() for s in _slots(saved))
            continue
        assert set(opt.state[name]) == {k for s in _slots(saved) for k in (s, s + ABSMAX)}
        order = _order_of(param)
        for slot in _slots(saved):
            codes = opt.state[name][slot]
            assert codes.dtype == np.uint8 and codes.shape == param.shape and _order_of(codes) == order
            values = saved[slot].ravel(order=order)
            want_codes, want_absmax = quantize_reference(values, slot not in UNSIGNED)
            assert_same_codes(codes.ravel(order=order), want_codes, f"{name}/{slot}")
            assert_same_floats(opt.state[name][slot + ABSMAX], want_absmax, f"{name}/{slot}{ABSMAX}")
            assert_same_codes(fo.quantize_blockwise(values, signed=slot not in UNSIGNED)[0], want_codes, "binding")


_POSITIVE = (np.arange(0x7F80, dtype=np.uint32) << np.uint32(16)).view(np.float32).astype(np.float64)


def widened(patterns: np.ndarray) -> np.ndarray:
    return (np.asarray(patterns).astype(np.uint32) << np.uint32(16)).view(np.float32)


def nearest_even(values: np.ndarray) -> np.ndarray:
    """Finite float32 values rounded to nearest bfloat16 patterns, ties to even (as in
    test_bfloat16_state.py: neighbours by exact float64 distance)."""
    x = np.asarray(values, np.float32).ravel(order="K")
    mag = np.abs(x.astype(np.float64))
    lo = np.searchsorted(_POSITIVE, mag, side="right") - 1
    above = np.where(lo + 1 < _POSITIVE.size, _POSITIVE[np.minimum(lo + 1, _POSITIVE.size - 1)], 2.0**128)
    down, up = mag - _POSITIVE[lo], above - mag
    out = (lo + ((up < down) | ((up == down) & (lo % 2 == 1)))).astype(np.uint16)
    return out | np.where(np.signbit(x), 0x8000, 0).astype(np.uint16)


def test_bfloat16_and_8bit_state_dicts_convert_both_ways(rng):
    """bfloat16 state loads into 8-bit state as the codes of its exact float32 values; 8-bit
    state loads into bfloat16 state as its decoded values rounded to nearest even; parameters
    below min_8bit_size go between bfloat16 and float32 as they would alone."""
    params, sd16 = _saved_float_state(fo.Adam, rng, state_dtype="bfloat16")
    opt = fo.Adam(_copies(params), lr=1e-2, state_dtype="int8")
    opt.load_state_dict(sd16)
    for name, param in params.items():
        order = _order_of(param)
        for slot in ("exp_avg", "exp_avg_sq"):
            values = widened(np.asarray(sd16["state"][name][slot]).view(np.uint16).ravel(order=order))
            if name == "b":
                assert opt.state[name][slot].tobytes() == values.tobytes()
                continue
            want_codes, want_absmax = quantize_reference(values, slot == "exp_avg")
            assert_same_codes(opt.state[name][slot].ravel(order=order), want_codes, f"{name}/{slot}")
            assert_same_floats(opt.state[name][slot + ABSMAX], want_absmax, f"{name}/{slot}{ABSMAX}")

    params, sd8 = _saved_float_state(fo.Adam, rng, state_dtype="int8")
    opt = fo.Adam(_copies(params), lr=1e-2, state_dtype="bfloat16")
    opt.load_state_dict(sd8)
    for name, param in params.items():
        order = _order_of(param)
        saved = sd8["state"][name]
        for slot in ("exp_avg", "exp_avg_sq"):
            assert set(opt.state[name]) == {"exp_avg", "exp_avg_sq"}
            if name == "b":
                values = saved[slot].ravel()
            else:
                values = dequantize_reference(saved[slot].ravel(order=order), saved[slot + ABSMAX], slot == "exp_avg")
            got = np.asarray(opt.state[name][slot]).view(np.uint16).ravel(order=order)
            assert (got == nearest_even(values)).all(), f"{name}/{slot}"


def _bad_8bit_loads():
    def edited(change):
        def make(sd):
            change(sd["state"]["v"])
            return sd
        return make

    return [
        ("float32 codes", edited(lambda s: s.update(exp_avg=s["exp_avg"].astype(np.float32))), TypeError, "exp_avg"),
        ("no absmax", edited(lambda s: s.pop("exp_avg_sq_absmax")), ValueError, "exp_avg_sq_absmax"),
        ("short absmax", edited(lambda s: s.update(exp_avg_absmax=s["exp_avg_absmax"][:-1])), ValueError,
         "exp_avg_absmax"),
        ("float64 absmax", edited(lambda s: s.update(exp_avg_absmax=s["exp_avg_absmax"].astype(np.float64))),
         TypeError, "exp_avg_absmax"),
    ]


@pytest.mark.parametrize(("what", "edit", "error", "message"), _bad_8bit_loads(),
                         ids=lambda v: v if isinstance(v, str) else "")
def test_a_bad_8bit_state_dict_is_refused_and_nothing_changes(rng, what, edit, error, message):
    params, grads = _layout_problem(rng, 2)
    opt = fo.Adam(params, lr=1e-2, state_dtype="int8")
    opt.step(grads[0])
    sd = edit(opt.state_dict())
    opt.step(grads[1])
    before = _state_bytes(opt, params)
    with pytest.raises(error, match=message):
        opt.load_state_dict(sd)
    assert _state_bytes(opt, params) == before


# ---- assigned state ----------------------------------------------------------------------------

def _coded_adam(seed: int = 3):
    rng = np.random.default_rng(seed)
    params = {"w": rng.standard_normal((64, 80)).astype(np.float32), "b": rng.standard_normal(7).astype(np.float32)}
    grads = [{k: rng.standard_normal(v.shape).astype(np.float32) for k, v in params.items()} for _ in range(2)]
    opt = fo.Adam(params, lr=0.1, betas=(0.5, 0.999), state_dtype="int8")
    opt.step(grads[0])
    return opt, params, grads[1]


BAD_STATE = [
    pytest.param("exp_avg", lambda a: np.zeros(a.shape, np.float32), TypeError, r"'exp_avg'\].*float32",
                 id="float32 codes"),
    pytest.param("exp_avg", lambda a: a.view(np.int8), TypeError, r"'exp_avg'\].*int8", id="int8 codes"),
    pytest.param("exp_avg_sq", lambda a: a.ravel().copy(), ValueError, r"'exp_avg_sq'\].*shape", id="flat codes"),
    pytest.param("exp_avg_absmax", lambda a: a[:-1].copy(), ValueError, r"'exp_avg_absmax'\]", id="short absmax"),
    pytest.param("exp_avg_sq_absmax", lambda a: np.append(a, np.float32(1)), ValueError, r"'exp_avg_sq_absmax'\]",
                 id="long absmax"),
    pytest.param("exp_avg_absmax", lambda a: a.astype(np.float64), TypeError, r"'exp_avg_absmax'\].*float64",
                 id="float64 absmax"),
    pytest.param("exp_avg_absmax", lambda a: np.repeat(a, 2)[::2], ValueError, r"'exp_avg_absmax'\]",
                 id="strided absmax"),
]


@pytest.mark.parametrize(("slot", "make", "error", "message"), BAD_STATE)
def test_bad_assigned_8bit_state_is_refused_at_the_step_and_nothing_changes(slot, make, error, message):
    """The step names the array and changes nothing: parameters, every state array, the step
    count. With the original put back the next step is that of a twin never refused."""
    opt, params, g = _coded_adam()
    twin, twin_params, _ = _coded_adam()
    original = opt.state["w"][slot]
    before = _state_bytes(opt, params)
    opt.state["w"][slot] = make(original)
    with pytest.raises(error, match=message):
        opt.step(g)
    opt.state["w"][slot] = original
    assert _state_bytes(opt, params) == before
    assert opt.state_dict()["state"]["w"]["step"] == 1
    opt.step(g)
    twin.step(g)
    assert _state_bytes(opt, params) == _state_bytes(twin, twin_params)


def test_assigned_8bit_zeros_are_used():
    """uint8 zeros and zero absmax assigned to exp_avg are read as zeros: after the step
    exp_avg is the code of (1 − 0.5)·g, exactly the reference's."""
    opt, params, g = _coded_adam()
    old, old_absmax = opt.state["w"]["exp_avg"].copy(), opt.state["w"]["exp_avg_absmax"].copy()
    opt.state["w"]["exp_avg"] = np.zeros((64, 80), np.uint8)
    opt.state["w"]["exp_avg_absmax"] = np.zeros(20, np.float32)
    opt.step(g)
    want_codes, want_absmax = quantize_reference(np.float32(0.5) * g["w"])
    assert_same_codes(opt.state["w"]["exp_avg"], want_codes, "exp_avg")
    assert_same_floats(opt.state["w"]["exp_avg_absmax"], want_absmax, "exp_avg_absmax")
    kept = np.float32(0.5) * dequantize_reference(old, old_absmax) + np.float32(0.5) * g["w"]
    assert (quantize_reference(kept)[0] != want_codes).any()  # the old state would have shown


# ---- convergence -------------------------------------------------------------------------------

def _minimize(cls, settings, gradient, x, steps, decay):
    opt = cls([x], **settings)
    for _ in range(steps):
        opt.step([gradient(x).astype(x.dtype)])
        for group in opt.param_groups:
            group["lr"] *= decay
    return x


# The registry's quadratic and Rosenbrock's valley with 8-bit state, for every rule: test_reference's
# "int8-state" layout.


def test_8bit_adam_reaches_the_minimum_of_a_large_quadratic(rng):
    """5000 elements (default min_8bit_size), curvatures over two decades, targets over blocks
    of different scales: Adam with 8-bit state converges as with float32 state."""
    n = 5000
    a = 10.0 ** rng.uniform(-1, 1, n)
    c = rng.uniform(-1, 1, n) * np.repeat(10.0 ** rng.uniform(-1, 0.5, blocks_of(n)), BLOCK)[:n]
    results = {}
    for layout in ({}, {"state_dtype": "int8"}):
        x = _minimize(fo.Adam, dict(lr=0.05, **layout), lambda x: a * (x - c), np.zeros(n, np.float32), 3000, 0.999)
        results[bool(layout)] = float(np.abs(x - c).max())
    assert results[True] < 2e-2 and results[True] < 10 * results[False] + 1e-3, results


def test_zero_pieces_that_cut_blocks_load_the_decoded_state():
    """A consolidated 8-bit state dict split into pieces that cut its blocks (a ZeRO layout
    without 8-bit state) hands each piece the decoded float32 values of its elements, and says
    so in its state_format; pieces on block boundaries get the codes and their blocks' absmax."""
    from fastoptim.distributed._state import split

    p = np.linspace(-1, 1, 5000, dtype=np.float32)
    opt = fo.Adam({"w": p}, lr=1e-2, state_dtype="int8")
    opt.step({"w": np.cos(p)})
    sd = opt.state_dict()
    decoded = {s: fo.dequantize_blockwise(sd["state"]["w"][s], sd["state"]["w"][s + ABSMAX], s not in UNSIGNED)
               for s in ("exp_avg", "exp_avg_sq")}
    signed = fo.Adam._signed_slots
    cut = split(sd, ["w"], [p], [["w"]], [[(("w", 0, 1000), 0, 0, 1000), (("w", 1000, 5000), 0, 1000, 5000)]], signed)
    assert cut["state_format"]["state_dtype"] is None
    for (key, start, stop) in (("w", 0, 1000), ("w", 1000, 5000)):
        entry = cut["state"][(key, start, stop)]
        assert set(entry) == {"step", "exp_avg", "exp_avg_sq"}
        for slot, values in decoded.items():
            assert_same_floats(entry[slot], values[start:stop], slot)
    aligned = split(sd, ["w"], [p], [["w"]], [[(("w", 0, 1024), 0, 0, 1024), (("w", 1024, 5000), 0, 1024, 5000)]],
                    signed)
    assert aligned["state_format"]["state_dtype"] == "int8"
    second = aligned["state"][("w", 1024, 5000)]
    assert second["exp_avg"].tobytes() == sd["state"]["w"]["exp_avg"][1024:].tobytes()
    assert second["exp_avg_absmax"].tobytes() == sd["state"]["w"]["exp_avg_absmax"][4:].tobytes()


def test_codes_saved_beside_a_parameter_of_the_other_memory_order_are_requantized():
    """Blocks run along the parameter's memory order: codes saved beside a Fortran-ordered
    parameter, loaded beside a C-ordered one of the same shape (and back), are decoded along the
    order they were saved in and requantized along the new one, never copied by index."""
    rng = np.random.default_rng(5)
    shape = (300, 257)
    for saved_order, loaded_order in (("F", "C"), ("C", "F")):
        p = np.asarray(rng.standard_normal(shape), np.float32, order=saved_order)
        opt = fo.Adam({"w": p}, lr=1e-2, state_dtype="int8")
        opt.step({"w": np.asarray(rng.standard_normal(shape), np.float32, order=saved_order)})
        sd = opt.state_dict()
        values = {s: fo.dequantize_blockwise(sd["state"]["w"][s].ravel(order="K"), sd["state"]["w"][s + ABSMAX],
                                             s not in UNSIGNED).reshape(shape, order=saved_order)
                  for s in ("exp_avg", "exp_avg_sq")}
        q = np.asarray(p, order=loaded_order)
        other = fo.Adam({"w": q}, lr=1e-2, state_dtype="int8")
        other.load_state_dict(sd)
        for slot, v in values.items():
            codes, absmax = fo.quantize_blockwise(v.ravel(order=loaded_order), slot not in UNSIGNED)
            held = other.state["w"][slot]
            assert held.flags.f_contiguous == (loaded_order == "F")
            assert_same_codes(held.ravel(order="K"), codes, slot)
            assert_same_floats(other.state["w"][slot + ABSMAX], absmax, slot)


def test_pieces_that_cut_blocks_between_arrays_update_every_block_once():
    """One optimizer over arrays whose sizes put the threads' piece boundaries (16384 elements
    of all arrays end to end) inside blocks: on 2 threads, the same bytes as each array stepped
    alone on one thread."""
    sizes = (10_000, 70_001, 40_000, 300)
    rng = np.random.default_rng(9)
    params = [rng.standard_normal(n).astype(np.float32) for n in sizes]
    grads = [[rng.standard_normal(n).astype(np.float32) for n in sizes] for _ in range(3)]
    threads = fo.get_num_threads()
    try:
        fo.set_num_threads(2)
        together = [p.copy() for p in params]
        opt = fo.AdamW(together, state_dtype="int8", min_8bit_size=256)
        for g in grads:
            opt.step(g)
        fo.set_num_threads(1)
        for k, p in enumerate(params):
            alone = p.copy()
            single = fo.AdamW([alone], state_dtype="int8", min_8bit_size=256)
            for g in grads:
                single.step([g[k]])
            assert alone.tobytes() == together[k].tobytes(), k
            for key, array in single.state[0].items():
                assert array.tobytes() == opt.state[k][key].tobytes(), (k, key)
    finally:
        fo.set_num_threads(threads)
