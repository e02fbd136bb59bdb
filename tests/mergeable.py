"""A generic tester for mergeable values, in the spirit of torcheval's metric tester.

A :class:`Mergeable` spec says, for one value type, how to build a value from raw data (a list
of items: tokens, documents) in one pass, how to add two values, what the empty value is, how to
save one to a path and load it back, and which named fields hold its state. :func:`check_mergeable`
then holds the value to the same properties as every other:

- addition is associative, and commutative where the spec says so;
- the empty value (and ``0``, where ``sum()`` starts from it) is an identity on both sides;
- ``sum()`` of a list equals adding one by one;
- ``+`` leaves its operands unchanged and shares no state with them (the result is scribbled on
  and the operands checked again);
- pickling and save/load give back the identical bits (float64 included);
- computing a summary twice gives the same answer and leaves the value unchanged;
- raw data split at random into 1, 2 and 4 shards, each built and then merged, equals the value
  built from all the data at once: integer fields exactly, float fields to ``rtol``.

Failures name the value, the two sides compared and every field that differs, with the first
differing entry and the largest relative difference, like boost-histogram's pytest hook.
"""

from __future__ import annotations

import functools
import operator
import pickle
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
from hypothesis import strategies as st

V = TypeVar("V")
Item = TypeVar("Item")
Fields = Mapping[str, Any]
SHARD_COUNTS = (1, 2, 4)


@dataclass(frozen=True)
class Mergeable(Generic[V, Item]):
    """How to make, add, save and compare one kind of mergeable value.

    ``fields`` must return the value's live state (the arrays themselves, not copies), flattened
    to dotted names; the aliasing check scribbles on them. Float fields are compared to ``rtol``
    after a merge, except those named in ``exact``; everything else, always exactly.
    """

    name: str
    items: st.SearchStrategy[list[Item]]  # raw data
    build: Callable[[Sequence[Item]], V]  # one pass over raw data
    fields: Callable[[V], Fields]
    save: Callable[[V, Path], None]  # to a path that does not exist yet
    load: Callable[[Path], V]
    add: Callable[[V, V], V] = operator.add
    merge: Callable[[Sequence[V]], V] | None = None  # many at once; default: sum() or add
    empty: Callable[[], V] | None = None  # the empty value, besides build([])
    zero_is_identity: bool = True  # sum(values) works, starting from 0
    commutative: bool = True
    rtol: float = 1e-12
    exact: frozenset[str] = frozenset()
    compute: Callable[[V], Fields] | None = None  # a summary that must be idempotent

    def values(self) -> st.SearchStrategy[V]:
        """Random values: built from random raw data."""
        return self.items.map(self.build)

    def identities(self) -> list[tuple[str, Any]]:
        """Every value that must be an identity of ``add``, named."""
        found: list[tuple[str, Any]] = [("build([])", self.build([]))]
        if self.empty is not None:
            found.append(("the empty value", self.empty()))
        if self.zero_is_identity:
            found.append(("0", 0))
        return found

    def merge_all(self, values: Sequence[V]) -> V:
        """Many values merged: ``merge``, else ``sum()``, else ``add`` from the empty value."""
        if self.merge is not None:
            return self.merge(values)
        if self.zero_is_identity:
            return _builtin_sum(values)
        return functools.reduce(self.add, values, self.build([]))


def _builtin_sum(values: Sequence[Any]) -> Any:
    """Python's ``sum()``, starting from 0 (typed loosely: 0 + a value is the value's business)."""
    return sum(values)


# ---- comparing ------------------------------------------------------------------------------


def _is_float(x: Any) -> bool:
    return isinstance(x, (float, np.floating)) or (
        isinstance(x, np.ndarray) and x.dtype.kind in "fc"
    )


def _unequal(expected: np.ndarray, actual: np.ndarray, rtol: float, bits: bool) -> np.ndarray:
    """A mask of the entries that differ (same dtype and shape assumed)."""
    if bits and expected.dtype.kind in "fc":
        as_int = f"u{expected.dtype.itemsize}"
        return expected.reshape(-1).view(as_int) != actual.reshape(-1).view(as_int)
    if expected.dtype.kind in "fc" and rtol > 0:
        return ~np.isclose(actual, expected, rtol=rtol, atol=0.0, equal_nan=True).reshape(-1)
    same = expected == actual
    if expected.dtype.kind in "fc":
        same |= np.isnan(expected) & np.isnan(actual)
    return ~np.asarray(same).reshape(-1)


