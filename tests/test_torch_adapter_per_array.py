"""fastoptim.torch's Adafactor, Muon and LBFGS against torch.optim's: parity on small modules,
state dicts both ways (through torch.save), schedulers, refusals with nothing changed, moved
memory (in a child process, so that a crash fails the test), zero copy and version counters.

torch.optim.Muon orthogonalizes in bfloat16; here it runs with that cast removed (the fixture
``muon_in_the_params_dtype``), torch's algorithm otherwise, as tests/test_adafactor_muon.py
compares fastoptim.Muon with it.
"""

from __future__ import annotations

import copy
import io
import math
import textwrap
from typing import Any

import numpy as np
import pytest
from child import run_python

torch = pytest.importorskip("torch")
fot = pytest.importorskip("fastoptim.torch")
from torch_nets import Net, twins  # noqa: E402

TOLERANCE = {torch.float32: dict(rtol=1e-5, atol=1e-6), torch.float64: dict(rtol=1e-12, atol=1e-12)}
# Muon beside torch: Newton–Schulz carries the 1e-16 differences of the norms' summation order
MUON_TOLERANCE = {torch.float32: dict(rtol=1e-5, atol=1e-6), torch.float64: dict(rtol=1e-10, atol=1e-12)}
LBFGS_TOLERANCE = dict(rtol=1e-10, atol=1e-13)  # tests/test_lbfgs.py's, float64
DTYPES = pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])


# ---- modules and helpers -----------------------------------------------------------------------
class Matrices(torch.nn.Module):
    """Three 2-D weights for Muon: tall, wide and square."""

    def __init__(self, dtype: torch.dtype) -> None:
        super().__init__()
        self.tall = torch.nn.Linear(6, 10, bias=False)  # weight 10 x 6
        self.wide = torch.nn.Linear(10, 4, bias=False)  # 4 x 10
        self.square = torch.nn.Linear(4, 4, bias=False)
        self.to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.square(torch.tanh(self.wide(torch.tanh(self.tall(x)))))


INPUTS = {Net: (4, 2, 6, 6), Matrices: (5, 6)}


