"""The optimizer base class every update rule reuses: param groups, state, state dicts, step.

What users may edit between steps, and what the next step does about it:

* honoured: hyper-parameters in ``param_groups``; :meth:`Optimizer.add_param_group`;
  replacing a state array (``opt.state[name][slot] = np.zeros_like(p)``) by one of the
  parameter's dtype (with ``state_dtype="bfloat16"``: ``np.zeros_like(p, fo.bfloat16_dtype())``),
  shape and memory order, writable and sharing no memory;
* refused, with nothing changed: replacing, adding or removing entries of a group's ``params``
  or ``param_names`` or of ``param_groups``; resizing, re-typing or re-shaping a parameter or
  state array, or making one read-only; state entries for names that are not parameters.

The containers users edit are change-tracked (``_tracked``), so an unchanged optimizer pays a
flag test per step; the native plan re-checks every array it will write before each step.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from typing import Any, ClassVar, NamedTuple

import numpy as np

from ._checkpoint import Checked, Clock, check_state_dict, read_hyper
from ._core import Plan, check_grads, rules
from ._extras import NO_EXTRAS, Extras, check_saved_extras, save_extras, swap_in_place, with_arrays
from ._param_groups import RESERVED, raw_groups, read_group
from ._schema import Schema, schema_of
from ._state_format import (
    ABSMAX,
    NATIVE,
    StateFormat,
    check_stored,
    new_slot,
    read_saved_format,
    read_state_format,
    stored_keys,
    zeros_text,
)
from ._step_options import NOTHING_MEASURED, StepInfo, check_grad_scale, check_max_grad_norm, read_step_options
from ._tracked import Edits, GroupList, OptimizerState, ParamGroup, ParamList, SlotDict
from ._validation import check_bool, check_disjoint, is_bfloat16_param

__all__ = ["Optimizer", "ParamGroup"]

class _Held(NamedTuple):
    """What the native plan was built from, to compare the user-editable containers with."""

    groups: tuple[ParamGroup, ...]
    params: tuple[tuple[np.ndarray, ...], ...]  # per group
    names: tuple[tuple[Hashable, ...], ...]
    states: dict[Hashable, dict[str, np.ndarray]]  # name -> slot -> array
    needed: tuple[tuple[str, ...], ...]  # per group: the slots its settings use


def _buffer_bytes(arrays: Iterable[np.ndarray]) -> int:
    """The bytes of the buffers that hold `arrays` (each counted once)."""
    owners: dict[int, int] = {}
    for array in arrays:
        owner = array
        while isinstance(owner.base, np.ndarray):
            owner = owner.base
        owners[id(owner)] = owner.nbytes
    return sum(owners.values())


def _same_arrays(a: Mapping[Any, Any], b: Mapping[Any, Any]) -> bool:
    return a.keys() == b.keys() and all(a[k] is b[k] for k in a)


class Optimizer:
    """Base class: holds param groups and state, and steps every array in one native call.

    Subclasses set ``_rule``, the native rule: its schema (``_schema.py``) gives the checks of a
    group, its row of doubles and its state slots. A subclass adds ``_check_relations`` for
    checks between fields, and ``_schema_defaults`` where it shares a rule under other defaults.

    Steps, edits and checkpoints of one optimizer from several threads are serialized. An
    optimizer pickles and deep-copies (the copy owns copies of the parameters and the state,
    and steps as the original would).

    Every optimizer also takes these keyword options (its ``options`` argument):

    * ``max_grad_norm`` (default None): clip the gradients by their global 2-norm over every
      parameter, as ``torch.nn.utils.clip_grad_norm_`` then the step: the update reads
      ``g·max_grad_norm/(‖g‖ + 1e-6)`` when that factor is below 1. The norm is one read-only
      native pass; the factor is folded into the update and never written into the gradients.
      ``math.inf`` measures the norm without clipping. Settable as ``opt.max_grad_norm``.
    * ``skip_nonfinite`` (default False): a step whose gradients hold a NaN or an infinity
      (checked per element) changes nothing, parameters, state and step counts alike, and
      reports ``skipped=True`` (optax's ``apply_if_finite``, torch's GradScaler). Settable.
      A skipped step discards the gradients accumulated for it.
    * ``ema_decay`` (default None): keep :attr:`ema`, an exponential moving average of every
      parameter (arrays of its dtype, float32 for bfloat16 ones, starting as copies), updated in
      the step's own sweep after each step that is not skipped, as torch's
      ``swa_utils.get_ema_multi_avg_fn``: ``ema ← lerp(ema, p, 1 − d)``, i.e.
      ``d·ema + (1 − d)·p``. Parameters a step leaves out
      (gradient None) are averaged too. Evaluate with :meth:`swap_ema`.
    * ``ema_warmup`` (default False): use ``d = min(ema_decay, (1 + t)/(10 + t))``, t counting
      the EMA's updates from 1, as TensorFlow's ``ExponentialMovingAverage(num_updates=...)``.
    * bfloat16 parameters: ``ml_dtypes.bfloat16`` arrays (``pip install "fastoptim[bf16]"``)
      with bfloat16 gradients, beside float32 and float64 ones in the same optimizer and native
      call. Each element is widened to float32, updated there, and stored back rounded
      stochastically (``stochastic_rounding``), so updates under half a bfloat16 ulp still move
      the weights in expectation. Their state is bfloat16 by default (the parameter's dtype, as
      torch), their accumulation buffers and EMA float32.
    * ``stochastic_rounding`` (default True): how bfloat16 parameters round, up with probability
      equal to the distance from the value below over the gap, from the generator of
      ``state_rounding``; False rounds to nearest even.
    * ``state_dtype`` (default None: the parameter's dtype): ``"bfloat16"`` stores the state
      arrays as bfloat16 (float32 and bfloat16 parameters; float64 ones are refused), half their
      bytes; the update still computes in float32. The bfloat16 arrays are ``ml_dtypes.bfloat16``
      arrays where ml_dtypes is installed (``fastoptim[bf16]``), else ``uint16`` bit patterns.
      ``"float32"`` keeps a bfloat16 parameter's state in float32 (other parameters keep their
      own dtype). ``"int8"`` stores each state slot of a float32 or bfloat16 array of at least
      ``min_8bit_size`` elements (default 4096, as bitsandbytes; smaller ones keep the state of
      their dtype) in one byte per
      element plus a float32 absmax per block of 256 (Dettmers et al. 2022, block-wise): a
      code (:func:`fastoptim.quantize_blockwise`) under the slot's name, the absmax under its
      name + ``"_absmax"``. Each step decodes a block, updates it in float32 (the parameter
      from the new state before quantization, as bitsandbytes) and requantizes it.
    * ``state_rounding`` (default ``"nearest"``, ties to even): ``"stochastic"`` rounds each
      bfloat16 state element up with probability equal to its distance from the value below,
      over the gap, drawn from a counter-based hash of (``seed``, step, the parameter's
      position, the element's index): the same bits on every CPU and thread count.
    * ``seed`` (default 0): the generator's key, an integer in [0, 2**64); kept in the state dict.
    * ``foreach``, ``fused`` (None/False/True): accepted and ignored, as torch's: every step
      is already one fused native call over all parameters.
    * ``capturable``, ``differentiable``: torch's, refused when True (they need CUDA graphs or
      autograd, which a NumPy step has no use for).
    """

    _rule: str  # the class's; an instance with cautious=True holds its _cautious_rule instead
    # The rule of cautious=True (Liang et al. 2024; cautious.hpp), where the class offers it
    _cautious_rule: ClassVar[str | None] = None
    # The state holds weights, not moments (Schedule-Free's z, ASGD's average): float32 for a
    # bfloat16 parameter by default (StateFormat.storage)
    _state_holds_weights: ClassVar[bool] = False
    _schema: ClassVar[Schema]
    # Defaults that differ from the rule's schema, for a class that shares a rule with another
    # (AdamW: Adam's rule, with weight decay 1e-2, decoupled). Its signature states the same.
    _schema_defaults: ClassVar[Mapping[str, Any]] = {}
    _slots: ClassVar[tuple[str, ...]]  # the rule's state slots, in its order
    # Slots whose first step after allocation ignores what they hold (a "fresh" group): they are
    # left out of the state dict of a fresh group, and a state dict without them loads fresh.
    _seeded_slots: ClassVar[tuple[str, ...]] = ()
    _signed_slots: ClassVar[frozenset[str]] = frozenset()  # 8-bit state codes them with a sign
    # Whether the plans run their kernels with the GIL released: fastoptim.torch keeps it, since
    # Python code can free a tensor's memory that a view of it still points at.
    _release_gil = True
    _guards: list[tuple[str, Any, Any, int, int]] | None = None  # fastoptim.torch's, for every plan (Plan.set_guards)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "_rule" in cls.__dict__:
            if "_cautious_rule" not in cls.__dict__:  # a new rule: the parent's variant is not its own
                cls._cautious_rule = None
            cls._schema = schema_of(cls._rule)
            cls._slots = cls._schema.slot_names
            cls._seeded_slots = cls._schema.seeded_slots
            cls._signed_slots = cls._schema.signed_slots

    def __init__(self, params: Any, defaults: Mapping[str, Any], **options: Any) -> None:
        self._choose_rule(options.pop("cautious", False))
        self._state_format = read_state_format(options)
        read = read_step_options(type(self).__name__, options)
        self._max_grad_norm, self._skip_nonfinite = read.max_grad_norm, read.skip_nonfinite
        self._ema_decay, self._ema_warmup = read.ema_decay, read.ema_warmup
        self._swapped = False
        self._update_plain()
        self._check_group(read_hyper(defaults))
        self.defaults = dict(defaults)
        self._start_empty()
        groups: list[ParamGroup] = []
        for raw in raw_groups(params):
            groups.append(self._new_group(raw, groups))
        self._add_groups(groups)

    def _choose_rule(self, cautious: Any) -> None:
        check_bool("cautious", cautious)
        if cautious:
            if self._cautious_rule is None:
                raise TypeError(f"cautious=True: {type(self).__name__} has no cautious variant (Adam, AdamW, SGD, "
                                "SGDW, Lion and AdEMAMix have)")
            self._rule = self._cautious_rule

    @property
    def cautious(self) -> bool:
        """Whether each step drops the components of the update whose sign disagrees with the
        gradient and rescales the rest by n/(k + 1) per array (``cautious=True``)."""
        return self._rule == self._cautious_rule

    def _start_empty(self) -> None:
        self._edits = Edits()
        self._lock = threading.RLock()
        self._param_groups = GroupList([], self._edits)
        self._state = OptimizerState({}, self._edits)
        self._plan: Plan | None = None  # the constructor's _install builds it: None only until then
        self._held = _Held((), (), (), {}, ())
        self._extras = NO_EXTRAS  # as the plan was built; its counts are the plan's
        self._counters: tuple[list[int], list[int]] | None = None  # the generator's, when not the plan's own
        self._storage_sizes: dict[Hashable, int] = {}  # a piece's whole array's size (ZeroRedundancyOptimizer)

    # ---- what each rule's schema provides ---------------------------------------------------
    def _check_group(self, group: Mapping[str, Any]) -> None:
        """Raise TypeError/ValueError naming the first invalid hyper-parameter of `group`."""
        self._schema.check(group)
        self._check_relations(group)

    def _check_relations(self, group: Mapping[str, Any]) -> None:
        """Checks between fields, which a schema's ranges cannot state (nesterov needs momentum)."""

    def _needed_slots(self, group: Mapping[str, Any]) -> tuple[str, ...]:
        """The state arrays this group's settings use."""
        return self._schema.needed_slots(group)

    def _row(self, group: Mapping[str, Any]) -> list[float]:
        """The group's hyper-parameters as the native rule's row of doubles."""
        return self._schema.row(group)

    @classmethod
    def _scalar_names(cls) -> tuple[str, ...]:
        """Running per-group scalars of the rule (NAdam's mu_product), saved with each parameter."""
        return tuple(rules()[cls._rule]["scalars"])

    @classmethod
    def _scalar_init(cls) -> list[float]:
        return list(rules()[cls._rule]["scalar_init"])

    # ---- what users edit --------------------------------------------------------------------
    @property
    def param_groups(self) -> GroupList:
        """torch's list of groups. Edit hyper-parameters in place; add groups with
        :meth:`add_param_group` (a step after any other change to the list raises)."""
        return self._param_groups

    @param_groups.setter
    def param_groups(self, groups: Iterable[Any]) -> None:
        self._param_groups = GroupList(groups, self._edits)
        self._edits.arrays = True

    @property
    def state(self) -> OptimizerState:
        """Parameter name -> slot name -> state array, the arrays the next step updates. A slot
        may be given a new array of its parameter's dtype, shape and memory order."""
        return self._state

    @state.setter
    def state(self, state: Mapping[Hashable, Any]) -> None:
        table = OptimizerState({}, self._edits)
        for name, slots in dict(state).items():
            table[name] = slots
        self._state = table
        self._edits.arrays = True

    @property
    def max_grad_norm(self) -> float | None:
        """Clip the gradients to this global 2-norm at each step (None: no clipping; ``math.inf``:
        measure only)."""
        return self._max_grad_norm

    @max_grad_norm.setter
    def max_grad_norm(self, value: float | None) -> None:
        self._max_grad_norm = check_max_grad_norm(value)
        self._update_plain()

    def _update_plain(self) -> None:
        self._plain = self._max_grad_norm is None and not self._skip_nonfinite and not self._swapped  # step's fast path

    @property
    def skip_nonfinite(self) -> bool:
        """Skip, changing nothing, a step whose gradients hold a NaN or an infinity."""
        return self._skip_nonfinite

    @skip_nonfinite.setter
    def skip_nonfinite(self, value: bool) -> None:
        self._skip_nonfinite = check_bool("skip_nonfinite", value)
        self._update_plain()

    @property
    def ema_decay(self) -> float | None:
        """The decay of the EMA of the weights (None: no EMA); set at construction."""
        return self._ema_decay

    @property
    def ema_warmup(self) -> bool:
        """Whether the EMA's decay warms up as min(ema_decay, (1 + t)/(10 + t))."""
        return self._ema_warmup

    @property
    def ema(self) -> dict[Hashable, np.ndarray] | None:
        """Parameter name -> its EMA (the arrays the steps update, to read or copy), or None
        without ``ema_decay``."""
        ema = self._extras.ema
        return None if ema is None else dict(ema)

    @contextlib.contextmanager
    def swap_ema(self) -> Iterator[None]:
        """Within the ``with`` block the parameters hold the EMA (in place: a model that reads
        them evaluates the average; bfloat16 ones its nearest bfloat16), and the EMA arrays the
        weights; on exit, exceptions included, both swap back exactly. Steps, accumulation and
        checkpoints inside the block raise."""
        with self._lock:
            ema = self._extras.ema
            if ema is None:
                raise ValueError(f"swap_ema needs an EMA of the weights: construct the {type(self).__name__} with "
                                 "ema_decay")
            if self._swapped:
                raise RuntimeError("swap_ema is already in effect; blocks of it do not nest")
            self._refresh(check_arrays=True)
            names = [n for group in self._held.names for n in group]
            params = [p for group in self._held.params for p in group]
            # A bfloat16 parameter holds its EMA rounded to nearest; the float32 EMA comes back whole.
            exact = {n: ema[n].copy() for n, p in zip(names, params) if is_bfloat16_param(p)}
            swap_in_place(params, [ema[n] for n in names])
            self._swapped = True
            self._update_plain()
        try:
            yield
        finally:
            with self._lock:
                swap_in_place(params, [ema[n] for n in names])
                for n, values in exact.items():
                    np.copyto(ema[n], values)
                self._swapped = False
                self._update_plain()

    def _refuse_swapped(self, action: str) -> None:
        if self._swapped:
            raise RuntimeError(f"{action} is refused inside swap_ema(): the parameters hold the EMA until the "
                               "block ends (nothing was changed)")

    # ---- groups -----------------------------------------------------------------------------
    def _held_labels_and_arrays(self) -> tuple[list[str], list[np.ndarray]]:
        """Every parameter and state array the plan holds, labelled for messages."""
        held = self._held
        labels = [f"params[{n!r}]" for names in held.names for n in names]
        arrays = [p for params in held.params for p in params]
        for name, slots in held.states.items():
            labels += [f"state[{name!r}][{s!r}]" for s in slots]
            arrays += list(slots.values())
        return labels, arrays

    def _new_group(self, raw: Any, pending: Sequence[ParamGroup]) -> ParamGroup:
        """A validated group from `raw`, beside the groups held and `pending`; nothing changes."""
        groups = list(self._held.groups) + list(pending)
        group = read_group(raw, [n for g in groups for n in g["param_names"]])
        old_labels, old_arrays = self._held_labels_and_arrays()
        for g in pending:
            old_labels += [f"params[{n!r}]" for n in g["param_names"]]
            old_arrays += list(g["params"])
        check_disjoint(old_labels + [f"params[{n!r}]" for n in group.names], old_arrays + group.arrays)
        data = {**self.defaults, **group.hyper}
        self._check_group(read_hyper(data))
        data["params"] = ParamList(group.arrays, self._edits)
        data["param_names"] = ParamList(group.names, self._edits)
        return ParamGroup(data, self._edits)

    def add_param_group(self, param_group: Mapping[str, Any]) -> None:
        """Add a group (torch's ``add_param_group``); its state starts empty, at step 0.
        Pending edits are applied first; on any error nothing changes."""
        with self._lock:
            self._refresh(check_arrays=True)
            self._add_groups([self._new_group(param_group, [])])

    def _add_groups(self, new: Sequence[ParamGroup]) -> None:
        """Allocate the new groups' state, build a plan over every group, then commit."""
        held = self._held
        groups = held.groups + tuple(new)
        snapshots = [read_hyper(g) for g in groups]
        states = dict(held.states)
        for group, snapshot in zip(new, snapshots[len(held.groups):]):
            for name, param in zip(group["param_names"], group["params"]):
                states[name] = {k: a for slot in self._needed_slots(snapshot)
                                for k, a in self._new_slot(name, param, slot).items()}
        clocks = self._clocks() + [(0, True, self._scalar_init())] * sum(len(g["params"]) for g in new)
        self._install(groups, snapshots, states, clocks)

    # ---- the state's layout ---------------------------------------------------------------
    @property
    def state_dtype(self) -> str | None:
        """How the state arrays are stored: None (the parameter's dtype), ``"bfloat16"``, ``"int8"``
        or ``"float32"`` (bfloat16 parameters' state in float32)."""
        return self._state_format.dtype

    @property
    def min_8bit_size(self) -> int:
        """The fewest elements an array needs for ``state_dtype="int8"`` to store its state in 8 bits."""
        return self._state_format.min_8bit_size

    @property
    def state_rounding(self) -> str:
        """How bfloat16 state rounds: ``"nearest"`` (even) or ``"stochastic"``."""
        return self._state_format.rounding

    @property
    def stochastic_rounding(self) -> bool:
        """Whether bfloat16 parameters round their updates stochastically (else to nearest even)."""
        return self._state_format.stochastic_rounding

    @property
    def seed(self) -> int:
        """The key of stochastic rounding's counter-based generator."""
        return self._state_format.seed

    def _storage(self, name: Hashable, param: np.ndarray, state_format: StateFormat | None = None) -> str:
        """How the state of `param` (named `name`) is stored: ``""``, ``"bfloat16"``, ``"int8"`` or
        ``"float32"`` (StateFormat.storage), decided by its whole array's size where it is a piece of one."""
        state_format = self._state_format if state_format is None else state_format
        return state_format.storage(param, self._storage_sizes.get(name), self._state_holds_weights)

    def _new_slot(self, name: Hashable, param: np.ndarray, slot: str) -> dict[str, np.ndarray]:
        """Zeros for one state slot of `param` in this optimizer's layout (with its absmax for 8-bit state)."""
        return new_slot(param, slot, self._storage(name, param))

    def memory(self) -> dict[str, int]:
        """The bytes this optimizer allocated beside the parameters: ``state`` (its state
        arrays), ``ema`` and ``accumulated`` (the fused step's arrays, 0 when absent), each
        counted by the buffers that hold them (alignment padding included)."""
        with self._lock:
            held = self._held
            extras = self._extras
            return {"state": _buffer_bytes(a for slots in held.states.values() for a in slots.values()),
                    "ema": _buffer_bytes((extras.ema or {}).values()),
                    "accumulated": _buffer_bytes((extras.accumulated or {}).values())}

    def _set_counters(self, positions: Sequence[int], first_indices: Sequence[int],
                      sizes: Sequence[int] | None = None) -> None:
        """The stochastic rounding's counters of each parameter and, with `sizes`, the size of
        its whole array (ZeroRedundancyOptimizer: its pieces keep their whole parameter's
        position and element indices, and a piece of an array with 8-bit state has 8-bit state
        too). Before the first step: state whose storage the sizes change starts over."""
        with self._lock:
            counters = (list(positions), list(first_indices))
            held = self._held
            names = [n for group in held.names for n in group]
            params = [p for group in held.params for p in group]
            if sizes is not None and len(sizes) != len(names):
                raise ValueError(f"_set_counters: {len(sizes)} sizes for {len(names)} parameters")
            storages = [self._storage(n, p) for n, p in zip(names, params)]
            kept = self._storage_sizes, self._counters
            if sizes is not None:
                self._storage_sizes = dict(zip(names, (int(s) for s in sizes)))
            try:  # committed only once the plan takes them
                if storages == [self._storage(n, p) for n, p in zip(names, params)]:
                    self._built_plan().set_counters(*counters)
                else:
                    if any(steps for steps, _, _ in self._clocks()):
                        raise ValueError("_set_counters: the sizes change how the state is stored, which only an "
                                         "optimizer that has not stepped may do")
                    states = {name: {k: a for slot in self._slots if slot in held.states[name]
                                     for k, a in self._new_slot(name, param, slot).items()}
                              for name, param in zip(names, params)}
                    self._counters = counters
                    self._install(held.groups, [read_hyper(g) for g in held.groups], states, self._clocks())
            except BaseException:
                self._storage_sizes, self._counters = kept
                raise
            self._counters = counters

    # ---- the native plan ------------------------------------------------------------------
    def _built_plan(self) -> Plan:
        """The native plan, which an optimizer has from the end of its construction on."""
        plan = self._plan
        if plan is None:
            raise RuntimeError(f"this {type(self).__name__} has no native plan: its construction did not finish")
        return plan

    def _clocks(self) -> list[Clock]:
        """Each held parameter's (steps done, fresh, running scalars), group by group, to carry
        into a new plan."""
        count = sum(len(names) for names in self._held.names)
        if count == 0:
            return []  # the constructor's first plan: there is none yet, and nothing to carry
        plan = self._built_plan()
        return [(plan.steps_done(i), plan.fresh(i), plan.scalars(i)) for i in range(count)]

    def _current_extras(self) -> Extras:
        """The accumulation buffers and EMA, with the plan's counts of them."""
        plan = self._plan
        if plan is None:
            return self._extras
        names = [n for group in self._held.names for n in group]
        return self._extras._replace(ema_updates=plan.ema_updates, pending=plan.pending,
                                     touched=frozenset(n for i, n in enumerate(names) if plan.touched(i)))

    def _install(self, groups: Sequence[ParamGroup], snapshots: Sequence[Mapping[str, Any]],
                 states: Mapping[Hashable, Mapping[str, np.ndarray]], clocks: Sequence[Clock],
                 extras: Extras | None = None, state_format: StateFormat | None = None) -> None:
        """Build a plan over `groups` with these state arrays and clocks (one per parameter, group
        by group), and these accumulation buffers and EMA (default: the current ones, new
        parameters' added); only once it is built
        (it validates every array again) commit it and make ``param_groups`` and ``state`` show
        exactly what it holds."""
        self._refuse_inside_step("changing the optimizer's arrays")
        state_format = self._state_format if state_format is None else state_format
        params, plan_states, group_of, names, storages, absmax = [], [], [], [], [], []
        for index, group in enumerate(groups):
            for name, param in zip(group["param_names"], group["params"]):
                params.append(param)
                plan_states.append([states[name].get(s) for s in self._slots])
                storages.append(self._storage(name, param, state_format))
                absmax.append([states[name].get(s + ABSMAX) for s in self._slots] if storages[-1] == "int8" else None)
                group_of.append(index)
                names.append(name)
        held = self._current_extras() if extras is None else extras
        extras = with_arrays(held, names, params, self._ema_decay is not None)
        arrays = [[None if extras.accumulated is None else extras.accumulated[n],
                   None if extras.ema is None else extras.ema[n]] for n in names]
        plan = Plan(self._rule, params, plan_states, group_of, names, len(groups), list(self._slots), arrays,
                    storages, absmax)
        plan.set_rounding(state_format.rounding == "stochastic", state_format.seed, state_format.stochastic_rounding)
        plan.release_gil = self._release_gil
        if self._guards is not None:
            plan.set_guards(self._guards)
        if self._counters is not None:
            plan.set_counters(*self._counters)
        for index, snapshot in enumerate(snapshots):
            plan.set_hyper(index, self._row(snapshot))
        for index, (steps, fresh, scalars) in enumerate(clocks):
            plan.set_clock(index, steps, fresh)
            plan.set_scalars(index, scalars)
        plan.set_ema(-1.0 if self._ema_decay is None else self._ema_decay, self._ema_warmup, extras.ema_updates)
        plan.set_pending(extras.pending, [n in extras.touched for n in names])
        # Commit: nothing below can fail.
        self._plan = plan
        self._extras = extras
        self._state_format = state_format
        self._held = _Held(tuple(groups), tuple(tuple(g["params"]) for g in groups),
                           tuple(tuple(g["param_names"]) for g in groups),
                           {name: dict(slots) for name, slots in states.items()},
                           tuple(self._needed_slots(s) for s in snapshots))
        for group in groups[len(self._param_groups):]:
            list.append(self._param_groups, group)
        table = self._state
        for name, slots in states.items():
            entry = dict.get(table, name)
            if isinstance(entry, SlotDict) and entry._edits is self._edits:
                if not _same_arrays(entry, slots):
                    dict.clear(entry)
                    dict.update(entry, slots)
            else:
                dict.__setitem__(table, name, SlotDict(slots, self._edits))
        for name in [n for n in table if n not in states]:
            dict.__delitem__(table, name)

    def _refresh(self, check_arrays: bool = False) -> None:
        """Bring the plan up to date with the edits flagged since the last step (all of
        ``param_groups`` and ``state`` with `check_arrays`, as before rebuilding or saving), or
        raise with nothing changed (the flags stay raised, so the next step raises again).

        A hyper-parameter edit (a scheduler's, every step) re-validates one snapshot of each
        group and hands it to the plan. An edit of the containers of arrays also compares them
        with what the plan holds: the groups and their arrays must be the same; a state array
        may be replaced by a valid one, and the plan is rebuilt around it."""
        edits = self._edits
        arrays_edited = edits.arrays or check_arrays
        edits.hyper = edits.arrays = False  # before reading: an edit made meanwhile raises them again
        try:
            held = self._held
            if arrays_edited:
                self._check_structure()
                self._built_plan().check()  # and no array was changed in place
            snapshots = [read_hyper(g) for g in held.groups]
            for snapshot in snapshots:
                self._check_group(snapshot)
            needed = tuple(self._needed_slots(s) for s in snapshots)
            if arrays_edited or needed != held.needed:
                states, fresh = self._gather_states(needed)
                if fresh or any(not _same_arrays(states[n], held.states[n]) for n in states):
                    group_of = [index for index, names in enumerate(held.names) for _ in names]
                    clocks = [(steps, started or group_of[i] in fresh, scalars)
                              for i, (steps, started, scalars) in enumerate(self._clocks())]
                    self._install(held.groups, snapshots, states, clocks)
                    return
                self._held = held._replace(needed=needed)
            plan = self._built_plan()
            for index, snapshot in enumerate(snapshots):
                plan.set_hyper(index, self._row(snapshot))
        except BaseException:
            edits.hyper = True
            edits.arrays = edits.arrays or arrays_edited
            raise

    def _check_structure(self) -> None:
        """The groups, and each group's arrays and names, are those the plan holds."""
        held = self._held
        groups = self._param_groups
        if len(groups) != len(held.groups) or any(a is not b for a, b in zip(groups, held.groups)):
            raise ValueError("param_groups was changed; groups are added with add_param_group, and never removed, "
                             "replaced or reordered (nothing was updated)")
        for index, group in enumerate(held.groups):
            for key, expected in (("params", held.params[index]), ("param_names", held.names[index])):
                current = dict.get(group, key)
                same = isinstance(current, list) and len(current) == len(expected) and all(
                    a is b or (key == "param_names" and type(a) is type(b) and a == b)
                    for a, b in zip(current, expected))
                if not same:
                    raise ValueError(f"param_groups[{index}][{key!r}] was changed; the arrays of a group are fixed "
                                     "(add parameters with add_param_group; nothing was updated)")
                if not (isinstance(current, ParamList) and current._edits is self._edits):
                    dict.__setitem__(group, key, ParamList(expected, self._edits))  # an equal list: track it

    def _gather_states(self, needed: Sequence[tuple[str, ...]]) -> tuple[
            dict[Hashable, dict[str, np.ndarray]], set[int]]:
        """The state arrays the next plan uses, from ``state`` as the user left it: every
        replaced array validated, missing ones that the settings need allocated (their groups
        become fresh), anything else refused."""
        held = self._held
        known = {name for names in held.names for name in names}
        for name in self._state:
            if name not in known:
                raise ValueError(f"state has an entry for {name!r}, which is not a parameter of this optimizer")
        states: dict[Hashable, dict[str, np.ndarray]] = {}
        fresh: set[int] = set()
        replaced = False
        for index, (names, params) in enumerate(zip(held.names, held.params)):
            for name, param in zip(names, params):
                entry = dict.get(self._state, name, {})
                if not isinstance(entry, Mapping):
                    raise TypeError(f"state[{name!r}] must be a dict of state arrays, got {type(entry).__name__}")
                old = held.states.get(name, {})
                storage = self._storage(name, param)
                keys = [k for s in self._slots for k in stored_keys(s, storage)]
                slots: dict[str, np.ndarray] = {}
                for key, array in dict(entry).items():
                    if key not in keys:
                        raise ValueError(f"state[{name!r}] has {key!r}; {type(self).__name__} keeps "
                                         f"{', '.join(map(repr, keys))}")
                    if array is not old.get(key):
                        check_stored(f"state[{name!r}][{key!r}]", key, array, param, storage)
                        replaced = True
                    slots[key] = array
                for slot in needed[index]:
                    present = [k in slots for k in stored_keys(slot, storage)]
                    if all(present):
                        continue
                    if any(present) or slot in old:
                        missing = stored_keys(slot, storage)[present.index(False)]
                        raise ValueError(f"state[{name!r}] lacks {missing!r}, which the next step needs; to reset it, "
                                         f"assign zeros: state[{name!r}][{missing!r}] = {zeros_text(missing, storage)}")
                    slots.update(self._new_slot(name, param, slot))
                    fresh.add(index)
                states[name] = slots
        if replaced:
            labels = [f"params[{n!r}]" for names in held.names for n in names]
            arrays = [p for params in held.params for p in params]
            for name, slots in states.items():
                labels += [f"state[{name!r}][{s!r}]" for s in slots]
                arrays += list(slots.values())
            check_disjoint(labels, arrays)
        return states, fresh

    def _refuse_inside_step(self, action: str) -> None:
        """The lock is re-entrant, so only the stepping thread itself gets here during a step:
        from Python code the step ran, such as a parameter name's __eq__."""
        if self._plan is not None and self._plan.busy:
            raise RuntimeError(f"{action} is refused while this optimizer steps (from Python code the step ran, "
                               "such as a parameter name's __eq__); do it between steps")

    # ---- stepping -------------------------------------------------------------------------
    def step(self, grads: Mapping[Any, np.ndarray | None] | Sequence[np.ndarray | None] | None = None, *,
             grad_scale: float | None = None) -> StepInfo:
        """Update every parameter in place from `grads`: a dict keyed like the parameters, or
        a list in their order. Each gradient must have its parameter's dtype, shape and memory
        order, or be None: that parameter is left alone, its state and step count included, as
        torch leaves a parameter whose ``.grad`` is None (frozen or unused). Steps of one
        optimizer from several threads are serialized.

        After :meth:`accumulate`, ``step()`` steps on the accumulated sum, and ``step(grads)``
        adds `grads` to it inside the step's own sweep; either way the sweep clears the buffers.

        `grad_scale` (> 0, default None): the loss scale `grads` carry; each is read as
        ``g / grad_scale`` (torch's fused Adam takes the same argument), before any clipping.
        Returns a :class:`StepInfo`: the gradients' norm, when ``max_grad_norm`` or
        ``skip_nonfinite`` measured it, and whether the step was skipped."""
        if grads is None and grad_scale is not None:
            raise ValueError("grad_scale applies to the gradients a step is given; step() without gradients "
                             "steps on the accumulated ones, each scaled by accumulate(grads, grad_scale=...)")
        if grad_scale is None and self._plain:
            with self._lock:  # the plain step, every call it can spare spared: at 1e4 elements it counts
                if self._swapped:  # entered by another thread since _plain was read
                    self._refuse_swapped("a step")
                edits = self._edits
                if edits.hyper or edits.arrays:
                    self._refresh()
                plan = self._plan
                if plan is None:
                    plan = self._built_plan()  # raises
                plan.step(grads)
            return NOTHING_MEASURED
        return self._step(grads, check_grad_scale(grad_scale), self._max_grad_norm, self._skip_nonfinite)

    def _step(self, grads: Any, grad_mult: float, max_norm: float | None, skip_nonfinite: bool,
              update_ema: bool = True) -> StepInfo:
        """The step with its gradient options given: each gradient read as ``g·grad_mult``, the
        norm of that clipped to `max_norm`. The distributed wrappers pass their own; Lookahead
        updates the EMA itself after a synchronisation."""
        with self._lock:
            self._refuse_swapped("a step")
            edits = self._edits
            if edits.hyper or edits.arrays:
                self._refresh()
            plan = self._built_plan()
            found = plan.step_with(grads, grad_mult, max_norm, skip_nonfinite, update_ema)
        return NOTHING_MEASURED if found is None else StepInfo(*found)

    def accumulate(self, grads: Mapping[Any, np.ndarray | None] | Sequence[np.ndarray | None], *,
                   grad_scale: float | None = None) -> None:
        """Add a micro-batch's gradients (each read as ``g / grad_scale`` when given; None adds
        nothing) into buffers the optimizer owns: float arrays like the parameters, allocated
        at the first call. The next step uses their sum (average with `grad_scale`) and clears
        them; a parameter that got no gradient since the last step is left alone by it.
        Gradients are checked as :meth:`step` checks them; on any error nothing changes."""
        mult = check_grad_scale(grad_scale)
        with self._lock:
            self._refuse_swapped("accumulate")
            edits = self._edits
            if edits.hyper or edits.arrays:
                self._refresh()
            if self._extras.accumulated is None:  # the first use: a plan with buffers, for fit gradients
                held = self._held
                check_grads(grads, [n for names in held.names for n in names], [p for ps in held.params for p in ps],
                            False)
                self._install(held.groups, [read_hyper(g) for g in held.groups], held.states, self._clocks(),
                              self._current_extras()._replace(accumulated={}))
            self._built_plan().accumulate(grads, mult)

    @property
    def pending(self) -> int:
        """Micro-batches accumulated since the last step (0: none)."""
        return self._built_plan().pending

    def _accumulated_in_order(self) -> list[np.ndarray]:
        """The accumulation buffers in parameter order (the distributed optimizers average them)."""
        buffers = self._extras.accumulated
        if buffers is None:
            raise RuntimeError("no gradients were ever accumulated")
        return [buffers[n] for names in self._held.names for n in names]

    def _check_step(self, grads: Any) -> None:
        """Raise as a step with `grads` (None: on the accumulated gradients) would, changing
        nothing but applying pending edits: a step inside swap_ema, an edit the step refuses,
        gradients unfit or sharing memory with the optimizer's arrays. The distributed
        optimizers run it before their first message, so that no rank fails alone after it."""
        with self._lock:
            self._refuse_swapped("a step")
            edits = self._edits
            if edits.hyper or edits.arrays:
                self._refresh()
            if grads is not None:
                self._built_plan().check_grads(grads)

    def _touched_indices(self) -> tuple[int, ...] | None:
        """The parameters whose buffers hold gradients, by index; None when nothing is pending."""
        plan = self._built_plan()
        if plan.pending == 0:
            return None
        return tuple(i for i in range(sum(len(names) for names in self._held.names)) if plan.touched(i))

    def _discard_accumulated(self) -> None:
        """Forget the gradients accumulated since the last step (a step skipped elsewhere)."""
        with self._lock:
            plan = self._built_plan()
            for buffer in (self._extras.accumulated or {}).values():
                buffer.fill(0)
            plan.set_pending(0, [False] * sum(len(names) for names in self._held.names))

    # ---- checkpoints ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The state as plain dicts of NumPy arrays (copies) and Python scalars, keyed by
        parameter name; picklable. ``param_groups`` lists each group's names under ``params``.
        Pending edits are applied first (and refused as a step would refuse them).

        Unless the state has the default layout, ``"state_format"`` records how it is stored
        (``state_dtype``, ``state_rounding``, ``seed``, and ``stochastic_rounding`` where False);
        bfloat16 slots are saved as they are held.
        With ``ema_decay`` it also holds ``"ema"``: ``{"updates": t, "arrays": {name: array}}``;
        with gradients accumulated since the last step, ``"accumulated"``:
        ``{"micro_batches": k, "arrays": {name: sum}}`` (the parameters that got any)."""
        with self._lock:
            self._refuse_swapped("state_dict")
            self._refresh(check_arrays=True)
            held = self._held
            plan = self._built_plan()
            state: dict[Hashable, dict[str, Any]] = {}
            names = [name for group_names in held.names for name in group_names]
            for index, name in enumerate(names):  # the plan's parameters, in this order
                scalars = dict(zip(self._scalar_names(), plan.scalars(index)))
                unwritten = {k for s in self._seeded_slots for k in (s, s + ABSMAX)} if plan.fresh(index) else ()
                entry: dict[str, Any] = {"step": plan.steps_done(index), **scalars}
                entry.update({k: v.copy(order="K") for k, v in held.states[name].items() if k not in unwritten})
                state[name] = entry
            groups = [{**read_hyper(g), "params": list(names)} for g, names in zip(held.groups, held.names)]
            layout = {} if self._state_format == NATIVE else {"state_format": self._state_format.saved()}
            return {"state": state, "param_groups": groups, **layout, **save_extras(self._current_extras(), names)}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict`. Everything is checked, and the new state arrays and
        plan are built, before anything changes: on any error (TypeError or ValueError naming
        the part of `state_dict` at fault) nothing changes. A resumed run continues
        bit-identically. The state arrays are new arrays holding copies of the saved ones.

        A state dict without ``"ema"`` (such as 0.1.0's) restarts the EMA from the parameters
        as they are; one without ``"accumulated"`` leaves nothing pending. State saved in
        another layout (``state_dtype``) is converted into this optimizer's: bfloat16 widens to
        float32 exactly, float32 rounds to the nearest bfloat16. A state dict saved with bfloat16
        state also sets ``state_rounding`` and ``seed``, and one loaded into an optimizer of
        bfloat16 parameters ``stochastic_rounding`` and ``seed`` (a resumed run draws as the
        saved one would have)."""
        with self._lock:
            self._refuse_inside_step("load_state_dict")
            self._refuse_swapped("load_state_dict")
            self._check_structure()
            checked = self._check_state_dict(state_dict)
            self._load(checked, self._check_saved_extras(state_dict), self._loaded_format(state_dict))

    def _loaded_format(self, state_dict: Mapping[str, Any]) -> StateFormat:
        """This optimizer's state dtype, with the roundings and seed of `state_dict` (checked)
        where they made its bits, with bfloat16 state or bfloat16 parameters (an exact resume
        needs them)."""
        saved = read_saved_format(state_dict)
        held = self._held
        params = [p for group in held.params for p in group]
        names = [n for group in held.names for n in group]
        # bfloat16 state where it was asked for, or a bfloat16 parameter's by default
        bfloat16_state = any(self._storage(n, p, saved) == "bfloat16" for n, p in zip(names, params))
        bfloat16_params = any(is_bfloat16_param(p) for p in params)
        if not (bfloat16_state or bfloat16_params):
            return self._state_format
        taken = self._state_format._replace(seed=saved.seed)
        if bfloat16_state:
            taken = taken._replace(rounding=saved.rounding)
        return taken._replace(stochastic_rounding=saved.stochastic_rounding) if bfloat16_params else taken

    def _check_saved_extras(self, state_dict: Mapping[str, Any]) -> Extras:
        """The EMA and pending accumulation of a state dict (already checked as a whole), as new arrays."""
        held = self._held
        return check_saved_extras(state_dict, [n for names in held.names for n in names],
                                  [p for params in held.params for p in params], self._ema_decay is not None)

    def _load(self, checked: Checked, extras: Extras = NO_EXTRAS, state_format: StateFormat | None = None) -> None:
        merged, loaded, clocks = checked
        held = self._held
        states: dict[Hashable, dict[str, np.ndarray]] = {}
        for names, params, hyper in zip(held.names, held.params, merged):
            needed = self._needed_slots(hyper)
            for name, param in zip(names, params):
                slots = set(loaded[name]) | set(needed) | set(held.states.get(name, {}))
                states[name] = {}
                for slot in (s for s in self._slots if s in slots):
                    arrays = self._new_slot(name, param, slot)
                    for key, array in arrays.items():
                        if key in loaded[name]:  # checked and converted into this layout by check_state_dict
                            saved = loaded[name][key]
                            np.copyto(array.view(np.uint16) if saved.dtype == np.uint16 else array, saved, casting="no")
                    states[name].update(arrays)
        edits = self._edits
        arrays_edited = edits.arrays
        edits.arrays = False
        try:
            self._install(held.groups, merged, states, clocks, extras, state_format)
        except BaseException:
            edits.arrays = edits.arrays or arrays_edited
            raise
        for group, hyper in zip(held.groups, merged):
            group.update(hyper)  # raises the hyper flag: the next step reads the groups once more

    def _check_state_dict(self, state_dict: Any) -> Checked:
        """Validate every part of a state dict against this optimizer; change nothing."""
        return check_state_dict(self, state_dict)

    # ---- copies ---------------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        """Everything a copy needs: groups with their arrays, the state arrays and the clocks.
        ``pickle`` and ``copy.deepcopy`` then copy the arrays (the copy updates its own)."""
        with self._lock:
            self._refresh(check_arrays=True)
            held = self._held
            groups = [{**read_hyper(g), "params": list(params), "param_names": list(names)}
                      for g, params, names in zip(held.groups, held.params, held.names)]
            self._refuse_swapped("copying the optimizer")
            return {"defaults": dict(self.defaults), "param_groups": groups,
                    "state": {name: dict(slots) for name, slots in held.states.items()}, "clocks": self._clocks(),
                    "options": (self._max_grad_norm, self._skip_nonfinite, self._ema_decay, self._ema_warmup),
                    "state_format": tuple(self._state_format), "counters": self._counters,
                    "storage_sizes": self._storage_sizes, "cautious": self.cautious,
                    "extras": tuple(self._current_extras())}

    def __setstate__(self, saved: Mapping[str, Any]) -> None:
        self._choose_rule(saved.get("cautious", False))
        self.defaults = dict(saved["defaults"])
        options = tuple(saved.get("options", ())) + (None, False, None, False)[len(saved.get("options", ())):]
        self._max_grad_norm, self._skip_nonfinite, self._ema_decay, self._ema_warmup = options
        self._state_format = StateFormat(*saved.get("state_format", ()))
        self._swapped = False
        self._update_plain()
        self._start_empty()
        self._counters = saved.get("counters")
        self._storage_sizes = dict(saved.get("storage_sizes", {}))
        groups = []
        for raw in saved["param_groups"]:
            data = {k: v for k, v in raw.items() if k not in RESERVED}
            data["params"] = ParamList(raw["params"], self._edits)
            data["param_names"] = ParamList(raw["param_names"], self._edits)
            groups.append(ParamGroup(data, self._edits))
        self._install(groups, [read_hyper(g) for g in groups], saved["state"],
                      [(int(s), bool(f), list(c)) for s, f, c in saved["clocks"]],
                      Extras(*saved["extras"]) if "extras" in saved else NO_EXTRAS)

    # ---- display --------------------------------------------------------------------------
    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for index, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {index}")
            for key in sorted(k for k in group if k not in RESERVED):
                lines.append(f"    {key}: {group[key]}")
            arrays = group["params"]
            dtypes = "/".join(sorted({str(a.dtype) for a in arrays}))
            lines.append(f"    params: {len(arrays)} arrays, {sum(a.size for a in arrays):,} elements ({dtypes})")
        lines.append(")")
        return "\n".join(lines)
