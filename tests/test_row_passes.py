"""Hostile, direct tests of the row-sparse entry points _core.coalesce_rows and _core.row_step
(row_binding.cpp, row_passes.hpp). Every refusal names what it refused and writes nothing, not
even to the good tables before the bad one; valid steps match a float64 NumPy reference of the
formulas in row_passes.hpp, and rows a step does not name keep their bits."""

from __future__ import annotations

import re

import numpy as np
import pytest
from child import run_python

from fastoptim import _core

RULES = ("sparse_adam", "rowwise_adagrad")
COEFFS = {"sparse_adam": (0.5, 0.3, 1e-8, -0.2), "rowwise_adagrad": (0.1, 1e-10, 0.5)}


def table(rule, dtype=np.float32, shape=(6, 5), rows=(1, 4), mult=0.5, seed=0):
    """[param, state, state2, values, rows, mult, coefficients] for `rule`; rows None: dense."""
    rng = np.random.default_rng(seed)
    n = shape[0] if shape else 1
    count = n if rows is None else len(rows)
    p = np.array(rng.uniform(0.5, 1.5, shape), dtype)
    if rule == "sparse_adam":
        s, s2 = np.array(rng.standard_normal(shape), dtype), np.array(rng.uniform(0, 1, shape), dtype)
    else:
        s, s2 = rng.uniform(0, 1, n).astype(dtype), None
    g = rng.standard_normal((count, *shape[1:])).astype(dtype)
    return [p, s, s2, g, None if rows is None else np.array(rows, np.int64), mult, COEFFS[rule]]


