"""torch's own optimizer test database, side by side.

torch tests its optimizers from ``optim_db``, a list of ``OptimizerInfo`` in
``torch.testing._internal.common_optimizers`` (shipped in the torch wheel): each names an
optimizer class and a function yielding the configurations (``OptimizerInput``: params,
kwargs, desc) its tests run. Here every configuration of every rule fastoptim shares with
torch runs on both, from the same float32 and float64 parameters with the same gradients for
``STEPS`` steps, and the parameters, the state and the hyper-parameters must agree (the
tolerances of test_torch_parity.py).

What torch's database holds, and what happens to it here:

* run side by side: every configuration ``optim_inputs_func(device="cpu")`` yields, each as
  torch's ``_get_optim_inputs_including_global_cliquey_kwargs`` expands it (its flags all
  False, then each flag True in turn); ``foreach`` and ``fused`` are passed to both (fastoptim
  accepts and ignores them; torch runs its foreach or fused kernels on the CPU).
* refused by fastoptim, asserted to raise a clear TypeError/ValueError (``DROPPED``): the
  keys that only concern torch's machinery. They occur in the CPU configurations (tensor
  ``lr``) and in those the database keeps for CUDA and MPS (``capturable``, tensor ``lr`` and
  ``betas``), which are checked here too, as are complex parameters (``supports_complex``,
  torch's ``test_complex*``) and ``differentiable=True`` (one of the cliquey flags).
* torch's param-group tests where they are cheap (``supports_param_groups``): each CPU
  configuration again with the groups of torch's ``test_param_groups_weight_decay`` and
  ``test_param_groups_lr``, side by side, plus the expectation of the latter (the parameter in
  the group with torch's lr of 1e-28 does not move). The hyper-parameters of every group and
  the optimizer's ``defaults`` match torch's, less torch's machinery keys.
* torch's error inputs (``optim_error_inputs_func``): every configuration torch refuses with
  a TypeError or ValueError at construction, fastoptim refuses too, except where fastoptim
  intentionally differs (``ERRORS_THAT_DIFFER``).
* where fastoptim differs on purpose in a configuration it runs: a param group's Adagrad
  ``initial_accumulator_value`` (test_adagrad_group_initial_accumulator).
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

import fastoptim as fo

torch = pytest.importorskip("torch")
# torch's database module imports expecttest (a dependency of torch's own suite, which the test
# command installs) for its TestCase base
pytest.importorskip("expecttest")
from torch.testing._internal import common_optimizers  # noqa: E402

STEPS = 10
SHAPES = [(10, 5), (10,), (33,)]  # torch's weight and bias of its param-group tests, and one more
# The rules fastoptim shares with torch, under torch's class names (fastoptim's are the same).
# Muon is not among them: torch's Newton–Schulz runs in bfloat16, ours in the parameter's dtype, and
# its default parameters are not all 2-D; its configurations run in test_adafactor_muon.py.
TWINS = ["SGD", "Adam", "AdamW", "Adagrad", "Adadelta", "RMSprop", "Rprop", "Adamax", "NAdam", "RAdam", "ASGD",
         "Adafactor"]

# test_torch_parity.py's tolerances (copied: importing it would import every optimizer of the
# registry), and its looser float64 ones where torch keeps a running scalar in a float32 tensor
# for float64 parameters (ours are doubles): NAdam's mu_product, ASGD's eta (and mu).
TOLERANCE = {np.float32: dict(rtol=1e-5, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-14)}
# Adafactor's float64 step divides by norms and means that torch reduces in another order than
# ours (1e-16 apart), carried through its normalizations: test_oracle_parity.py's 1e-10.
LOOSER = {("nadam", np.float64): dict(rtol=1e-8, atol=1e-9), ("asgd", np.float64): dict(rtol=1e-7, atol=1e-7),
          ("adafactor", np.float64): dict(rtol=1e-10, atol=1e-12)}

# torch's machinery, which fastoptim refuses with a TypeError/ValueError: each key, the values
# refused, why, and the error fastoptim raises. Every configuration holding one is checked to
# raise instead of run.
DROPPED = {
    "capturable": ("True", "keeps torch's step counts on the accelerator for CUDA graph capture; "
                   "fastoptim steps NumPy arrays on the CPU", ValueError),
    "differentiable": ("True", "lets autograd differentiate through torch's step; fastoptim's step is "
                       "native code outside any autograd graph", ValueError),
    "lr": ("a torch.Tensor", "tensor-valued hyper-parameters serve capturable and torch.compile (a value "
           "changed in place without recompiling); fastoptim's are Python/NumPy real numbers", TypeError),
    "betas": ("torch.Tensors", "as for lr", TypeError),
    "complex params": ("complex64/complex128 parameters (supports_complex)", "fastoptim updates float32, "
                       "float64 and bfloat16 arrays", TypeError),
}
# torch's keys that are its machinery, left out when comparing hyper-parameters and defaults.
MACHINERY = ("foreach", "fused", "capturable", "differentiable")

# torch's error inputs on which fastoptim intentionally differs: desc -> (what fastoptim does
# and why, the error it raises or None where it accepts). Every other construction error torch
# expects, fastoptim raises as a TypeError or ValueError.
ERRORS_THAT_DIFFER = {
    "a param group cannot have duplicate parameters": (
        "refused (ValueError) where torch warns and steps the parameter twice", ValueError),
    "all optimizer param groups should be with/without names.": (
        "accepted: a group's arrays given without names are named by position (integers), which "
        "names given as strings cannot collide with, so groups with and without names mix", None),
}


def _is_tensor_valued(value: Any) -> bool:
    return torch.is_tensor(value) or (isinstance(value, (tuple, list)) and any(torch.is_tensor(v) for v in value))


def _dropped_keys(kwargs: dict[str, Any]) -> list[str]:
    """The keys of `kwargs` that are torch's machinery (DROPPED), in order."""
    return [k for k, v in kwargs.items()
            if (k in ("capturable", "differentiable") and v is True) or (k in DROPPED and _is_tensor_valued(v))]