def _twins(cls: Any, dtype: torch.dtype, seed: int = 0) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Net with a contiguous convolution weight (Adafactor reads its last two axes) and no unused layer."""
    return twins(cls, dtype, seed, **({"channels_last": False, "unused": False} if cls is Net else {}))


def _backward(net: torch.nn.Module, rng: np.random.Generator, dtype: torch.dtype) -> None:
    x = torch.from_numpy(rng.standard_normal(INPUTS[type(net)])).to(dtype)
    net.zero_grad(set_to_none=True)
    net(x).pow(2).mean().backward()


def _copy_grads(source: torch.nn.Module, target: torch.nn.Module, dropped: str | None = None) -> None:
    """The same gradients into `target`; the parameter named `dropped` gets none in either."""
    for (name, p), q in zip(source.named_parameters(), target.parameters()):
        if name == dropped:
            p.grad = None
        q.grad = None if p.grad is None else p.grad.clone()


def _assert_same(net: torch.nn.Module, oracle: torch.nn.Module, tol: dict[str, float]) -> None:
    for (name, p), q in zip(net.named_parameters(), oracle.parameters()):
        np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), **tol, err_msg=name)


def _assert_same_state(opt, topt, net, oracle, tol) -> None:
    ours, theirs = opt.state, topt.state
    for (name, p), q in zip(net.named_parameters(), oracle.parameters()):
        if q not in theirs:
            continue
        assert ours[p].keys() == theirs[q].keys(), name
        for slot, value in theirs[q].items():
            if slot == "step":
                assert float(ours[p][slot]) == float(value), name
            else:
                assert ours[p][slot].shape == value.shape, (name, slot)
                np.testing.assert_allclose(ours[p][slot].numpy(), value.numpy(), **tol, err_msg=f"{slot} of {name}")


def _saved_and_loaded(state_dict):
    """Through torch.save and torch.load(weights_only=True): what a checkpoint file holds."""
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def _newton_schulz_in_the_params_dtype(grad, ns_coefficients, ns_steps, eps):
    """torch.optim._muon._zeropower_via_newtonschulz without its cast to bfloat16."""
    a, b, c = ns_coefficients
    ortho = grad.T if grad.size(0) > grad.size(1) else grad
    ortho = ortho / ortho.norm().clamp(min=eps)
    for _ in range(ns_steps):
        gram = ortho @ ortho.T
        gram_update = torch.addmm(gram, gram, gram, beta=b, alpha=c)
        ortho = torch.addmm(ortho, gram_update, ortho, beta=a)
    return ortho.T if grad.size(0) > grad.size(1) else ortho


@pytest.fixture
def muon_in_the_params_dtype(monkeypatch):
    import torch.optim._muon as torch_muon

    monkeypatch.setattr(torch_muon, "_zeropower_via_newtonschulz", _newton_schulz_in_the_params_dtype)


def _u(rng, lo, hi):
    return float(rng.uniform(lo, hi))


def _random_adafactor(rng):
    return dict(lr=10 ** _u(rng, -2.5, 0), weight_decay=[0.0, _u(rng, 1e-4, 0.1)][rng.integers(2)],
                beta2_decay=_u(rng, -1.0, -0.3), d=[1.0, _u(rng, 1, 3)][rng.integers(2)],
                eps=([None, 10 ** _u(rng, -8, -3)][rng.integers(2)], [1e-3, _u(rng, 0, 1e-2)][rng.integers(2)]),
                maximize=bool(rng.integers(2)))


def _step_both(opt: Any, topt: Any, net: torch.nn.Module, oracle: torch.nn.Module, rng: np.random.Generator,
               dtype: torch.dtype, steps: int, dropped: Any = lambda step: None) -> None:
    """`steps` steps of `opt` on `net` and `topt` on `oracle` on the same gradients, the parameter
    named by `dropped(step)` without one at that step."""
    for step in range(steps):
        _backward(net, rng, dtype)
        _copy_grads(net, oracle, dropped=dropped(step))
        opt.step()
        topt.step()


def _stepped_beside(rule: str, kwargs: dict[str, Any], net: torch.nn.Module, oracle: torch.nn.Module,
                    rng: np.random.Generator, dtype: torch.dtype, steps: int, dropped: Any) -> tuple[Any, Any]:
    """fastoptim.torch's `rule` on `net` and torch.optim's on `oracle`, after `_step_both`."""
    opt = getattr(fot, rule)(net.parameters(), **kwargs)
    topt = getattr(torch.optim, rule)(oracle.parameters(), **kwargs)
    _step_both(opt, topt, net, oracle, rng, dtype, steps, dropped)
    return opt, topt


# ---- 1. Adafactor --------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(2))
@DTYPES
def test_adafactor_matches_torch_on_a_module(dtype, seed):
    rng = np.random.default_rng(seed)
    kwargs = _random_adafactor(rng)
    net, oracle = _twins(Net, dtype, seed)
    opt, topt = _stepped_beside("Adafactor", kwargs, net, oracle, rng, dtype, 20, lambda step: (
        "out.bias" if step % 3 == 1 else None))
    _assert_same(net, oracle, TOLERANCE[dtype])
    _assert_same_state(opt, topt, net, oracle, TOLERANCE[dtype])
    assert float(opt.state[net.out.bias]["step"]) == float(topt.state[oracle.out.bias]["step"]) == 13
    assert net.frozen.weight not in opt.state and torch.equal(net.frozen.weight, oracle.frozen.weight)


# ---- 2. Muon -------------------------------------------------------------------------------------
@pytest.mark.parametrize("adjust_lr_fn", [None, "match_rms_adamw"])
@pytest.mark.parametrize("nesterov", [True, False])
@DTYPES
def test_muon_matches_torch_on_a_module(dtype, nesterov, adjust_lr_fn, muon_in_the_params_dtype):
    rng = np.random.default_rng(1)
    kwargs = dict(lr=0.02, weight_decay=0.05, momentum=0.9, nesterov=nesterov, adjust_lr_fn=adjust_lr_fn)
    net, oracle = _twins(Matrices, dtype)
    opt, topt = _stepped_beside("Muon", kwargs, net, oracle, rng, dtype, 10, lambda step: (
        "square.weight" if step % 4 == 2 else None))
    _assert_same(net, oracle, MUON_TOLERANCE[dtype])
    _assert_same_state(opt, topt, net, oracle, MUON_TOLERANCE[dtype])


def test_the_patched_torch_muon_is_not_torchs_bfloat16_one(muon_in_the_params_dtype):
    """The fixture takes effect: torch's Muon no longer rounds its update to bfloat16."""
    p = torch.nn.Parameter(torch.ones(3, 5, dtype=torch.float64))
    p.grad = torch.linspace(-1, 1, 15, dtype=torch.float64).reshape(3, 5)
    torch.optim.Muon([p], lr=0.1, weight_decay=0.0).step()
    update = (1 - p.detach()) / 0.1
    assert not torch.equal(update, update.bfloat16().double())