def reference(rule, entry):
    """One step from row_passes.hpp's formulas in float64: param, state, state2 as rows."""
    p, s, s2, g, rows, mult, c = entry
    n, cols = (p.shape[0] if p.ndim else 1), int(np.prod(p.shape[1:]))
    at = np.arange(n) if rows is None else rows
    p, s = p.astype(np.float64).reshape(n, cols), s.astype(np.float64).reshape(n, s.size // n)
    g = g.astype(np.float64).reshape(len(at), cols) * mult
    if rule == "sparse_adam":
        v = s2.astype(np.float64).reshape(n, cols)
        s[at] += (g - s[at]) * c[0]
        v[at] += (g * g - v[at]) * c[1]
        p[at] += c[3] * s[at] / (np.sqrt(v[at]) + c[2])
        return p, s, v
    g = g + c[0] * p[at]
    s[at, 0] += (g * g).mean(axis=1) if g.shape[1] else 0.0
    p[at] -= c[2] / (np.sqrt(s[at]) + c[1]) * g
    return p, s, None


def check_step(rule, entry, old):
    """`entry` after one step holds reference(old), and its rows not stepped hold old's bits."""
    n = old[0].shape[0] if old[0].ndim else 1
    stepped = np.zeros(n, bool)
    stepped[slice(None) if old[4] is None else old[4]] = True
    tol = 1e-12 if old[0].dtype == np.float64 else 1e-5
    for got, was, want in zip(entry[:3], old[:3], reference(rule, old)):
        if got is None:
            continue
        got, was = got.reshape(n, got.size // n), was.reshape(n, was.size // n)
        assert got[~stepped].tobytes() == was[~stepped].tobytes()
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max(initial=1.0))


def snapshot(tables):
    """(array, copy) for every array in `tables`, whatever their entries are."""
    return [(a, a.copy()) for e in tables if isinstance(e, (list, tuple)) for a in e if isinstance(a, np.ndarray)]


def assert_unchanged(pairs):
    for a, was in pairs:
        assert a.tobytes() == was.tobytes(), "a refused call wrote to an array"


def misaligned(a):
    """A copy of `a`, C-contiguous but one byte into a uint8 buffer: not aligned to its elements."""
    out = np.zeros(a.nbytes + 1, np.uint8)[1:].view(a.dtype).reshape(a.shape)
    out[...] = a
    assert not out.flags.aligned
    return out


def put(i, make):
    """An edit of a table: its element i replaced by make(element i)."""
    return lambda e: (*e[:i], make(e[i]), *e[i + 1:])


def constant(value):
    return lambda _: value


P, S, S2, G, R, M, C = range(7)
BOTH, ADAM, ADAGRAD = RULES, ("sparse_adam",), ("rowwise_adagrad",)
SLOTS = [(P, "param", BOTH), (S, "state", BOTH), (S2, "second state", ADAM), (G, "values", BOTH)]
LAYOUTS = [("strided", lambda a: np.stack([a, a], axis=-1)[..., 0], ValueError, "must be C-contiguous"),
           ("misaligned", misaligned, ValueError, "must be aligned to its elements"),
           ("read-only", lambda a: np.broadcast_to(a, a.shape), ValueError, "is read-only"),  # a read-only view
           ("a list", np.ndarray.tolist, TypeError, "must be a numpy.ndarray"),
           ("float64", lambda a: a.astype(np.float64), TypeError, "must be a native-order float32 array")]
INT64, F32 = " rows must be a one-dimensional int64 array", " param must be a native-order float32 array"
RANGE, ROWS_C = "out of range for a parameter of 6 rows", " rows must be C-contiguous and aligned"
TUPLE, COUNT = " must be a tuple (param,", " coefficients: "
# name, rules, edit of a float32 (6, 5) table of rows (1, 4), error, message after "tables[2]" (pybind11's: all)
CASES = [(f"{name} {how}", rules, put(i, make), error, f" {name} {text}")
         for i, name, rules in SLOTS for how, make, error, text in LAYOUTS
         if (i, how) not in ((G, "read-only"), (P, "float64"))] + [
    ("param int32", BOTH, put(P, lambda a: a.astype(np.int32)), TypeError, F32),
    ("param float16", BOTH, put(P, lambda a: a.astype(np.float16)), TypeError, F32),
    ("param big-endian", BOTH, put(P, lambda a: a.astype(">f4")), TypeError, F32),
    ("param Fortran", BOTH, put(P, np.asfortranarray), ValueError, " param must be C-contiguous"),
    ("param float64 state float32", BOTH, put(P, lambda a: a.astype(np.float64)), TypeError,
     " state must be a native-order float64 array"),
    ("adam state short", ADAM, put(S, lambda a: a[:-1]), ValueError, " state holds 25 elements, expected 30"),
    ("adam state2 long", ADAM, put(S2, constant(np.zeros(31, np.float32))), ValueError, " second state holds 31"),
    ("adagrad state short", ADAGRAD, put(S, lambda a: a[:-1]), ValueError, " state holds 5 elements, expected 6"),
    ("adagrad state per element", ADAGRAD, put(S, constant(np.zeros(30, np.float32))), ValueError,
     " state holds 30 elements, expected 6"),
    ("values short", BOTH, put(G, lambda a: a[:-1]), ValueError, " values holds 5 elements, expected 10"),
    ("values dense short", BOTH, put(R, constant(None)), ValueError, " values holds 10 elements, expected 30"),
    ("rows negative", BOTH, put(R, constant(np.array([-1, 2]))), ValueError, f" rows[0] is -1, {RANGE}"),
    ("rows at table_rows", BOTH, put(R, constant(np.array([1, 6]))), ValueError, f" rows[1] is 6, {RANGE}"),
    ("rows huge", BOTH, put(R, constant(np.array([1, 2**62]))), ValueError, f" rows[1] is {2**62}, {RANGE}"),
    ("rows repeated", BOTH, put(R, constant(np.array([1, 1]))), ValueError, " rows names row 1 twice"),
    ("rows repeated apart", BOTH, put(R, constant(np.array([4, 1, 4]))), ValueError, " rows names row 4 twice"),
    ("rows int32", BOTH, put(R, lambda a: a.astype(np.int32)), TypeError, INT64),
    ("rows uint64", BOTH, put(R, lambda a: a.astype(np.uint64)), TypeError, INT64),
    ("rows 2-D", BOTH, put(R, lambda a: a[None]), TypeError, INT64),
    ("rows list", BOTH, put(R, np.ndarray.tolist), TypeError, " rows must be a numpy.ndarray"),
    ("rows strided", BOTH, put(R, lambda a: np.repeat(a, 2)[::2]), ValueError, ROWS_C),
    ("rows misaligned", BOTH, put(R, misaligned), ValueError, ROWS_C),
    ("state2 given", ADAGRAD, lambda e: (*e[:S2], e[S].copy(), *e[G:]), ValueError,
     ": row-wise Adagrad has one state array"),
    ("entry a list", BOTH, list, TypeError, TUPLE),
    ("entry of 6", BOTH, lambda e: tuple(e[:6]), TypeError, TUPLE),
    ("entry of 8", BOTH, lambda e: (*e, None), TypeError, TUPLE),
    ("entry None", BOTH, constant(None), TypeError, TUPLE),
    ("entry an array", BOTH, lambda e: e[P], TypeError, TUPLE),
    ("3 coefficients", ADAM, put(C, constant((0.1,) * 3)), ValueError, COUNT),
    ("5 coefficients", ADAM, put(C, constant((0.1,) * 5)), ValueError, COUNT),
    ("4 coefficients", ADAGRAD, put(C, constant((0.1,) * 4)), ValueError, COUNT),
    ("no coefficients", ADAGRAD, put(C, constant(())), ValueError, COUNT),
    ("mult a string", BOTH, put(M, constant("x")), TypeError, " mult must be a float"),
    ("mult a numpy float", BOTH, put(M, constant(np.float32(1))), TypeError, " mult must be a float"),
    ("coefficients a string", BOTH, put(C, constant("abc")), TypeError, " coefficients must be a tuple of floats"),
    ("coefficients a list", BOTH, put(C, list), TypeError, " coefficients must be a tuple of floats"),
    ("a coefficient None", ADAM, put(C, constant((0.1, None, 0.1, 0.1))), TypeError, " coefficient must be a float"),
]


@pytest.mark.parametrize(("rule", "edit", "error", "fragment"),
                         [pytest.param(rule, *case, id=f"{rule}-{name}")
                          for name, rules, *case in CASES for rule in rules])
def test_row_step_refuses_and_writes_nothing(rule, edit, error, fragment):
    tables = [tuple(table(rule, np.float32, seed=1)), tuple(table(rule, np.float64, seed=2)),
              edit(table(rule, np.float32, seed=3))]
    before = snapshot(tables)
    with pytest.raises(error, match=re.escape("tables[2]" + fragment)):
        _core.row_step(rule, tables)
    assert_unchanged(before)


@pytest.mark.parametrize(("rule", "container", "error", "fragment"), [
    ("adam", list, ValueError, "rule must be 'sparse_adam' or 'rowwise_adagrad'"),
    ("", list, ValueError, "rule must be 'sparse_adam' or 'rowwise_adagrad'"),
    ("rowwise_adagrad", tuple, TypeError, "incompatible function arguments"),
])
def test_row_step_refuses_a_bad_rule_or_container(rule, container, error, fragment):
    good = [tuple(table("rowwise_adagrad")), tuple(table("sparse_adam"))]
    before = snapshot(good)
    with pytest.raises(error, match=re.escape(fragment)):
        _core.row_step(rule, container(good))
    assert_unchanged(before)


SHAPES = [((6, 5), (1, 4)), ((6, 5), None), ((7, 37), (0, 2, 6)), ((7, 37), (6, 0, 2)), ((3, 64), (1,)),
          ((5, 0), (0, 3)), ((5, 0), None), ((9,), (0, 8)), ((), None), ((), (0,)), ((4, 3, 7), (3,)), ((4, 2), ())]


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("shape", "rows"), SHAPES)
def test_row_step_matches_the_reference(rule, dtype, shape, rows):
    entry = table(rule, dtype, shape, rows, mult=-1.5)
    old = [a.copy() if isinstance(a, np.ndarray) else a for a in entry]
    _core.row_step(rule, [tuple(entry)])
    check_step(rule, entry, old)