@dataclass(frozen=True)
class Config:
    info: Any  # the OptimizerInfo
    desc: str
    params: Any  # OptimizerInput.params: None (torch's tests then make their own), tensors or group dicts
    kwargs: dict[str, Any]

    @property
    def name(self) -> str:
        return self.info.optim_cls.__name__

    @property
    def id(self) -> str:
        return f"{self.name}-{self.desc}"

    def __repr__(self) -> str:
        return self.id


def _infos() -> list[Any]:
    return [info for info in common_optimizers.optim_db if info.optim_cls.__name__ in TWINS]


def _flags(info: Any) -> tuple[str, ...]:
    """The cliquey flags torch's helper expands `info`'s CPU configurations with: fused where
    torch has a CPU kernel, and foreach, which torch's helper leaves out on the CPU (it has no
    CPU foreach kernels) though torch runs it there (per-tensor fallbacks)."""
    return tuple(f for f in info.supported_impls if f != "fused" or "cpu" in info.supports_fused_on)


def _configs() -> tuple[list[Config], list[Config], list[Config]]:
    """(the configurations run side by side, those fastoptim must refuse, the CPU base
    configurations for the param-group tests)."""
    run, refused, base = [], [], []
    for info in _infos():
        seen = set()
        for device in ("cpu", "cuda", "mps"):
            for oi in info.optim_inputs_func(device=device):
                if oi.desc in seen:
                    continue
                seen.add(oi.desc)
                desc = oi.desc if device == "cpu" else f"{oi.desc} [{device} config]"
                flags = _flags(info)
                kwargs = {**oi.kwargs, **{f: False for f in flags}}
                config = Config(info, desc, oi.params, kwargs)
                if _dropped_keys(kwargs):
                    refused.append(config)
                    continue
                run.append(config)
                if device == "cpu":
                    base.append(config)
                for flag in flags:
                    variant = Config(info, f"{desc} & {flag}", oi.params, {**kwargs, flag: True})
                    (refused if _dropped_keys(variant.kwargs) else run).append(variant)
    return run, refused, base


RUN, REFUSED, BASE = _configs()
DTYPES = [np.float32, np.float64]


