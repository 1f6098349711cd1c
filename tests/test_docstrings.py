"""Every public optimizer documents itself: an Args section that matches its signature and states
each default, the update formula, the paper, and a three-line example that runs."""

from __future__ import annotations

import ast
import doctest
import inspect
import math
import re

import numpy as np
import pytest

import fastoptim as fo


def _optimizer_classes() -> list[type]:
    """The public update rules: every class fastoptim exports that is an Optimizer or a Lookahead."""
    found = []
    for name in fo.__all__:
        obj = getattr(fo, name)
        if inspect.isclass(obj) and issubclass(obj, (fo.Optimizer, fo.Lookahead)) and obj is not fo.Optimizer:
            found.append(obj)
    return found


CLASSES = _optimizer_classes()


def _doc(cls: type) -> str:
    doc = cls.__dict__.get("__doc__")  # the class's own: a subclass does not inherit its parent's
    assert doc, f"{cls.__name__} has no docstring of its own"
    return inspect.cleandoc(doc)


def _args_section(cls: type) -> dict[str, str]:
    """Argument name -> its line in the ``Args:`` section (one line per argument)."""
    lines = _doc(cls).splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == "Args:"]
    assert len(starts) == 1, f"{cls.__name__}: expected one 'Args:' line on its own, found {len(starts)}"
    head = lines[starts[0]]
    indent = len(head) - len(head.lstrip())
    entries: dict[str, str] = {}
    for line in lines[starts[0] + 1:]:
        if not line.strip() or len(line) - len(line.lstrip()) <= indent:
            break
        match = re.fullmatch(r"\s*(\w+): (.+)", line)
        assert match, f"{cls.__name__}: Args line is not 'name: description' on one line: {line!r}"
        assert match[1] not in entries, f"{cls.__name__}: {match[1]} is documented twice"
        entries[match[1]] = match[2]
    return entries


def _stated_default(text: str) -> object:
    """The value written after "default" in an Args line, as a Python value."""
    found = re.findall(r"\bdefault:?\s+(\([^()]*\)|[^\s,;()]+)", text)
    assert len(found) == 1, f"expected one 'default <value>' in {text!r}, found {found}"
    token = found[0].rstrip(".")
    try:
        return ast.literal_eval(token)
    except (ValueError, SyntaxError):
        return token


def _same_value(stated: object, actual: object) -> bool:
    if isinstance(actual, bool) or isinstance(stated, bool):
        return stated is actual
    if isinstance(actual, (int, float)):
        return isinstance(stated, (int, float)) and math.isclose(stated, actual, rel_tol=1e-12, abs_tol=0.0)
    if isinstance(actual, tuple):
        return (isinstance(stated, tuple) and len(stated) == len(actual)
                and all(_same_value(s, a) for s, a in zip(stated, actual)))
    return stated == actual or stated in (repr(actual), str(actual))


def test_discovery_finds_the_rules() -> None:
    names = {cls.__name__ for cls in CLASSES}
    assert {"SGD", "Adam", "AdamW", "Lion", "Lookahead", "Ranger"} <= names


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_args_follow_the_signature(cls: type) -> None:
    documented = list(_args_section(cls))
    expected = list(inspect.signature(cls.__init__).parameters)[1:]  # all but self
    assert documented == expected, f"{cls.__name__}: Args documents {documented}, __init__ takes {expected}"


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_args_state_the_defaults(cls: type) -> None:
    entries = _args_section(cls)
    for name, param in list(inspect.signature(cls.__init__).parameters.items())[1:]:
        if param.default is inspect.Parameter.empty:
            continue
        stated = _stated_default(entries[name])
        assert _same_value(stated, param.default), (
            f"{cls.__name__}.{name}: docstring says default {stated!r}, the signature has {param.default!r}")


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_formula_and_paper(cls: type) -> None:
    doc = _doc(cls)
    assert ".. math::" in doc, f"{cls.__name__} has no '.. math::' update formula"
    assert re.search(r"\b(19|20)\d\d\b", doc), f"{cls.__name__} names no paper year"


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_example_runs(cls: type) -> None:
    doc = _doc(cls)
    lines = doc.splitlines()
    prompts = [i for i, line in enumerate(lines) if line.lstrip().startswith(">>>")]
    assert len(prompts) == 3, f"{cls.__name__}: the example should be three '>>>' lines, found {len(prompts)}"
    assert "Example:" in [line.strip() for line in lines[:prompts[0]]], f"{cls.__name__}: no 'Example:' section"
    test = doctest.DocTestParser().get_doctest(doc, {"np": np, "fo": fo}, cls.__name__, None, 0)
    report: list[str] = []
    result = doctest.DocTestRunner(verbose=False).run(test, out=report.append)
    assert result.attempted == 3
    assert result.failed == 0, "".join(report)