def _array_difference(expected: Any, actual: Any, rtol: float, bits: bool) -> str | None:
    e, a = np.asarray(expected), np.asarray(actual)
    if isinstance(expected, np.ndarray) and isinstance(actual, np.ndarray):
        if e.dtype != a.dtype:
            return f"dtype {e.dtype} expected, got {a.dtype}"
    elif e.dtype.kind != a.dtype.kind:
        return f"expected {expected!r}, got {actual!r}"
    if e.shape != a.shape:
        return f"shape {e.shape} expected, got {a.shape}"
    bad = _unequal(e, a, rtol, bits)
    if not bad.any():
        return None
    first = int(np.flatnonzero(bad)[0])
    e_flat, a_flat = e.reshape(-1), a.reshape(-1)
    text = f"expected {e_flat[first].item()!r}, got {a_flat[first].item()!r}"
    if e.ndim:
        text = f"{int(bad.sum())} of {bad.size} entries differ; first at flat index {first}: {text}"
    if e.dtype.kind in "fc":
        with np.errstate(all="ignore"):
            rel = np.abs(a_flat - e_flat)[bad] / np.abs(e_flat)[bad]
        allowed = "identical bits" if bits else f"rtol {rtol:g}"
        text += f" (largest relative difference {np.nanmax(rel):.3g}; allowed: {allowed})"
    return text


def field_difference(
    expected: Any, actual: Any, rtol: float = 0.0, bits: bool = False
) -> str | None:
    """How one field's actual value differs from the expected one, or None if it does not."""
    arrays = isinstance(expected, np.ndarray) or isinstance(actual, np.ndarray)
    if arrays or _is_float(expected) or _is_float(actual):
        return _array_difference(expected, actual, rtol, bits)
    same_type = type(expected) is type(actual) or _both_ints(expected, actual)
    if expected != actual or not same_type:
        return f"expected {expected!r}, got {actual!r}"
    return None


def _both_ints(a: Any, b: Any) -> bool:
    integer = (int, np.integer)
    return isinstance(a, integer) and isinstance(b, integer) and not isinstance(a, bool)


def differences(
    spec: Mergeable[Any, Any], expected: Fields, actual: Fields, *, rtol: float, bits: bool
) -> list[str]:
    """One line per field that differs; empty when the two states agree."""
    lines = []
    for name in sorted(expected.keys() | actual.keys()):
        if name not in actual or name not in expected:
            lines.append(f"{name}: only in {'expected' if name in expected else 'actual'}")
            continue
        tolerance = 0.0 if name in spec.exact else rtol
        problem = field_difference(expected[name], actual[name], tolerance, bits)
        if problem is not None:
            lines.append(f"{name}: {problem}")
    return lines


def assert_same(
    spec: Mergeable[Any, Any],
    expected: Any,
    actual: Any,
    what: str,
    *,
    rtol: float = 0.0,
    bits: bool = False,
) -> None:
    """Fail, naming ``spec.name``, ``what`` was compared and each field that differs."""
    e, a = spec.fields(expected), spec.fields(actual)
    lines = differences(spec, e, a, rtol=rtol, bits=bits)
    if lines:
        agreeing = sorted(set(e) - {line.split(":", 1)[0] for line in lines})
        detail = "\n  ".join(lines)
        raise AssertionError(
            f"{spec.name}: {what}\n  {detail}\n  (fields that agree: {', '.join(agreeing) or '-'})"
        )


def snapshot(spec: Mergeable[Any, Any], value: Any) -> Fields:
    """A deep copy of a value's state, to compare it with later."""
    return pickle.loads(pickle.dumps(dict(spec.fields(value))))


def assert_unchanged(spec: Mergeable[Any, Any], before: Fields, value: Any, what: str) -> None:
    """Fail unless ``value``'s state is still the bits of ``before``."""
    lines = differences(spec, before, spec.fields(value), rtol=0.0, bits=True)
    if lines:
        raise AssertionError(f"{spec.name}: {what} changed\n  " + "\n  ".join(lines))


# ---- the properties -------------------------------------------------------------------------


def scribble(spec: Mergeable[Any, Any], value: Any) -> bool:
    """Change every array and list in ``value``'s state in place; True if anything changed."""
    changed = False
    for item in spec.fields(value).values():
        if isinstance(item, np.ndarray) and item.size and item.flags.writeable:
            item[...] = ~item if item.dtype.kind == "b" else item + 7
            changed = True
        elif isinstance(item, list):
            item.append("scribbled")
            changed = True
    return changed