# ---- 3. LBFGS ------------------------------------------------------------------------------------
def _regression(seed: int = 0):
    """A small float64 network, its twin, and a closure maker for a least-squares fit."""
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1)).double()
    x = torch.randn(30, 5, dtype=torch.float64)
    y = torch.randn(30, 1, dtype=torch.float64)

    def closure_for(model, opt):
        def closure():
            opt.zero_grad()
            loss = (model(x) - y).pow(2).mean()
            loss.backward()
            return loss.detach()
        return closure

    return net, copy.deepcopy(net), closure_for


def _assert_close_vector(ours: torch.Tensor, theirs: torch.Tensor, key: str) -> None:
    """rtol 1e-10 on the vector as a whole: a small element carries its neighbours' rounding."""
    expected = theirs.numpy()
    np.testing.assert_allclose(ours.numpy(), expected, rtol=1e-10, atol=1e-10 * float(np.abs(expected).max()),
                               err_msg=key)


def _assert_same_lbfgs_state(opt, topt, net, oracle) -> None:
    ours, theirs = opt.state[next(net.parameters())], topt.state[next(oracle.parameters())]
    assert (ours["func_evals"], ours["n_iter"]) == (theirs["func_evals"], theirs["n_iter"])
    assert set(ours) == set(theirs) - {"al"}
    for key in ("old_dirs", "old_stps", "ro"):
        assert len(ours[key]) == len(theirs[key]), key
        for a, b in zip(ours[key], theirs[key]):
            _assert_close_vector(a, b, key)
    for key in ("d", "prev_flat_grad", "H_diag"):
        _assert_close_vector(ours[key], theirs[key], key)
    assert ours["t"] == pytest.approx(float(theirs["t"]), rel=1e-10)
    assert ours["prev_loss"] == pytest.approx(float(theirs["prev_loss"]), rel=1e-10)


def _lbfgs_pair(line_search_fn: str | None, max_iter: int) -> tuple[Any, ...]:
    """_regression's modules and closure, with fastoptim.torch's and torch.optim's LBFGS."""
    net, oracle, closure_for = _regression()
    kwargs = dict(history_size=3, max_iter=max_iter, line_search_fn=line_search_fn)
    return net, oracle, closure_for, fot.LBFGS(net.parameters(), **kwargs), torch.optim.LBFGS(oracle.parameters(),
                                                                                                **kwargs)


@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
def test_lbfgs_matches_torch_on_a_module(line_search_fn):
    net, oracle, closure_for, opt, topt = _lbfgs_pair(line_search_fn, max_iter=5)
    for _ in range(4):
        loss = opt.step(closure_for(net, opt))
        tloss = topt.step(closure_for(oracle, topt))
        assert isinstance(loss, torch.Tensor)
        assert loss.item() == pytest.approx(tloss.item(), rel=1e-10, abs=1e-14)
        _assert_same(net, oracle, LBFGS_TOLERANCE)
    _assert_same_lbfgs_state(opt, topt, net, oracle)
    assert opt.state_dict()["param_groups"] == topt.state_dict()["param_groups"]


def test_lbfgs_returns_the_first_loss_of_the_step():
    net, _, closure_for = _regression()
    opt = fot.LBFGS(net.parameters(), max_iter=4)
    losses = []
    closure = closure_for(net, opt)

    def recorded():
        losses.append(closure())
        return losses[-1]

    assert opt.step(recorded) is losses[0] and len(losses) > 1


# ---- 4. state dicts across ---------------------------------------------------------------------------
PER_ARRAY = {"Adafactor": (Net, dict(lr=0.3, weight_decay=0.02, d=1.5), "hidden.bias"),
             "Muon": (Matrices, dict(lr=0.02, momentum=0.9, adjust_lr_fn="match_rms_adamw"), "wide.weight")}


