"""optax's Adan and AdEMAMix on test_oracle_parity.py's cases, run as a child process: JAX starts
threads at import, and the suite forks its own process elsewhere (test_process.py), which JAX
warns would deadlock. `python optax_oracle.py OUT.npz` writes, per case ``name/dtype/seed``, the
parameters after 20 steps and the state slots under our names."""

from __future__ import annotations

import sys

import numpy as np

from problems import make_problem
from registry import CASES

SHAPES = [(33,), (17, 9), (1025,)]
SEEDS = range(4)
DTYPES = (np.float32, np.float64)
# optax's state fields, by our slot names
OPTAX_SLOTS = {"adan": {"exp_avg": "m", "exp_avg_diff": "v", "exp_avg_sq": "n", "prev_grad": "g"},
               "ademamix": {"exp_avg": "m1", "exp_avg_slow": "m2", "exp_avg_sq": "nu"}}


def case_inputs(name: str, dtype: type, seed: int) -> tuple[dict, list[np.ndarray], list[list[np.ndarray]]]:
    """The hyper-parameters, parameters and gradients of one case, as the test draws them."""
    case = next(c for c in CASES if c.name == name)
    rng = np.random.default_rng(seed)
    kwargs = case.random_args(rng)
    params, grads = make_problem(rng, SHAPES, dtype, 20)
    return kwargs, params, grads


def _transform(name: str, kwargs: dict):
    import optax

    if name == "adan":
        b1, b2, b3 = kwargs["betas"]
        return optax.adan(kwargs["lr"], b1, b2, b3, kwargs["eps"], kwargs["eps_root"], kwargs["weight_decay"])
    # AdEMAMix: b3 and alpha are schedules of count_m2 = step - 1; with t_alpha_beta3 set, the
    # paper's warmup schedulers as pytorch_optimizer writes them
    b1, b2, b3 = kwargs["betas"]
    alpha, warmup = kwargs["alpha"], kwargs["t_alpha_beta3"]
    b3_of_count, alpha_of_count = b3, alpha
    if warmup:
        from pytorch_optimizer import AdEMAMix as schedulers

        b3_of_count = lambda count: schedulers.schedule_beta3(warmup, int(count) + 1, b1, b3)  # noqa: E731
        alpha_of_count = lambda count: schedulers.schedule_alpha(warmup, int(count) + 1, alpha)  # noqa: E731
    return optax.contrib.ademamix(kwargs["lr"], b1, b2, b3_of_count, alpha_of_count, kwargs["eps"], eps_root=0.0,
                                  weight_decay=kwargs["weight_decay"])


def run(name: str, kwargs: dict, params: list[np.ndarray], grads: list[list[np.ndarray]]) -> dict[str, list]:
    """optax's rule after a step per entry of grads (negated to maximize): parameters and slots."""
    import jax.numpy as jnp
    import optax

    tx = _transform(name, kwargs)
    ps = [jnp.asarray(p) for p in params]
    state = tx.init(ps)
    for step_grads in grads:
        updates, state = tx.update([jnp.asarray(-g if kwargs["maximize"] else g) for g in step_grads], state, ps)
        ps = optax.apply_updates(ps, updates)
    assert all(p.dtype == params[0].dtype for p in ps)  # x64 is on: float64 stayed float64
    rule_state = state[0]  # the chain's first link: the rule's own state
    out = {"param": [np.asarray(p) for p in ps]}
    for slot, field in OPTAX_SLOTS[name].items():
        out[slot] = [np.asarray(a) for a in getattr(rule_state, field)]
    return out


def main(path: str) -> None:
    import jax

    # optax computes in the arrays' dtype only with x64 on (else float64 arrays become float32)
    jax.config.update("jax_enable_x64", True)
    results = {}
    for name in OPTAX_SLOTS:
        for dtype in DTYPES:
            for seed in SEEDS:
                computed = run(name, *case_inputs(name, dtype, seed))
                for key, arrays in computed.items():
                    for i, a in enumerate(arrays):
                        results[f"{name}/{np.dtype(dtype).name}/{seed}/{key}/{i}"] = a
    np.savez(path, **results)


if __name__ == "__main__":
    main(sys.argv[1])