# ---- running a configuration on both -------------------------------------------------------------
def _seed(*parts: Any) -> int:
    return zlib.crc32("/".join(map(str, parts)).encode())


def _mirror(params: Any, dtype: type) -> tuple[Any, Any, list[tuple[np.ndarray, Any]]]:
    """fastoptim's and torch's params from torch-style `params` (tensors, (name, tensor)
    pairs, group dicts), each tensor as an array of `dtype` and a leaf tensor of the same
    values (one tensor given twice: one array and one leaf, given twice), and the pairs."""
    made: dict[int, tuple[np.ndarray, Any]] = {}
    pairs: list[tuple[np.ndarray, Any]] = []

    def one(t: Any) -> tuple[np.ndarray, Any]:
        if id(t) not in made:
            array = np.array(t.detach().numpy(), dtype=dtype)
            made[id(t)] = (array, torch.tensor(array.copy(), requires_grad=True))
            pairs.append(made[id(t)])
        return made[id(t)]

    def walk(x: Any) -> tuple[Any, Any]:
        if torch.is_tensor(x):
            return one(x)
        if isinstance(x, dict):
            mirrored = {k: walk(v) if k == "params" else (v, v) for k, v in x.items()}
            return {k: v[0] for k, v in mirrored.items()}, {k: v[1] for k, v in mirrored.items()}
        if isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], str):
            a, t = walk(x[1])
            return (x[0], a), (x[0], t)
        if isinstance(x, (list, tuple)):
            both = [walk(v) for v in x]
            return [b[0] for b in both], [b[1] for b in both]
        raise TypeError(f"cannot mirror {type(x).__name__} in OptimizerInput.params")

    ours, theirs = walk(params)
    return ours, theirs, pairs


def _default_params(rng: np.random.Generator) -> list[Any]:
    """What torch's tests make when OptimizerInput.params is None: some random parameters."""
    return [torch.from_numpy(rng.standard_normal(s)) for s in SHAPES]


def _names(opt: fo.Optimizer, pairs: list[tuple[np.ndarray, Any]]) -> list[Any]:
    """fastoptim's name of each pair's array."""
    by_id = {id(p): n for g in opt.param_groups for p, n in zip(g["params"], g["param_names"])}
    return [by_id[id(a)] for a, _ in pairs]


def _hyper(group: dict[str, Any], keys: Any) -> dict[str, Any]:
    """`group`'s hyper-parameters named in `keys` (torch's), less torch's machinery."""
    def plain(v: Any) -> Any:
        return tuple(v) if isinstance(v, (list, tuple)) else v

    return {k: plain(group.get(k)) for k in keys if k not in ("params", "param_names", *MACHINERY)}


def _run_side_by_side(name: str, params: Any, kwargs: dict[str, Any], dtype: type, seed: int):
    """Both optimizers after STEPS steps on the same gradients: (ours, torch's, names, pairs)."""
    rng = np.random.default_rng(seed)
    ours, theirs, pairs = _mirror(params if params is not None else _default_params(rng), dtype)
    opt = getattr(fo, name)(ours, **kwargs)
    topt = getattr(torch.optim, name)(theirs, **kwargs)
    names = _names(opt, pairs)
    for _ in range(STEPS):
        grads = [rng.standard_normal(a.shape).astype(dtype) for a, _ in pairs]
        opt.step(dict(zip(names, grads)))
        for (_, t), g in zip(pairs, grads):
            t.grad = torch.from_numpy(g.copy())
        topt.step()
    return opt, topt, names, pairs