@pytest.mark.parametrize("direction", ["torch_to_fastoptim", "fastoptim_to_torch"])
@pytest.mark.parametrize("rule", PER_ARRAY)
def test_state_dicts_cross_both_ways(rule, direction, muon_in_the_params_dtype):
    """The first half on `oracle` with one library's optimizer, one parameter never stepped in
    it (torch saves no state for it), then the other library's optimizer loads the checkpoint
    and both continue."""
    cls, kwargs, late = PER_ARRAY[rule]
    rng = np.random.default_rng(5)
    dtype = torch.float64
    net, oracle = _twins(cls, dtype)
    first, second = (torch.optim, fot) if direction == "torch_to_fastoptim" else (fot, torch.optim)
    opt_a = getattr(first, rule)(oracle.parameters(), **kwargs)
    for _ in range(6):
        _backward(net, rng, dtype)
        _copy_grads(net, oracle, dropped=late)
        opt_a.step()
    net.load_state_dict(oracle.state_dict())
    opt_b = getattr(second, rule)(net.parameters(), **kwargs)
    opt_b.load_state_dict(_saved_and_loaded(opt_a.state_dict()))
    for _ in range(6):
        _backward(net, rng, dtype)
        _copy_grads(net, oracle)
        opt_a.step()
        opt_b.step()
    _assert_same(net, oracle, dict(rtol=1e-10, atol=1e-12))


def _per_array_pair(rule: str, dtype: torch.dtype) -> tuple[torch.nn.Module, torch.nn.Module, Any, Any]:
    """PER_ARRAY's module for `rule` twice, with fastoptim.torch's and torch.optim's optimizer."""
    cls, kwargs, _ = PER_ARRAY[rule]
    net, oracle = _twins(cls, dtype)
    return net, oracle, getattr(fot, rule)(net.parameters(), **kwargs), getattr(torch.optim, rule)(
        oracle.parameters(), **kwargs)


@pytest.mark.parametrize("rule", PER_ARRAY)
def test_a_parameter_that_never_stepped_has_no_state_as_in_torch(rule, muon_in_the_params_dtype):
    net, oracle, opt, topt = _per_array_pair(rule, torch.float32)
    late = PER_ARRAY[rule][2]
    rng = np.random.default_rng(6)
    assert len(opt.state) == len(topt.state) == 0
    _step_both(opt, topt, net, oracle, rng, torch.float32, 2, lambda step: late)
    assert opt.state_dict()["state"].keys() == topt.state_dict()["state"].keys()
    assert net.get_parameter(late) not in opt.state


@pytest.mark.parametrize("steps_before", [0, 2])
@pytest.mark.parametrize("direction", ["torch_to_fastoptim", "fastoptim_to_torch"])
@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
def test_lbfgs_state_dicts_cross_both_ways(line_search_fn, direction, steps_before):
    """After `steps_before` steps (none: torch's empty state) on `oracle`, the other library's
    LBFGS loads the checkpoint and both continue."""
    net, oracle, closure_for = _regression()
    kwargs = dict(history_size=3, max_iter=4, line_search_fn=line_search_fn)
    first, second = (torch.optim, fot) if direction == "torch_to_fastoptim" else (fot, torch.optim)
    opt_a = first.LBFGS(oracle.parameters(), **kwargs)
    for _ in range(steps_before):
        opt_a.step(closure_for(oracle, opt_a))
    net.load_state_dict(oracle.state_dict())
    opt_b = second.LBFGS(net.parameters(), **kwargs)
    saved = _saved_and_loaded(opt_a.state_dict())
    assert len(saved["state"]) == (1 if steps_before else 0)
    opt_b.load_state_dict(saved)
    for _ in range(3):
        loss_a = opt_a.step(closure_for(oracle, opt_a))
        loss_b = opt_b.step(closure_for(net, opt_b))
        assert loss_a.item() == pytest.approx(loss_b.item(), rel=1e-10, abs=1e-14)
    _assert_same(net, oracle, LBFGS_TOLERANCE)
    ours, theirs = (opt_b, opt_a) if second is fot else (opt_a, opt_b)
    mine, torchs = (net, oracle) if second is fot else (oracle, net)
    _assert_same_lbfgs_state(ours, theirs, mine, torchs)


# ---- 5. schedulers ----------------------------------------------------------------------------------
@pytest.mark.parametrize("rule", PER_ARRAY)
def test_cosine_annealing_drives_adafactor_and_muon_as_torch(rule, muon_in_the_params_dtype):
    net, oracle, opt, topt = _per_array_pair(rule, torch.float64)
    rng = np.random.default_rng(7)
    schedulers = [torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=6, eta_min=1e-4) for o in (opt, topt)]
    lrs = []
    for _ in range(12):
        _backward(net, rng, torch.float64)
        _copy_grads(net, oracle)
        opt.step()
        topt.step()
        for s in schedulers:
            s.step()
        assert opt.param_groups[0]["lr"] == topt.param_groups[0]["lr"]
        lrs.append(opt.param_groups[0]["lr"])
    assert len(set(lrs)) > 3
    _assert_same(net, oracle, MUON_TOLERANCE[torch.float64])