@pytest.mark.parametrize("rule", RULES)
def test_one_call_steps_every_table_of_both_dtypes(rule):
    entries = [table(rule, dtype, shape, rows, mult=0.25 + k, seed=k)
               for k, (shape, rows) in enumerate(SHAPES) for dtype in (np.float64, np.float32)]
    for entry in entries[::3]:  # read-only values and rows are taken: the step only reads them
        for a in entry[G], entry[R]:
            if a is not None:
                a.flags.writeable = False
    olds = [[a.copy() if isinstance(a, np.ndarray) else a for a in e] for e in entries]
    _core.row_step(rule, [tuple(e) for e in entries])
    for entry, old in zip(entries, olds):
        check_step(rule, entry, old)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_float32_constants_beyond_its_range_become_signed_inf(sign):
    wild = table("rowwise_adagrad", mult=sign * 1e300)
    wild[C] = (sign * 1e300,) * 3
    _core.row_step("rowwise_adagrad", [tuple(wild), tuple(table("rowwise_adagrad", np.float64, mult=1e300))])
    entry = table("sparse_adam", np.float32, mult=sign * 1e300)  # m ← g·mult exactly when c0 = 1
    entry[G], entry[C] = np.abs(entry[G]) + 0.5, (1.0, 0.5, sign * 1e300, -1e300)
    _core.row_step("sparse_adam", [tuple(entry)])
    assert (entry[S][[1, 4]] == sign * np.inf).all()


def coalesced(indices, values):
    """Distinct indices in order; each one's rows summed in the order given, in the values' dtype."""
    rows = np.unique(indices)
    sums = np.empty((len(rows), *values.shape[1:]), values.dtype)
    for u, r in enumerate(rows):
        first, *later = np.flatnonzero(indices == r)
        sums[u] = values[first]
        for k in later:
            sums[u] += values[k]
    return rows, sums


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("tail", [(), (3,), (2, 3), (17,)])
def test_coalesce_rows_sums_duplicates_in_order(rng, dtype, tail):
    indices = rng.integers(0, 7, 40)
    values = (rng.standard_normal((40, *tail)) * 10.0 ** rng.integers(-6, 7, (40, *tail))).astype(dtype)
    before = snapshot([(indices, values)])
    rows, sums = _core.coalesce_rows(indices, values, 7)
    want_rows, want = coalesced(indices, values)
    assert_unchanged(before)
    assert rows.dtype == np.int64 and rows.tolist() == want_rows.tolist()
    assert sums.dtype == dtype and sums.shape == want.shape and sums.tobytes() == want.tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("indices", "table_rows"), [([0, 2, 5], 6), ([5, 0, 2], 6), ([4], 5), ([], 3), ([], 0),
                                                     ([0, 1, 1, 2], 3)])
