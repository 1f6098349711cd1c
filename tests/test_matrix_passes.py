"""The native passes of Adafactor and Muon refuse every array they cannot use before touching
any: a wrong dtype, order, size or writeability raises, and the arrays keep their bytes."""

from __future__ import annotations

import numpy as np
import pytest

from fastoptim import _core


def _arrays(shape=(6, 5), dtype=np.float32):
    rng = np.random.default_rng(0)
    rows, cols = shape[-2], shape[-1]
    batch = int(np.prod(shape[:-2], dtype=np.int64))
    return dict(param=rng.standard_normal(shape).astype(dtype), grad=rng.standard_normal(shape).astype(dtype),
                rs=np.ones(batch * rows, dtype), cs=np.ones(batch * cols, dtype),
                rows_sq=np.zeros(batch * rows), cols_sq=np.zeros(batch * cols))


def _call(name, a):
    if name == "factored_moments":
        return _core.factored_moments(a["param"], a["grad"], 1.0, a["rows_sq"], a["cols_sq"])
    if name == "factored_update_sq":
        return _core.factored_update_sq(a["param"], a["grad"], 1.0, a["rs"], a["cs"], 1e15)
    if name == "factored_apply":
        return _core.factored_apply(a["param"], a["grad"], 1.0, a["rs"], a["cs"], 1e15, 1.0, 0.1)
    if name == "variance_moments":
        return _core.variance_moments(a["param"], a["grad"], 1.0, a["variance"], 0.5, 1e-30)
    if name == "variance_apply":
        return _core.variance_apply(a["param"], a["grad"], 1.0, a["variance"], 1e-30, 1.0, 0.1)
    if name == "muon_momentum":
        return _core.muon_momentum(a["grad"], 1.0, a["variance"], a["out"], 0.9, True)
    return _core.decay_and_subtract(a["param"], a["grad"], 0.5, 0.1)


FACTORED = ["factored_moments", "factored_update_sq", "factored_apply"]
ELEMENTWISE = ["variance_moments", "variance_apply", "muon_momentum", "decay_and_subtract"]


def _with_elementwise(a):
    a["variance"] = np.ones_like(a["param"])
    a["out"] = np.zeros_like(a["param"])
    return a


def _spoilers():
    """(which array, how it is spoiled): each must be refused."""
    return [
        ("grad", lambda x: x.astype(np.float64)),             # another dtype
        ("grad", lambda x: x[..., :-1]),                       # another size, and strided
        ("grad", lambda x: np.asfortranarray(x)),              # another order
        ("grad", lambda x: x.astype(x.dtype.newbyteorder())),  # another byte order
        ("param", lambda x: _read_only(x)),                    # not writable
        ("param", lambda x: x.astype(np.int32)),               # not a float
    ]


def _read_only(x):
    x = x.copy()
    x.flags.writeable = False
    return x


@pytest.mark.parametrize("name", FACTORED + ELEMENTWISE)
@pytest.mark.parametrize("spoil", range(len(_spoilers())))
def test_a_spoiled_array_is_refused_and_nothing_changes(name, spoil):
    a = _with_elementwise(_arrays())
    key, how = _spoilers()[spoil]
    if name == "muon_momentum" and key == "param":
        key = "variance"  # Muon's pass writes its buffer
    a[key] = how(a[key])
    before = {k: v.tobytes() for k, v in a.items()}
    with pytest.raises((TypeError, ValueError)):
        _call(name, a)
    assert {k: v.tobytes() for k, v in a.items()} == before


@pytest.mark.parametrize(("key", "label"), [("rs", "row_inv"), ("cs", "col_inv"), ("rows_sq", "rows_sq"),
                                            ("cols_sq", "cols_sq")])
def test_factors_of_the_wrong_length_are_refused(key, label):
    a = _arrays((2, 6, 5))
    a[key] = a[key][:-1].copy()
    name = "factored_moments" if key.endswith("_sq") else "factored_apply"
    before = a["param"].tobytes()
    with pytest.raises(ValueError, match=label):
        _call(name, a)
    assert a["param"].tobytes() == before


def test_a_vector_is_not_factored():
    a = _arrays()
    a["param"] = a["param"].ravel()
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        _call("factored_moments", a)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_factored_sums_are_the_float64_sums(dtype):
    a = _arrays((3, 40, 37), dtype)
    param_sq = _call("factored_moments", a)
    g = a["grad"].astype(np.float64)
    np.testing.assert_allclose(param_sq, np.sum(a["param"].astype(np.float64) ** 2), rtol=1e-6)
    np.testing.assert_allclose(a["rows_sq"], np.sum(g * g, axis=-1).ravel(), rtol=1e-6)
    np.testing.assert_allclose(a["cols_sq"], np.sum(g * g, axis=-2).ravel(), rtol=1e-6)


@pytest.mark.parametrize("shape", [(0, 5), (2, 0, 5), (0, 0), (5, 0)])
def test_empty_matrices_have_zero_sums(shape):
    a = _arrays(shape)
    a["rows_sq"][...] = 7.0
    a["cols_sq"][...] = 7.0
    assert _call("factored_moments", a) == 0.0
    assert not a["rows_sq"].any() and not a["cols_sq"].any()


@pytest.mark.parametrize("key", ["rs", "rows_sq"])
def test_misaligned_factors_are_refused(key):
    a = _arrays((4, 6))
    raw = np.zeros(a[key].nbytes + 1, np.uint8)[1:]  # one byte in: misaligned
    a[key] = raw.view(a[key].dtype)
    with pytest.raises(ValueError, match="aligned"):
        _call("factored_moments" if key == "rows_sq" else "factored_apply", a)


def test_errors_name_the_array_at_fault():
    a = _with_elementwise(_arrays())
    a["variance"] = a["variance"].astype(np.int32)
    with pytest.raises(TypeError, match="buffer must be"):
        _call("muon_momentum", a)
    a = _arrays()
    a["grad"] = a["grad"][:2].copy()
    with pytest.raises(ValueError, match="x holds"):
        _call("decay_and_subtract", a)