def test_a_lambda_lr_drives_lbfgs_as_torch():
    net, oracle, closure_for = _regression()
    opt = fot.LBFGS(net.parameters(), lr=0.5, max_iter=3, history_size=4)
    topt = torch.optim.LBFGS(oracle.parameters(), lr=0.5, max_iter=3, history_size=4)
    schedulers = [torch.optim.lr_scheduler.LambdaLR(o, lambda epoch: 0.6 ** epoch) for o in (opt, topt)]
    start = [p.detach().clone() for p in net.parameters()]
    for _ in range(4):
        opt.step(closure_for(net, opt))
        topt.step(closure_for(oracle, topt))
        for s in schedulers:
            s.step()
    assert opt.param_groups[0]["lr"] == topt.param_groups[0]["lr"] == pytest.approx(0.5 * 0.6 ** 4)
    _assert_same(net, oracle, LBFGS_TOLERANCE)
    # the rate reached the steps: with lr held at 0.5 they would land elsewhere
    held, _, _ = _regression()
    fixed = torch.optim.LBFGS(held.parameters(), lr=0.5, max_iter=3, history_size=4)
    for _ in range(4):
        fixed.step(closure_for(held, fixed))
    assert not all(torch.allclose(p, q) for p, q in zip(net.parameters(), held.parameters()))
    assert not all(torch.equal(p, q) for p, q in zip(net.parameters(), start))


# ---- 6. refusals --------------------------------------------------------------------------------------
def _matrix(*shape, **kwargs):
    return torch.nn.Parameter(torch.randn(*shape, **kwargs))


NOT_CONTIGUOUS = [
    ("Adafactor", "channels_last", lambda: torch.nn.Parameter(
        torch.randn(3, 2, 3, 3).to(memory_format=torch.channels_last))),
    ("Adafactor", "transposed", lambda: torch.nn.Parameter(torch.randn(4, 6).t())),
    ("Muon", "transposed", lambda: torch.nn.Parameter(torch.randn(4, 6).t())),
    ("SparseAdam", "transposed", lambda: torch.nn.Parameter(torch.randn(4, 6).t())),
    ("SparseAdam", "channels_last", lambda: torch.nn.Parameter(
        torch.randn(3, 2, 3, 3).to(memory_format=torch.channels_last))),
]


@pytest.mark.parametrize(("rule", "layout", "make"), NOT_CONTIGUOUS, ids=[f"{r}-{w}" for r, w, _ in NOT_CONTIGUOUS])
def test_a_parameter_not_in_c_order_is_refused_at_construction(rule, layout, make):
    good = _matrix(3, 5)
    bad = make()
    before = bad.detach().clone(), bad.stride()
    with pytest.raises(ValueError, match=r"params\[1\] is not contiguous"):
        getattr(fot, rule)([good, bad])
    assert torch.equal(bad.detach(), before[0]) and bad.stride() == before[1]
    getattr(fot, rule)([good, torch.nn.Parameter(bad.detach().contiguous())])  # made contiguous: taken


def test_muon_refuses_a_1d_parameter_naming_it():
    with pytest.raises(ValueError, match=r"params\[1\] has shape \(3,\).*2-D"):
        fot.Muon([_matrix(4, 3), _matrix(3)])
    with pytest.raises(ValueError, match="2-D"):
        fot.Muon([_matrix(2, 3, 4)])


def test_lbfgs_refuses_two_param_groups_and_added_ones():
    a, b = _matrix(3), _matrix(2)
    with pytest.raises(ValueError, match="one parameter group"):
        fot.LBFGS([{"params": [a]}, {"params": [b]}])
    opt = fot.LBFGS([a])
    with pytest.raises(ValueError, match="one parameter group"):
        opt.add_param_group({"params": [b]})
    assert len(opt.param_groups) == 1


def test_lbfgs_refuses_bfloat16():
    with pytest.raises(TypeError, match="bfloat16"):
        fot.LBFGS([_matrix(3), _matrix(3, dtype=torch.bfloat16)])


@pytest.mark.parametrize("option", ["capturable", "differentiable"])
@pytest.mark.parametrize("rule", ["Adafactor", "Muon", "SparseAdam", "LBFGS"])
def test_capturable_and_differentiable_are_refused(rule, option):
    with pytest.raises(TypeError, match=option):
        getattr(fot, rule)([_matrix(3, 3)], **{option: True})


