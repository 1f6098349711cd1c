"""The side-by-side benchmark behind ``python -m fastoptim bench`` (and ``bench/bench.py``).

One optimizer step, timed alone (gradients precomputed), for fastoptim beside its peers, in one
run and ALTERNATING between them: every repeat runs one timed step of each peer in turn (the
order rotates by one each repeat), so drift in clock speed, cache and neighbours hits all alike.
The peers:

* ``fastoptim``: the optimizer under test;
* ``numpy``: a careful NumPy implementation of the same rule (in-place ufuncs with ``out=``,
  preallocated temporaries, scalars folded once per step), checked against fastoptim by the
  tests: a peer, not a straw man;
* ``torch_forloop``, ``torch_foreach``, ``torch_fused``: ``torch.optim`` with ``foreach=False``,
  ``foreach=True`` and ``fused=True``, where torch is installed and has the rule;
* ``deepspeed``: ``DeepSpeedCPUAdam`` (Adam and AdamW, float32), where DeepSpeed is installed;
* ``probe``: the bandwidth probe, ``fastoptim._core.probe``, sweeping the same bytes a step of
  the rule must move (its reads and writes): the limit every kernel is reported against.

Every peer starts from copies of the same parameters and gradients, steps the same elements the
same number of times, and ends compared with fastoptim (``deviation``). Throughput is Gel/s:
1e9 parameter elements per second, from the median step time.
"""

from __future__ import annotations

from .cli import _sizes, main
from .numpy_peer import NumpyOptimizer
from .peers import DEFAULT_PEERS, PEERS
from .plot import PLOT_HINT
from .rules import RULES, Rule, numpy_optimizer
from .runner import run
from .timing import Settings, alternate, plan_groups
from .workloads import DEFAULT_SIZES, MODEL_SHAPES, Work, parse_work

# The command's API, then what the tests and bench/*.py reach for from outside the package
# (cli's --omp-spin re-run, too, starts its new process with `from fastoptim._bench import main`).
__all__ = ["DEFAULT_PEERS", "PEERS", "RULES", "main", "numpy_optimizer", "run",
           "DEFAULT_SIZES", "MODEL_SHAPES", "PLOT_HINT", "NumpyOptimizer", "Rule", "Settings", "Work", "_sizes",
           "alternate", "parse_work", "plan_groups"]
