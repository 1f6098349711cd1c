"""Clocks are kept per parameter, as torch keeps `step`: a state dict may give the parameters of
one group different steps (torch's, after steps that skipped a parameter), and each then
continues exactly as it would have alone."""

from __future__ import annotations

import numpy as np
import pytest

import fastoptim as fo
from fastoptim import _core
from registry import CASES

# rows whose cls builds an Optimizer (a class, or a builder such as the cautious rows'), not a Lookahead
OPTIMIZER_CASES = [c for c in CASES if isinstance(c.cls([np.zeros(1)]), fo.Optimizer)]


def _grads(rng: np.random.Generator, params: list[np.ndarray]) -> list[np.ndarray]:
    return [rng.standard_normal(p.shape).astype(p.dtype) for p in params]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", OPTIMIZER_CASES, ids=lambda c: c.name)
def test_parameters_of_one_group_keep_their_own_steps(case, dtype) -> None:
    rng = np.random.default_rng(3)
    kwargs = case.arg_sets[-1]
    # Apart: each parameter in an optimizer of its own, stepped a different number of times.
    apart = [rng.standard_normal(n).astype(dtype) for n in (37, 1029)]
    alone = [case.cls({name: p}, **kwargs) for name, p in zip("ab", apart)]
    for opt, steps in zip(alone, (3, 7)):
        for _ in range(steps):
            opt.step(_grads(rng, [apart[alone.index(opt)]]))
    # Together: one group holding copies, loaded from both state dicts.
    together = [p.copy() for p in apart]
    joint = case.cls({"a": together[0], "b": together[1]}, **kwargs)
    saved = joint.state_dict()
    for opt in alone:
        saved["state"].update(opt.state_dict()["state"])
    joint.load_state_dict(saved)
    assert [joint.state_dict()["state"][n]["step"] for n in "ab"] == [3, 7]
    for _ in range(5):
        grads = _grads(rng, apart)
        for opt, g in zip(alone, grads):
            opt.step([g])
        joint.step(grads)
    for p, q in zip(apart, together):
        assert p.tobytes() == q.tobytes(), case.name
    state = joint.state_dict()["state"]
    assert [state[n]["step"] for n in "ab"] == [8, 12]
    for opt, name in zip(alone, "ab"):
        for slot, value in opt.state_dict()["state"][name].items():
            if isinstance(value, np.ndarray):
                assert value.tobytes() == state[name][slot].tobytes(), (name, slot)
            else:
                assert value == state[name][slot], (name, slot)


def test_torch_rules_keep_clocks_per_parameter() -> None:
    clocks = {rule: info["clock"] for rule, info in _core.rules().items()}
    assert clocks.pop("lookahead") == "per_group"  # Lookahead counts its own steps
    assert set(clocks.values()) == {"per_param"}