@pytest.mark.parametrize("option", ["capturable", "differentiable"])
@pytest.mark.parametrize("rule", ["Adafactor", "Muon", "SparseAdam"])
def test_the_refusal_sends_nobody_to_an_option_torch_lacks(rule, option):
    """torch.optim's class of these rules has no `option`; the message must not advise it."""
    with pytest.raises(TypeError, match="unexpected keyword"):
        getattr(torch.optim, rule)([_matrix(3, 3)], **{option: True})
    with pytest.raises(TypeError) as refused:
        getattr(fot, rule)([_matrix(3, 3)], **{option: True})
    assert f"torch.optim.{rule}({option}=True)" not in str(refused.value)


def _two_steps_in(rule: str):
    """An optimizer of `rule` two steps into a model of three matrices and its parameters."""
    net, _ = _twins(Matrices, torch.float32)
    opt = getattr(fot, rule)(net.parameters(), lr=0.1)
    rng = np.random.default_rng(8)
    for _ in range(2):
        _backward(net, rng, torch.float32)
        opt.step()
    return opt, net


def _snapshot(opt, net):
    return [p.detach().clone() for p in net.parameters()], copy.deepcopy(opt.state_dict())


def _assert_unchanged(before, after) -> None:
    (params_a, dict_a), (params_b, dict_b) = before, after
    assert all(torch.equal(a, b) for a, b in zip(params_a, params_b))
    assert dict_a["state"].keys() == dict_b["state"].keys()
    for key, entry in dict_a["state"].items():
        assert entry.keys() == dict_b["state"][key].keys()
        for slot, value in entry.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(dict_b["state"][key][slot])), (key, slot)


@pytest.mark.parametrize("rule", PER_ARRAY)
def test_a_parameter_repointed_with_p_data_is_refused_with_nothing_changed(rule):
    """The last parameter repointed: the step refuses before the first is written."""
    opt, net = _two_steps_in(rule)
    moved = net.square.weight
    old = moved.detach()
    old_values = old.clone()
    moved.data = torch.zeros_like(moved)
    before = _snapshot(opt, net)
    _backward(net, np.random.default_rng(9), torch.float32)
    with pytest.raises(ValueError, match=r"params\[2\]: its memory moved.*nothing"):
        opt.step()
    _assert_unchanged(before, _snapshot(opt, net))
    assert torch.equal(old, old_values)  # nor the memory the optimizer viewed
    assert torch.count_nonzero(moved) == 0


@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
def test_lbfgs_follows_a_parameter_repointed_with_p_data_as_torch(line_search_fn):
    net, oracle, closure_for, opt, topt = _lbfgs_pair(line_search_fn, max_iter=4)
    for model, o in ((net, opt), (oracle, topt)):
        o.step(closure_for(model, o))
        weight = model[2].weight
        old = weight.detach()
        old_values = old.clone()
        weight.data = torch.full_like(weight, 0.25)
        o.step(closure_for(model, o))
        assert torch.equal(old, old_values)  # the step wrote the new tensor, not the old memory
        assert not torch.equal(weight.detach(), torch.full_like(weight, 0.25))
    _assert_same(net, oracle, LBFGS_TOLERANCE)


def test_lbfgs_refuses_a_parameter_repointed_to_another_shape_with_nothing_changed():
    net, _, closure_for = _regression()
    opt = fot.LBFGS(net.parameters(), history_size=3, max_iter=4)
    opt.step(closure_for(net, opt))
    saved = copy.deepcopy(opt.state_dict())
    net[2].bias.data = torch.zeros(2, dtype=torch.float64)
    kept = [p.detach().clone() for p in net.parameters()]
    calls = []
    with pytest.raises(ValueError, match=r"params\[3\].*shape \(2,\).*nothing"):
        opt.step(lambda: calls.append(1))
    assert calls == []
    assert all(torch.equal(a, b) for a, b in zip(kept, net.parameters()))
    after = opt.state_dict()
    assert after["state"][0]["func_evals"] == saved["state"][0]["func_evals"]
    assert torch.equal(after["state"][0]["d"], saved["state"][0]["d"])


# ---- 7. moved memory, in a child ---------------------------------------------------------------------------
MOVED = {
    "param": ("p.share_memory_()", ["refused", "refused"]),
    "grad": ("p.grad.share_memory_()", ["stepped True", "stepped True"]),
}