def _assert_same(name: str, dtype: type, opt: fo.Optimizer, topt: Any, names: list[Any],
                 pairs: list[tuple[np.ndarray, Any]]) -> None:
    """Parameters, state, hyper-parameters and defaults as torch's (test_torch_parity's checks)."""
    tol = LOOSER.get((name.lower(), dtype), TOLERANCE[dtype])
    for n, (a, t) in zip(names, pairs):
        np.testing.assert_allclose(a, t.detach().numpy(), **tol, err_msg=f"parameter {n}")
    saved = opt.state_dict()["state"]
    for n, (_, t) in zip(names, pairs):
        for slot, value in topt.state[t].items():
            if value is None:  # a slot torch's settings leave unused (SGD's buffer without momentum)
                continue
            if slot == "step":
                assert saved[n]["step"] == int(value), f"parameter {n}: step"
            elif value.ndim == 0 and slot not in opt.state[n]:  # a running scalar such as mu_product
                assert saved[n][slot] == pytest.approx(float(value), rel=1e-6), f"parameter {n}: {slot}"
            else:
                np.testing.assert_allclose(opt.state[n][slot], value.numpy(), **tol, err_msg=f"parameter {n}: {slot}")
    # torch's hyper-parameters (fastoptim may have more: RMSprop's nesterov), under torch's names and values
    assert _hyper(opt.defaults, topt.defaults) == _hyper(topt.defaults, topt.defaults)
    assert [_hyper(g, t) for g, t in zip(opt.param_groups, topt.param_groups)] == \
        [_hyper(t, t) for t in topt.param_groups]


# ---- the configurations of torch's database --------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("config", RUN, ids=repr)
def test_matches_torch(config, dtype):
    opt, topt, names, pairs = _run_side_by_side(config.name, config.params, config.kwargs, dtype,
                                                _seed(config.id, np.dtype(dtype).name))
    _assert_same(config.name, dtype, opt, topt, names, pairs)


@pytest.mark.parametrize("config", REFUSED, ids=repr)
def test_refuses_torch_machinery(config):
    keys = _dropped_keys(config.kwargs)
    errors = tuple({DROPPED[k][2] for k in keys})
    params = [np.zeros(s, np.float32) for s in SHAPES]
    with pytest.raises(errors, match="|".join(re.escape(k) for k in keys)):
        getattr(fo, config.name)(params, **config.kwargs)


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("info", [i for i in _infos() if i.supports_complex], ids=lambda i: i.optim_cls.__name__)
def test_refuses_complex_params(info, dtype):
    # torch's test_complex_2d steps complex parameters; a complex array is refused by name.
    with pytest.raises(DROPPED["complex params"][2], match=np.dtype(dtype).name):
        getattr(fo, info.optim_cls.__name__)([np.zeros((3, 2), dtype)])


def test_every_dropped_key_is_listed():
    """Nothing torch's database sets is refused unless DROPPED lists it, and the CPU
    configurations hold no machinery key but tensor lr (else this module's premise changed)."""
    cpu_keys = {k for c in REFUSED if "config]" not in c.desc for k in _dropped_keys(c.kwargs)}
    assert cpu_keys <= {"lr", "differentiable"}, cpu_keys
    assert {k for c in REFUSED for k in _dropped_keys(c.kwargs)} <= set(DROPPED)
    assert {c.name for c in BASE} == set(TWINS)


# ---- torch's param-group tests ---------------------------------------------------------------------
def _constructor_only(config: Config) -> dict[str, Any]:
    """What torch reads from its constructor's arguments alone, ignoring the groups': Adagrad's
    initial_accumulator_value (it fills every parameter's sum from the argument, whatever its
    group says; fastoptim from the group's value, see test_adagrad_group_initial_accumulator).
    Given to both constructors too, so that the groups agree with it."""
    if config.name == "Adagrad" and "initial_accumulator_value" in config.kwargs:
        return {"initial_accumulator_value": config.kwargs["initial_accumulator_value"]}
    return {}


def _weight_decay_groups(config: Config, rng: np.random.Generator) -> tuple[Any, dict[str, Any]]:
    """torch's test_param_groups_weight_decay: the configuration in each group, the second's
    weight decay 0."""
    weight, bias, _ = _default_params(rng)
    return ([dict(params=[weight], **config.kwargs), dict(params=[bias], **{**config.kwargs, "weight_decay": 0.0})],
            _constructor_only(config))