def test_coalesce_rows_returns_distinct_indices_themselves(dtype, indices, table_rows):
    indices = np.array(indices, np.int64)
    values = np.arange(len(indices) * 6, dtype=dtype).reshape(len(indices), 2, 3)
    rows, sums = _core.coalesce_rows(indices, values, table_rows)
    distinct = len(set(indices.tolist())) == len(indices)
    assert (rows is indices and sums is values) == distinct  # in any order: the step needs no more
    if not distinct:  # repeats: new arrays
        assert not np.shares_memory(sums, values) and rows.tolist() == [0, 1, 2]
        assert sums.tolist() == [values[0].tolist(), (values[1] + values[2]).tolist(), values[3].tolist()]


IDX = np.array([0, 3, 1])
V3 = np.ones((3, 2), np.float32)


@pytest.mark.parametrize(("indices", "values", "error", "fragment"), [
    (np.array([0, 5]), V3[:2], ValueError, "emb.indices[1] is 5, out of range for a parameter of 5 rows"),
    (np.array([2, -1]), V3[:2], ValueError, "emb.indices[1] is -1, out of range"),
    (IDX.astype(np.int32), V3, TypeError, "emb.indices must be a one-dimensional int64 array"),
    (IDX[None], V3[:1], TypeError, "emb.indices must be a one-dimensional int64 array"),
    (np.repeat(IDX, 2)[::2], V3, ValueError, "emb.indices must be C-contiguous and aligned"),
    (misaligned(IDX), V3, ValueError, "emb.indices must be C-contiguous and aligned"),
    (IDX, V3[:2], ValueError, "emb.values must have one row per index"),
    (IDX, np.array(1.0, np.float32), ValueError, "emb.values must have one row per index"),
    (IDX, V3.astype(np.int32), TypeError, "emb.values must be a native-order float32 array"),
    (IDX, V3.astype(np.float16), TypeError, "emb.values must be a native-order float32 array"),
    (IDX, V3.T.copy().T, ValueError, "emb.values must be C-contiguous"),
    (IDX, misaligned(V3), ValueError, "emb.values must be aligned to its elements"),
    ([0, 3, 1], V3, TypeError, "incompatible function arguments"),
])
def test_coalesce_rows_refuses(indices, values, error, fragment):
    before = snapshot([(indices, values)])
    with pytest.raises(error, match=re.escape(fragment)):
        _core.coalesce_rows(indices, values, 5, label="emb")
    assert_unchanged(before)


def run_child(code: str) -> None:
    """Run `code` after CHILD in a fresh interpreter: it must exit 0 and print "ok"."""
    result = run_python(CHILD + code)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), (
        f"the child exited with {result.returncode} (negative: the signal that killed it)\n"
        f"stdout: {result.stdout[-2000:]}\nstderr: {result.stderr[-4000:]}")


CHILD = """
import threading
import numpy as np
from fastoptim import _core
class Hook:  # a float whose conversion runs Python code in the middle of row_step
    def __init__(self, run): self.run = run
    def __float__(self): self.run(); return 1.0
"""


@pytest.mark.parametrize("site", ["mult", "coefficient", "len"])
def test_python_code_cannot_run_after_the_first_check(site):
    """A float-like mult or coefficient, or a tuple subclass, could run Python code after earlier
    tables were checked (moving their rows out of range): each is refused before any check."""
    run_child(f"""
p, rows, site = np.zeros((4, 3), np.float32), np.array([1, 2]), {site!r}
def move(): rows[1] = 2**40  # table 0's rows: 2**40 rows past p, were they checked already
class Entry(tuple):
    def __len__(self): move(); return 7
late = [np.zeros((4, 3), np.float32), np.zeros(4, np.float32), None, np.ones((4, 3), np.float32), None,
        Hook(move) if site == "mult" else 1.0, (0.0, 0.0, Hook(move) if site == "coefficient" else 1.0)]
try:
    _core.row_step("rowwise_adagrad", [(p, np.zeros(4, np.float32), None, np.ones((2, 3), np.float32), rows, 1.0,
                                        (0.0, 0.0, 1.0)), Entry(late) if site == "len" else tuple(late)])
    raise AssertionError("not refused")
except TypeError:
    pass
assert not p.any() and rows[1] == 2
print("ok")
""")