@pytest.mark.parametrize("max_grad_norm", [None, 0.5])
@pytest.mark.parametrize("moved", MOVED)
@pytest.mark.parametrize("rule", ["Adafactor", "Muon"])
def test_memory_moved_by_share_memory_is_never_written_in_a_child(rule, moved, max_grad_norm):
    """share_memory_() frees the old buffer (4 MB: returned to the system) of the parameter, the
    last one, or of its gradient: the step refuses with nothing updated (param), or views the
    gradient anew and steps as a twin whose gradient stayed (grad); never a crash."""
    attack, expected = MOVED[moved]
    code = textwrap.dedent(f"""
        import torch, fastoptim.torch as fot
        torch.manual_seed(0)
        def model():
            return [torch.nn.Parameter(torch.randn(16, 64)), torch.nn.Parameter(torch.randn(64, 16384))]
        q, p = model()
        twin = [t.detach().clone().requires_grad_() for t in (q, p)]
        kwargs = dict(lr=0.01, max_grad_norm={max_grad_norm!r})
        if {rule!r} == "Muon":
            kwargs["ns_steps"] = 2
        opt, other = fot.{rule}([q, p], **kwargs), fot.{rule}(twin, **kwargs)
        def gradients():
            for a, b in zip((q, p), twin):
                a.grad = torch.randn(a.shape)
                b.grad = a.grad.clone()
        gradients()
        opt.step(); other.step()
        {attack}
        junk = [torch.full((64, 16384), 7.0) for _ in range(4)]  # reuse the freed memory
        for _ in range(2):
            kept = [q.detach().clone(), p.detach().clone()]
            try:
                opt.step()
            except ValueError as error:
                assert "memory moved" in str(error), error
                print("refused" if torch.equal(kept[0], q) and torch.equal(kept[1], p) else "refused, but changed")
            else:
                other.step()
                print("stepped", torch.equal(q, twin[0]) and torch.equal(p, twin[1]))
    """)
    done = run_python(code)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[:-1] == expected, done.stdout


@pytest.mark.parametrize("moved", ["p.grad", "p"])
def test_memory_moved_inside_one_parameters_step_leaves_it_whole_in_a_child(moved):
    """Python code runs inside a parameter's step, between Muon's momentum pass (which writes the
    state) and its last pass (which writes the parameter): here a finalizer stand-in inside the
    Newton-Schulz iteration moves the gradient or the parameter. A moved gradient: the step is
    undone whole, the gradient viewed anew and the step taken once, exactly as a twin's. A moved
    parameter: refused, the parameter and the state as before the step."""
    code = textwrap.dedent(f"""
        import torch, fastoptim.muon as muon, fastoptim.torch as fot
        torch.manual_seed(0)
        p = torch.nn.Parameter(torch.randn(64, 16384))
        twin = torch.nn.Parameter(p.detach().clone())
        opt, other = fot.Muon([p], lr=0.01, ns_steps=2), fot.Muon([twin], lr=0.01, ns_steps=2)
        for _ in range(2):  # a momentum buffer to keep
            p.grad = torch.randn(p.shape); twin.grad = p.grad.clone()
            opt.step(); other.step()
        p.grad = torch.randn(p.shape); twin.grad = p.grad.clone()
        before, buffer = p.detach().clone(), opt.state_dict()["state"][0]["momentum_buffer"].clone()
        original, junk = muon.newton_schulz, []
        def moving(*args, **kwargs):
            muon.newton_schulz = original  # once
            {moved}.share_memory_()  # frees the old buffer (4 MB: back to the system)
            junk.append(torch.full((64, 16384), 7.0))  # and reuses it
            return original(*args, **kwargs)
        muon.newton_schulz = moving
        try:
            opt.step()
        except ValueError as error:
            assert "memory moved" in str(error), error
            print("refused", torch.equal(p, before),
                  torch.equal(opt.state_dict()["state"][0]["momentum_buffer"], buffer))
        else:
            other.step()
            print("stepped", torch.equal(p, twin),
                  torch.equal(opt.state_dict()["state"][0]["momentum_buffer"],
                              other.state_dict()["state"][0]["momentum_buffer"]))
    """)
    done = run_python(code)
    assert done.returncode == 0, done.stderr[-2000:]
    expected = "stepped True True" if moved == "p.grad" else "refused True True"
    assert done.stdout.strip() == expected, done.stdout


