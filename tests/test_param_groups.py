"""Param groups: per-group hyper-parameters, edits between steps, groups added later."""

from __future__ import annotations

import numpy as np

import fastoptim as fo
import reference


def test_each_group_uses_its_own_hyper_parameters(rng):
    a, b = rng.standard_normal(10), rng.standard_normal(10)
    ga, gb = rng.standard_normal(10), rng.standard_normal(10)
    want_a, want_b = a - 0.1 * ga, b - 0.01 * gb
    opt = fo.SGD([{"params": [a]}, {"params": [b], "lr": 0.01}], lr=0.1)
    opt.step([ga, gb])
    np.testing.assert_allclose(a, want_a, rtol=1e-15)
    np.testing.assert_allclose(b, want_b, rtol=1e-15)


def test_an_edited_lr_applies_at_the_next_step(rng):
    p = rng.standard_normal(10)
    g = rng.standard_normal(10)
    opt = fo.SGD([p], lr=0.1)
    opt.param_groups[0]["lr"] = 0.5
    want = p - 0.5 * g
    opt.step([g])
    np.testing.assert_allclose(p, want, rtol=1e-15)


def test_edited_betas_and_enabling_amsgrad_take_effect(rng):
    p = rng.standard_normal(20)
    grads = [rng.standard_normal(20) for _ in range(4)]
    start = p.copy()
    opt = fo.Adam([p], lr=0.01)
    opt.step([grads[0]])
    opt.param_groups[0]["betas"] = (0.5, 0.9)
    opt.param_groups[0].update(amsgrad=True)
    for g in grads[1:]:
        opt.step([g])
    # reference: step 1 with defaults, then steps 2-4 with the new settings
    ref, st = start.copy(), {}
    reference.adam(ref, grads[0], st, dict(lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                                          amsgrad=False, maximize=False), 1)
    for t, g in enumerate(grads[1:], start=2):
        reference.adam(ref, g, st, dict(lr=0.01, betas=(0.5, 0.9), eps=1e-8, weight_decay=0.0,
                                        amsgrad=True, maximize=False), t)
    np.testing.assert_allclose(p, ref, rtol=1e-12)
    assert "max_exp_avg_sq" in opt.state[0]


def test_a_group_added_later_starts_at_step_zero(rng):
    a, b = rng.standard_normal(5), rng.standard_normal(5)
    opt = fo.Adam([a], lr=0.1)
    for _ in range(3):
        opt.step([np.ones(5)])
    opt.add_param_group({"params": [b], "lr": 0.2})
    b_start = b.copy()
    opt.step([np.ones(5), np.ones(5)])
    # first Adam step moves every element by lr (m/sqrt(v) = 1 after bias correction)
    np.testing.assert_allclose(b, b_start - 0.2, rtol=1e-7)
    sd = opt.state_dict()
    assert sd["state"][0]["step"] == 4 and sd["state"][1]["step"] == 1


def test_params_as_dict_list_and_named_pairs():
    w = np.zeros(3)
    assert fo.SGD({"w": w}).param_groups[0]["param_names"] == ["w"]
    assert fo.SGD([w]).param_groups[0]["param_names"] == [0]
    assert fo.SGD([("w", w)]).param_groups[0]["param_names"] == ["w"]
    opt = fo.SGD([{"params": {"w": w}}, {"params": [np.zeros(2)], "lr": 0.5}])
    assert [g["param_names"] for g in opt.param_groups] == [["w"], [0]]


def test_repr_names_every_group_and_hyper_parameter():
    opt = fo.AdamW({"w": np.zeros(3, np.float32)}, lr=0.01)
    text = repr(opt)
    assert text.startswith("AdamW (") and "Parameter Group 0" in text
    assert "lr: 0.01" in text and "weight_decay: 0.01" in text and "3 elements (float32)" in text


def test_params_from_a_generator():
    arrays = [np.zeros(3), np.zeros(2)]
    opt = fo.SGD(a for a in arrays)
    assert [len(g["params"]) for g in opt.param_groups] == [2]