def check_algebra(spec: Mergeable[V, Any], a: V, b: V, c: V) -> None:
    """Associativity, commutativity, identities, ``sum()``, and operands left alone."""
    identities = spec.identities()
    operands = {"a": a, "b": b, "c": c}
    operands.update((name, v) for name, v in identities if not isinstance(v, int))
    before = {name: snapshot(spec, v) for name, v in operands.items()}
    add = spec.add
    ab = add(a, b)
    for name, value in operands.items():
        assert_unchanged(spec, before[name], value, f"operand {name}, by addition,")
    assert_same(spec, add(ab, c), add(a, add(b, c)), "(a + b) + c != a + (b + c)", rtol=spec.rtol)
    if spec.commutative:
        assert_same(spec, ab, add(b, a), "a + b != b + a", rtol=spec.rtol)
    results = {"a + b": ab}
    for name, identity in identities:
        results[f"{name} + a"] = add(identity, a)
        results[f"a + {name}"] = add(a, identity)
        assert_same(spec, a, results[f"{name} + a"], f"{name} + a != a")
        assert_same(spec, a, results[f"a + {name}"], f"a + {name} != a")
    if spec.zero_is_identity:
        results["sum([a])"] = _builtin_sum([a])
        assert_same(spec, a, results["sum([a])"], "sum([a]) != a")
        assert_same(spec, add(ab, c), _builtin_sum([a, b, c]), "sum([a, b, c]) != (a + b) + c")
    for name, value in operands.items():
        assert_unchanged(spec, before[name], value, f"operand {name}, by addition,")
    for what, result in results.items():
        written = snapshot(spec, result)
        if scribble(spec, result) and not differences(
            spec, written, spec.fields(result), rtol=0.0, bits=True
        ):
            raise TypeError(f"{spec.name}: fields() returns copies; the aliasing check needs state")
        for name, value in operands.items():
            assert_unchanged(spec, before[name], value, f"operand {name}, by writing to {what},")


def check_persistence(spec: Mergeable[V, Any], value: V) -> None:
    """Pickling and save/load give back the identical bits, and saving changes nothing."""
    before = snapshot(spec, value)
    assert_same(spec, value, pickle.loads(pickle.dumps(value)), "pickle round trip", bits=True)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "saved"
        spec.save(value, path)
        assert_same(spec, value, spec.load(path), "save/load round trip", bits=True)
    assert_unchanged(spec, before, value, "the value, by saving it,")


def check_compute(spec: Mergeable[V, Any], value: V) -> None:
    """``compute`` twice gives identical answers and leaves the value unchanged."""
    if spec.compute is None:
        return
    before = snapshot(spec, value)
    first, second = spec.compute(value), spec.compute(value)
    lines = differences(spec, first, second, rtol=0.0, bits=True)
    assert not lines, f"{spec.name}: compute is not idempotent\n  " + "\n  ".join(lines)
    assert_unchanged(spec, before, value, "the value, by compute,")


def split(items: Sequence[Item], k: int, rng: np.random.Generator) -> list[list[Item]]:
    """``items`` dealt at random into ``k`` shards (some may be empty), order kept in each."""
    owner = rng.integers(0, k, size=len(items))
    return [[item for item, o in zip(items, owner) if o == s] for s in range(k)]


def check_shards(
    spec: Mergeable[V, Item], items: Sequence[Item], seed: int, counts: Sequence[int] = SHARD_COUNTS
) -> None:
    """Shards built separately and merged (in two orders where commutative) equal one pass."""
    whole = spec.build(items)
    for k in counts:
        rng = np.random.default_rng([seed, k])
        parts = [spec.build(shard) for shard in split(items, k, rng)]
        merged = spec.merge_all(parts)
        assert_same(spec, whole, merged, f"{k} shards merged != one pass", rtol=spec.rtol)
        if spec.commutative and k > 1:
            shuffled = [parts[i] for i in rng.permutation(k)]
            what = f"{k} shards merged in another order != one pass"
            assert_same(spec, whole, spec.merge_all(shuffled), what, rtol=spec.rtol)


def check_mergeable(spec: Mergeable[Any, Any], data: st.DataObject) -> None:
    """Every property, on raw data drawn from ``spec.items`` (use with ``@given(st.data())``)."""
    items = data.draw(spec.items, label="items")
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    a, b, c = (spec.build(part) for part in split(items, 3, np.random.default_rng(seed)))
    check_algebra(spec, a, b, c)
    for value in (spec.build(items), spec.build([])):
        check_persistence(spec, value)
        check_compute(spec, value)
    check_shards(spec, items, seed)