@pytest.mark.parametrize("rule", ["Adafactor", "Muon"])
def test_memory_moved_between_two_parameters_passes_is_never_written_in_a_child(rule):
    """The garbage collector runs Python code between the passes of a step (a gc callback here,
    a finalizer in life): it moves the second parameter's memory after the first was stepped,
    past the step's first check. The pass over the second re-checks it: a PartialStepError names
    it and says the first was updated; the second is untouched and nothing freed is written."""
    code = textwrap.dedent(f"""
        import gc, torch, fastoptim.torch as fot
        from fastoptim._per_array import PartialStepError
        torch.manual_seed(0)
        q, p = torch.nn.Parameter(torch.randn(16, 64)), torch.nn.Parameter(torch.randn(64, 16384))
        kwargs = dict(ns_steps=2) if {rule!r} == "Muon" else {{}}
        opt = fot.{rule}([q, p], lr=0.01, **kwargs)
        q.grad, p.grad = torch.randn(q.shape), torch.randn(p.shape)
        q_before, p_before = q.detach().clone(), p.detach().clone()
        q_version = q._version
        moved = []
        def move_once_the_first_is_stepped(phase, info):
            if phase == "start" and not moved and not torch.equal(q, q_before):
                moved.append(p.data_ptr())
                p.share_memory_()  # frees the old buffer (4 MB: back to the system)
                junk.append(torch.full((64, 16384), 7.0))  # and reuses it
        junk = []
        gc.set_threshold(1)
        gc.callbacks.append(move_once_the_first_is_stepped)
        try:
            opt.step()
        except PartialStepError as error:
            assert "params[1]" in str(error) and "1 parameter(s) were updated" in str(error), error
            assert error.stepped == [0], error.stepped
            assert q._version > q_version, "autograd must see the parameter the step changed"
            print("partial")
        gc.callbacks.clear()
        gc.set_threshold(700)
        print(bool(moved), p.data_ptr() != moved[0] if moved else None)
        print("first stepped", not torch.equal(q, q_before), "second untouched", torch.equal(p, p_before))
    """)
    done = run_python(code)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[:-1] == ["partial", "True True", "first stepped True second untouched True"], \
        done.stdout


# ---- 8. zero copy, version counters --------------------------------------------------------------
@pytest.mark.parametrize("rule", PER_ARRAY)
def test_adafactor_and_muon_step_the_tensors_in_place_and_bump_their_versions(rule):
    cls, kwargs, late = PER_ARRAY[rule]
    rng = np.random.default_rng(10)
    net, _ = _twins(cls, torch.float32)
    opt = getattr(fot, rule)(net.parameters(), **kwargs)
    pointers = [p.data_ptr() for p in net.parameters()]
    kept = net.get_parameter(late)
    for _ in range(3):
        _backward(net, rng, torch.float32)
        kept.grad = None
        versions = {name: p._version for name, p in net.named_parameters()}
        opt.step()
        for name, p in net.named_parameters():
            assert (p._version > versions[name]) == (p.grad is not None), name
    assert [p.data_ptr() for p in net.parameters()] == pointers
    x = torch.from_numpy(rng.standard_normal(INPUTS[cls])).float()
    loss = net(x).sum()
    _backward(net, rng, torch.float32)
    opt.step()
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_lbfgs_steps_the_tensors_in_place_and_bumps_their_versions():
    net, _, closure_for = _regression()
    opt = fot.LBFGS(net.parameters(), max_iter=3)
    pointers = [p.data_ptr() for p in net.parameters()]
    versions = [p._version for p in net.parameters()]
    x = torch.ones(2, 5, dtype=torch.float64)
    loss = net(x).sum()
    opt.step(closure_for(net, opt))
    assert [p.data_ptr() for p in net.parameters()] == pointers
    assert all(p._version > v for p, v in zip(net.parameters(), versions))
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


# ---- 9. what the rules stepped one array at a time keep --------------------------------------------------------
def _state_bytes(rule: str, p: torch.Tensor) -> int:
    if rule == "Muon":
        numbers = p.numel()
    elif p.dim() >= 2:
        numbers = math.prod(p.shape[:-1]) + math.prod(p.shape[:-2]) * p.shape[-1]  # row_var, col_var
    else:
        numbers = p.numel()  # variance
    return numbers * p.element_size()


@DTYPES
@pytest.mark.parametrize("rule", PER_ARRAY)
def test_no_ema_no_state_dtype_and_the_states_memory(rule, dtype):
    cls, kwargs, _ = PER_ARRAY[rule]
    net, _ = _twins(cls, dtype)
    opt = getattr(fot, rule)(net.parameters(), **kwargs)
    _backward(net, np.random.default_rng(11), dtype)
    opt.step()
    assert opt.ema is None and opt.state_dtype is None
    memory = opt.memory()
    assert memory["state"] > 0 and memory["ema"] == 0
    assert memory["state"] == sum(_state_bytes(rule, p) for p in net.parameters())
