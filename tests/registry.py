"""Every optimizer under test, with its argument sets, its reference and its torch twin.

A new rule joins every shared test (reference, torch parity, bits, zero copy, state dict,
bad input) by adding one row here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

import fastoptim as fo
import reference


@dataclass(frozen=True)
class Case:
    name: str
    cls: type
    reference: Callable[..., None]
    arg_sets: list[dict[str, Any]]
    random_args: Callable[[np.random.Generator], dict[str, Any]]
    torch_name: str | None = None
    solve: dict[str, Any] = field(default_factory=dict)  # settings that converge on the quadratic
    rosenbrock: dict[str, Any] | None = None  # settings for Rosenbrock's valley, where they differ

    def hyper(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """The full hyper-parameter dict a group gets from `kwargs` (plus Lookahead's k and alpha)."""
        opt = self.cls([np.zeros(1)], **kwargs)
        hyper = {k: v for k, v in opt.param_groups[0].items() if k not in ("params", "param_names")}
        if isinstance(opt, fo.Lookahead):
            hyper.update(k=opt.k, alpha=opt.alpha)
        return hyper

    def __repr__(self) -> str:
        return self.name


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _random_sgd(rng: np.random.Generator) -> dict[str, Any]:
    momentum = [0.0, _u(rng, 0.5, 0.99)][rng.integers(2)]
    nesterov = bool(momentum and rng.integers(2))
    return dict(lr=_u(rng, 1e-3, 0.1), momentum=momentum, dampening=0.0 if nesterov else _u(rng, 0, 0.5),
                weight_decay=[0.0, _u(rng, 1e-4, 1e-1)][rng.integers(2)], nesterov=nesterov,
                maximize=bool(rng.integers(2)))


def _random_adam(rng: np.random.Generator) -> dict[str, Any]:
    return dict(lr=_u(rng, 1e-4, 1e-2), betas=(_u(rng, 0.5, 0.99), _u(rng, 0.9, 0.9999)), eps=10 ** _u(rng, -10, -6),
                weight_decay=[0.0, _u(rng, 1e-4, 1e-1)][rng.integers(2)], amsgrad=bool(rng.integers(2)),
                maximize=bool(rng.integers(2)))


def _betas(rng: np.random.Generator) -> tuple[float, float]:
    return (_u(rng, 0.5, 0.99), _u(rng, 0.9, 0.9999))


def _wd(rng: np.random.Generator) -> float:
    return [0.0, _u(rng, 1e-4, 1e-1)][rng.integers(2)]


def _random_adagrad(rng: np.random.Generator) -> dict[str, Any]:
    return dict(lr=_u(rng, 1e-3, 0.1), lr_decay=[0.0, _u(rng, 0, 0.1)][rng.integers(2)], weight_decay=_wd(rng),
                initial_accumulator_value=[0.0, _u(rng, 0, 1)][rng.integers(2)], eps=10 ** _u(rng, -10, -6),
                maximize=bool(rng.integers(2)))


def _random_adadelta(rng: np.random.Generator) -> dict[str, Any]:
    return dict(lr=_u(rng, 0.1, 2.0), rho=_u(rng, 0.5, 0.99), eps=10 ** _u(rng, -7, -4), weight_decay=_wd(rng),
                maximize=bool(rng.integers(2)))


def _random_rmsprop(rng: np.random.Generator) -> dict[str, Any]:
    return dict(lr=_u(rng, 1e-4, 1e-2), alpha=_u(rng, 0.8, 0.999), eps=10 ** _u(rng, -8, -5), weight_decay=_wd(rng),
                momentum=[0.0, _u(rng, 0.5, 0.95)][rng.integers(2)], centered=bool(rng.integers(2)),
                maximize=bool(rng.integers(2)))


def _random_rprop(rng: np.random.Generator) -> dict[str, Any]:
    return dict(lr=_u(rng, 1e-3, 0.1), etas=(_u(rng, 0.3, 0.7), _u(rng, 1.1, 1.5)),
                step_sizes=(_u(rng, 1e-6, 1e-4), _u(rng, 1, 50)), maximize=bool(rng.integers(2)))


def _random_adamax(rng: np.random.Generator) -> dict[str, Any]:
    return dict(lr=_u(rng, 1e-4, 1e-2), betas=_betas(rng), eps=10 ** _u(rng, -10, -6), weight_decay=_wd(rng),
                maximize=bool(rng.integers(2)))


def _random_nadam(rng: np.random.Generator) -> dict[str, Any]:
    return dict(_random_adamax(rng), momentum_decay=_u(rng, 1e-3, 1e-2),
                decoupled_weight_decay=bool(rng.integers(2)))


def _random_radam(rng: np.random.Generator) -> dict[str, Any]:
    return dict(_random_adamax(rng), decoupled_weight_decay=bool(rng.integers(2)))


def _random_adabound(rng: np.random.Generator) -> dict[str, Any]:
    return dict(lr=_u(rng, 1e-4, 1e-2), betas=_betas(rng), final_lr=_u(rng, 0.01, 0.5), gamma=_u(rng, 1e-4, 1e-2),
                eps=10 ** _u(rng, -10, -6), weight_decay=_wd(rng), amsbound=bool(rng.integers(2)))


def _random_lamb(rng: np.random.Generator) -> dict[str, Any]:
    return dict(lr=_u(rng, 1e-4, 1e-2), betas=_betas(rng), eps=10 ** _u(rng, -8, -5), weight_decay=_wd(rng))


def _random_lars(rng: np.random.Generator) -> dict[str, Any]:
    return dict(lr=_u(rng, 0.1, 2.0), momentum=_u(rng, 0, 0.95), weight_decay=_wd(rng),
                trust_coefficient=_u(rng, 1e-4, 1e-2))


def _random_lion(rng: np.random.Generator) -> dict[str, Any]:
    return dict(lr=_u(rng, 1e-5, 1e-3), betas=_betas(rng), weight_decay=_wd(rng), maximize=bool(rng.integers(2)))


def _random_lookahead(rng: np.random.Generator) -> dict[str, Any]:
    return dict(_random_sgd(rng), k=int(rng.integers(1, 6)), alpha=_u(rng, 0, 1))


def _random_ranger(rng: np.random.Generator) -> dict[str, Any]:
    return dict(lr=_u(rng, 1e-4, 1e-2), betas=_betas(rng), eps=10 ** _u(rng, -8, -4), weight_decay=_wd(rng),
                k=int(rng.integers(1, 8)), alpha=_u(rng, 0, 1))


def _random_schedule_free(rng: np.random.Generator) -> dict[str, Any]:
    """Schedule-free's shared settings: a warmup shorter or longer than a test's steps, r > 0."""
    return dict(weight_decay=_wd(rng), r=[0.0, _u(rng, 0, 2)][rng.integers(2)],
                warmup_steps=[0, int(rng.integers(1, 15))][rng.integers(2)], weight_lr_power=_u(rng, 0, 3))


def _random_schedule_free_adamw(rng: np.random.Generator) -> dict[str, Any]:
    return dict(_random_schedule_free(rng), lr=_u(rng, 1e-3, 0.05), betas=_betas(rng), eps=10 ** _u(rng, -10, -6))


def _random_schedule_free_sgd(rng: np.random.Generator) -> dict[str, Any]:
    # momentum below 2/3 puts eval()'s lerp weight 1 - 1/momentum under -0.5
    return dict(_random_schedule_free(rng), lr=_u(rng, 1e-3, 0.2), momentum=_u(rng, 0.5, 0.99))


def _random_adopt(rng: np.random.Generator) -> dict[str, Any]:
    return dict(lr=_u(rng, 1e-4, 1e-2), betas=_betas(rng), eps=10 ** _u(rng, -8, -4), weight_decay=_wd(rng),
                weight_decouple=bool(rng.integers(2)), fixed_decay=bool(rng.integers(2)),
                clip_exponent=_u(rng, 0, 0.5), maximize=bool(rng.integers(2)))


def _random_adan(rng: np.random.Generator) -> dict[str, Any]:
    return dict(lr=_u(rng, 1e-4, 1e-2), betas=(_u(rng, 0.9, 0.99), _u(rng, 0.8, 0.99), _u(rng, 0.9, 0.999)),
                eps=10 ** _u(rng, -10, -6), eps_root=[0.0, 10 ** _u(rng, -10, -6)][rng.integers(2)],
                weight_decay=_wd(rng), maximize=bool(rng.integers(2)))


def _random_ademamix(rng: np.random.Generator) -> dict[str, Any]:
    # a warmup of α and β3 that ends inside 20 steps or after them
    return dict(lr=_u(rng, 1e-4, 1e-2), betas=(_u(rng, 0.5, 0.95), _u(rng, 0.9, 0.9999), _u(rng, 0.99, 0.9999)),
                alpha=_u(rng, 0, 10), t_alpha_beta3=[None, _u(rng, 2, 40)][rng.integers(2)],
                eps=10 ** _u(rng, -10, -6), weight_decay=_wd(rng), maximize=bool(rng.integers(2)))


def _random_adam_cautious(rng: np.random.Generator) -> dict[str, Any]:
    return dict(_random_adam(rng), decoupled_weight_decay=bool(rng.integers(2)))


def _random_sgd_cautious(rng: np.random.Generator) -> dict[str, Any]:
    # the mask is on the momentum's direction, which needs momentum: > 0 in five draws of six
    args = _random_sgd(rng)
    if not args["momentum"] and rng.integers(3):
        args["momentum"] = _u(rng, 0.5, 0.99)
    return args


def _random_asgd(rng: np.random.Generator) -> dict[str, Any]:
    # t0 inside a test's steps starts the averaging (mu < 1) there
    return dict(lr=_u(rng, 1e-3, 0.1), lambd=10 ** _u(rng, -5, -1), alpha=_u(rng, 0.5, 1.0),
                t0=[1e6, float(rng.integers(0, 15))][rng.integers(2)], weight_decay=_wd(rng),
                maximize=bool(rng.integers(2)))


def lookahead_sgd(params: Any, k: int = 3, alpha: float = 0.5, **sgd: Any) -> fo.Lookahead:
    """Lookahead around SGD, the registry's generic Lookahead case."""
    return fo.Lookahead(fo.SGD(params, **sgd), k=k, alpha=alpha)


# The cautious variants (cautious=True), a builder per rule as cls: a row is a rule, and the
# classes with a variant take cautious=True beside their own arguments.
def adam_cautious(params: Any, **kwargs: Any) -> fo.Adam:
    return fo.Adam(params, cautious=True, **kwargs)


def sgd_cautious(params: Any, **kwargs: Any) -> fo.SGD:
    return fo.SGD(params, cautious=True, **kwargs)


def sgdw_cautious(params: Any, **kwargs: Any) -> fo.SGDW:
    return fo.SGDW(params, cautious=True, **kwargs)


def lion_cautious(params: Any, **kwargs: Any) -> fo.Lion:
    return fo.Lion(params, cautious=True, **kwargs)


def ademamix_cautious(params: Any, **kwargs: Any) -> fo.AdEMAMix:
    return fo.AdEMAMix(params, cautious=True, **kwargs)


CASES = [
    Case("sgd", fo.SGD, reference.sgd,
         [dict(lr=0.05), dict(lr=0.05, momentum=0.9), dict(lr=0.02, momentum=0.9, dampening=0.3, weight_decay=0.01),
          dict(lr=0.02, momentum=0.8, nesterov=True, maximize=True)],
         _random_sgd, "SGD", dict(lr=0.1, momentum=0.9), dict(lr=1e-3, momentum=0.9)),
    Case("sgdw", fo.SGDW, reference.sgdw,
         [dict(), dict(lr=0.05, momentum=0.9, weight_decay=0.1), dict(lr=0.02, momentum=0.8, nesterov=True,
                                                                     weight_decay=0.05, maximize=True)],
         _random_sgd, None, dict(lr=0.1, momentum=0.9, weight_decay=1e-3),
         dict(lr=1e-3, momentum=0.9, weight_decay=1e-4)),
    Case("adam", fo.Adam, reference.adam,
         [dict(lr=1e-2), dict(lr=1e-2, weight_decay=0.1, amsgrad=True), dict(lr=3e-3, betas=(0.8, 0.99), maximize=True),
          dict(lr=1e-2, weight_decay=0.05, decoupled_weight_decay=True)],
         _random_adam, "Adam", dict(lr=0.05)),
    Case("adamw", fo.AdamW, reference.adam,
         [dict(lr=1e-2), dict(lr=1e-2, weight_decay=0.1, amsgrad=True)],
         _random_adam, "AdamW", dict(lr=0.05, weight_decay=0.0)),
    Case("adagrad", fo.Adagrad, reference.adagrad,
         [dict(lr=0.1), dict(lr=0.1, lr_decay=0.01, weight_decay=0.01, initial_accumulator_value=0.5, maximize=True)],
         _random_adagrad, "Adagrad", dict(lr=0.5)),
    Case("adadelta", fo.Adadelta, reference.adadelta,
         [dict(), dict(lr=0.5, rho=0.8, eps=1e-5, weight_decay=0.01, maximize=True)],
         _random_adadelta, "Adadelta", dict(lr=50.0), dict(lr=1.0)),
    Case("rmsprop", fo.RMSprop, reference.rmsprop,
         [dict(), dict(lr=1e-3, momentum=0.9, centered=True, weight_decay=0.01),
          dict(lr=1e-3, alpha=0.9, momentum=0.5, maximize=True)],
         _random_rmsprop, "RMSprop", dict(lr=0.01)),
    Case("rmsprop_nesterov", fo.RMSprop, reference.rmsprop,
         [dict(lr=1e-3, momentum=0.9, nesterov=True), dict(lr=1e-3, momentum=0.8, nesterov=True, centered=True)],
         lambda rng: dict(_random_rmsprop(rng), momentum=0.9, nesterov=True), None,
         dict(lr=0.005, momentum=0.5, nesterov=True)),
    Case("rprop", fo.Rprop, reference.rprop,
         [dict(), dict(lr=0.05, etas=(0.4, 1.3), step_sizes=(1e-4, 1.0), maximize=True)],
         _random_rprop, "Rprop", dict(lr=0.01)),
    Case("adamax", fo.Adamax, reference.adamax,
         [dict(), dict(lr=1e-2, betas=(0.8, 0.99), weight_decay=0.01, maximize=True)],
         _random_adamax, "Adamax", dict(lr=0.05)),
    Case("nadam", fo.NAdam, reference.nadam,
         [dict(), dict(lr=1e-2, weight_decay=0.01, momentum_decay=1e-2),
          dict(lr=1e-2, weight_decay=0.05, decoupled_weight_decay=True, maximize=True)],
         _random_nadam, "NAdam", dict(lr=0.05)),
    Case("radam", fo.RAdam, reference.radam,
         [dict(), dict(lr=1e-2, weight_decay=0.01), dict(lr=1e-2, betas=(0.8, 0.9), weight_decay=0.05,
                                                      decoupled_weight_decay=True, maximize=True)],
         _random_radam, "RAdam", dict(lr=0.05), dict(lr=4e-3)),
    Case("adabound", fo.AdaBound, reference.adabound,
         [dict(), dict(lr=1e-2, final_lr=0.05, gamma=1e-2, weight_decay=0.01, amsbound=True)],
         _random_adabound, None, dict(lr=0.05, final_lr=0.1), dict(lr=0.01, final_lr=0.01)),
    Case("lamb", fo.LAMB, reference.lamb,
         [dict(), dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-7, weight_decay=0.01)],
         _random_lamb, None, dict(lr=0.05)),
    Case("lars", fo.LARS, reference.lars,
         [dict(), dict(lr=0.5, momentum=0.5, weight_decay=0.01, trust_coefficient=0.01)],
         _random_lars, None, dict(lr=1.0, momentum=0.5, trust_coefficient=0.05)),
    Case("lion", fo.Lion, reference.lion,
         [dict(), dict(lr=1e-3, betas=(0.8, 0.95), weight_decay=0.1, maximize=True)],
         _random_lion, None, dict(lr=0.01)),
    Case("lookahead", lookahead_sgd, reference.lookahead(reference.sgd),
         [dict(lr=0.05, momentum=0.9), dict(lr=0.02, k=1, alpha=0.3), dict(lr=0.02, k=2, alpha=1.0, weight_decay=0.1)],
         _random_lookahead, None, dict(lr=0.1, momentum=0.9), dict(lr=1e-3, momentum=0.9)),
    Case("ranger", fo.Ranger, reference.lookahead(reference.radam),
         [dict(), dict(lr=1e-2, k=2, alpha=0.7, weight_decay=0.01)],
         _random_ranger, None, dict(lr=0.05), dict(lr=4e-3)),
    # Schedule-free's z steps by lr·u: once the decaying lr makes that less than half a quantum of
    # 8-bit (or bfloat16, rounded to nearest) state, z stops. y's own step, lr·(1 - β)·u, carries it
    # on: a smaller β keeps the quadratic within 0.02 there (with β = 0.9, int8 state: 0.016 and 0.06).
    Case("schedule_free_adamw", fo.ScheduleFreeAdamW, reference.schedule_free_adamw,
         [dict(), dict(lr=1e-2, betas=(0.8, 0.99), weight_decay=0.01, warmup_steps=3, r=1.0, weight_lr_power=1.0)],
         _random_schedule_free_adamw, None, dict(lr=0.1, betas=(0.7, 0.999))),
    Case("schedule_free_sgd", fo.ScheduleFreeSGD, reference.schedule_free_sgd,
         [dict(lr=0.1), dict(lr=0.05, momentum=0.6, weight_decay=0.01, warmup_steps=2, r=0.5, weight_lr_power=0.0)],
         _random_schedule_free_sgd, None, dict(lr=0.5, momentum=0.5), dict(lr=2e-3, momentum=0.5)),
    Case("adopt", fo.ADOPT, reference.adopt,
         [dict(), dict(lr=1e-2, weight_decay=0.01, maximize=True),
          dict(lr=1e-2, weight_decay=0.05, weight_decouple=True, fixed_decay=True),
          dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-5, weight_decay=0.05, weight_decouple=True, clip_exponent=0.1)],
         _random_adopt, None, dict(lr=0.05), dict(lr=0.05, betas=(0.9, 0.999))),
    Case("adan", fo.Adan, reference.adan,
         [dict(), dict(lr=1e-2, betas=(0.9, 0.9, 0.95), eps_root=0.0, weight_decay=0.02, maximize=True)],
         _random_adan, None, dict(lr=0.05)),
    Case("ademamix", fo.AdEMAMix, reference.ademamix,
         [dict(), dict(lr=1e-2, betas=(0.8, 0.99, 0.999), alpha=3.0, t_alpha_beta3=4.0, weight_decay=0.01,
                       maximize=True)],
         _random_ademamix, None, dict(lr=0.05)),
    Case("asgd", fo.ASGD, reference.asgd,
         [dict(), dict(lr=0.05, lambd=1e-3, alpha=0.6, t0=2.0, weight_decay=0.01, maximize=True)],
         _random_asgd, "ASGD", dict(lr=0.1), dict(lr=2e-3)),
    # Cautious updates (Liang et al. 2024): no torch twin; timm's are not installed here, so the
    # float64 references are the check (Lion and AdEMAMix also meet pytorch_optimizer's in
    # test_oracle_parity.py).
    Case("adam_cautious", adam_cautious, reference.adam_cautious,
         [dict(lr=1e-2), dict(lr=1e-2, weight_decay=0.1, amsgrad=True), dict(lr=3e-3, betas=(0.8, 0.99), maximize=True),
          dict(lr=1e-2, weight_decay=0.05, decoupled_weight_decay=True, amsgrad=True)],
         _random_adam_cautious, None, dict(lr=0.05)),
    Case("sgd_cautious", sgd_cautious, reference.sgd_cautious,
         [dict(lr=0.05, momentum=0.9), dict(lr=0.02, momentum=0.9, dampening=0.3, weight_decay=0.01),
          dict(lr=0.05, weight_decay=0.01),
          dict(lr=0.02, momentum=0.8, nesterov=True, weight_decay=0.01, maximize=True)],
         _random_sgd_cautious, None, dict(lr=0.1, momentum=0.9), dict(lr=1e-3, momentum=0.9)),
    Case("sgdw_cautious", sgdw_cautious, reference.sgdw_cautious,
         [dict(lr=0.05, momentum=0.9, weight_decay=0.1), dict(lr=0.02, momentum=0.8, nesterov=True,
                                                              weight_decay=0.05, maximize=True)],
         _random_sgd_cautious, None, dict(lr=0.1, momentum=0.9, weight_decay=1e-3),
         dict(lr=1e-3, momentum=0.9, weight_decay=1e-4)),
    # Solved with β2 = 0.9, not Lion's 0.99: with 8-bit state, m ← 0.99·m + 0.01·g moves m by less
    # than half a code, so m stays; once sign(β1·m + (1 − β1)·g) disagrees with g everywhere, the
    # mask stops p, g stays, and the step is a fixed point (Rosenbrock: at (-1.06, 1.14) from step 40).
    Case("lion_cautious", lion_cautious, reference.lion_cautious,
         [dict(), dict(lr=1e-3, betas=(0.8, 0.95), weight_decay=0.1, maximize=True)],
         _random_lion, None, dict(lr=0.01, betas=(0.9, 0.9))),
    Case("ademamix_cautious", ademamix_cautious, reference.ademamix_cautious,
         [dict(), dict(lr=1e-2, betas=(0.8, 0.99, 0.999), alpha=3.0, t_alpha_beta3=4.0, weight_decay=0.01,
                       maximize=True)],
         _random_ademamix, None, dict(lr=0.05)),
]

ARG_CASES = [(case, kwargs) for case in CASES for kwargs in case.arg_sets]


def arg_id(value: Any) -> str:
    if isinstance(value, Case):
        return value.name
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    return str(value)