def _lr_groups(config: Config, rng: np.random.Generator) -> tuple[Any, dict[str, Any]]:
    """torch's test_param_groups_lr: the configuration (with lr 1e-3 where it sets none) in
    one group, a third parameter in another with the constructor's lr of 1e-28 (Rprop: with
    step sizes down to 0)."""
    weight, bias, _ = _default_params(rng)
    irrelevant = torch.from_numpy(rng.standard_normal(2))
    kwargs = dict(config.kwargs)
    if not kwargs.get("lr"):
        kwargs["lr"] = 1e-3
    outer: dict[str, Any] = {"lr": 1e-28, **_constructor_only(config)}
    if config.name == "Rprop":
        outer["step_sizes"] = (0, 50)
    return [dict(params=[weight, bias], **kwargs), dict(params=[irrelevant])], outer


GROUP_TESTS = {"weight_decay": _weight_decay_groups, "lr": _lr_groups}


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("test", list(GROUP_TESTS))
@pytest.mark.parametrize("config", [c for c in BASE if c.info.supports_param_groups], ids=repr)
def test_param_groups_match_torch(config, test, dtype):
    seed = _seed(config.id, test, np.dtype(dtype).name)
    groups, outer = GROUP_TESTS[test](config, np.random.default_rng(seed))
    opt, topt, names, pairs = _run_side_by_side(config.name, groups, outer, dtype, seed)
    _assert_same(config.name, dtype, opt, topt, names, pairs)
    if test == "lr":  # torch's expectation: the group at lr 1e-28 did not move
        start = groups[1]["params"][0].numpy().astype(dtype)
        np.testing.assert_array_equal(pairs[-1][0], start)


def test_adagrad_group_initial_accumulator():
    """Where fastoptim differs from torch on purpose: a group's initial_accumulator_value fills
    its parameters' sums in fastoptim, as every other hyper-parameter of a group applies to its
    parameters; torch fills every sum from the constructor's argument and ignores the group's
    (torch.optim.Adagrad.__init__). Should torch change, this fails, and _constructor_only goes."""
    arrays = [np.zeros(3), np.zeros(3)]
    tensors = [torch.zeros(3, requires_grad=True), torch.zeros(3, requires_grad=True)]
    opt = fo.Adagrad([dict(params=arrays[:1], initial_accumulator_value=0.1), dict(params=arrays[1:])],
                     initial_accumulator_value=0.5)
    topt = torch.optim.Adagrad([dict(params=tensors[:1], initial_accumulator_value=0.1),
                                dict(params=tensors[1:])], initial_accumulator_value=0.5)
    opt.step([np.ones(3), np.ones(3)])
    for t in tensors:
        t.grad = torch.ones(3)
    topt.step()
    np.testing.assert_allclose(opt.state[0]["sum"], 1.1)
    np.testing.assert_allclose(topt.state[tensors[0]]["sum"].numpy(), 1.5)
    np.testing.assert_allclose(opt.state[1]["sum"], 1.5)
    np.testing.assert_allclose(topt.state[tensors[1]]["sum"].numpy(), 1.5)


# ---- torch's error inputs ----------------------------------------------------------------------------
def _error_inputs() -> list[tuple[Any, Any]]:
    out = []
    for info in _infos():
        if info.optim_error_inputs_func is None:
            continue
        for error in info.optim_error_inputs_func(device="cpu", dtype=torch.float32):
            if error.error_on == common_optimizers.OptimizerErrorEnum.CONSTRUCTION_ERROR:
                out.append((info, error))
    return out


@pytest.mark.parametrize(("info", "error"), _error_inputs(),
                         ids=lambda x: x.optim_cls.__name__ if hasattr(x, "optim_cls") else
                         x.optimizer_error_input.desc)
def test_refuses_what_torch_refuses(info, error):
    oi = error.optimizer_error_input
    rng = np.random.default_rng(0)
    params, _, _ = _mirror(oi.params if oi.params is not None else _default_params(rng), np.float32)
    make = lambda: getattr(fo, info.optim_cls.__name__)(params, **oi.kwargs)  # noqa: E731
    if oi.desc in ERRORS_THAT_DIFFER:
        raises = ERRORS_THAT_DIFFER[oi.desc][1]
        if raises is None:
            make()
        else:
            with pytest.raises(raises):
                make()
        return
    assert error.error_type in (TypeError, ValueError), (error.error_type, oi.desc)
    with pytest.raises((TypeError, ValueError)):
        make()
