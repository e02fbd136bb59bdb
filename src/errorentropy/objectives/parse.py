"""Objective names, as a command line takes them: ``"ce"``, ``"ce+conf"``, ``"ce+0.5conf"``,
``"soft-ee"``, ``"ce+soft-ee"``, ``"soft-ee+0.1logrank"``, ``"soft-ee+0.2rbp@10"``."""

from __future__ import annotations

import math
import re
from typing import Any

from ..errors import UserError
from .losses import Objective, mixture

__all__ = ["TERMS", "parse_objective", "parse_objectives"]

# Term name in an objective -> keyword of :func:`~errorentropy.objectives.mixture`.
TERMS: dict[str, str] = {
    "ce": "ce",
    "conf": "conf",
    "soft-ee": "soft_ee",
    "logrank": "soft_log_rank",
    "rbp": "soft_rbp",
}
_TERM = re.compile(
    r"(?P<weight>(?:\d+(?:\.\d*)?|\.\d+)(?:e[-+]?\d+)?)?\*?(?P<name>[a-z][a-z-]*)(?:@(?P<k>\d+))?"
)
_FORMS = (
    "a '+'-separated sum of [weight]term, term one of ce, conf, soft-ee, logrank, rbp or rbp@K, "
    "weight a non-negative number (e.g. ce, ce+conf, ce+0.5conf, soft-ee+0.1logrank, "
    "ce+0.2rbp@10)"
)
_NOT_TRAINABLE = {
    "ee": "exact Error-Entropy has no gradient (ranks are piecewise constant); use soft-ee",
    "sa": "Self-Alignment is CE + Conf - EE and EE has no gradient; ce+conf trains like it",
}


def parse_objective(text: str, **options: Any) -> Objective:
    """The :class:`~errorentropy.objectives.Objective` an objective name means; ``options`` are
    the keyword options of :func:`~errorentropy.objectives.mixture` (tau, bins, ...).

    Examples:
        >>> from errorentropy.objectives import parse_objective
        >>> parse_objective("ce+0.5conf").conf
        0.5
        >>> parse_objective("soft-ee+0.1logrank", tau=0.05).name
        'soft-ee+0.1logrank'
    """
    weights: dict[str, float] = {}
    rbp_k: int | None = None
    cleaned = text.strip().lower().replace(" ", "")
    if not cleaned:
        raise UserError(f"empty objective name; an objective is {_FORMS}")
    for part in cleaned.split("+"):
        match = _TERM.fullmatch(part)
        name = match["name"] if match else None
        if match is None or name not in TERMS or (match["k"] is not None and name != "rbp"):
            why = _NOT_TRAINABLE.get(name or "", f"'{part}' is not a term")
            raise UserError(f"objective '{text}': {why}; an objective is {_FORMS}")
        weight = float(match["weight"]) if match["weight"] is not None else 1.0
        repeated = TERMS[name] in weights
        if repeated or not math.isfinite(weight):
            problem = "repeats in" if repeated else "has a weight that is not finite in"
            raise UserError(f"objective '{text}': {name} {problem} it; an objective is {_FORMS}")
        weights[TERMS[name]] = weight
        if match["k"] is not None:
            rbp_k = int(match["k"])
    if rbp_k is not None:
        options = {**options, "rbp_k": rbp_k}
    try:
        return mixture(**{"ce": 0.0, **weights, **options})
    except UserError as err:
        raise UserError(f"objective '{text}': {err}") from None


def parse_objectives(text: str, **options: Any) -> list[Objective]:
    """The objectives of a comma-separated list of names, e.g. ``"ce,ce+conf,soft-ee"``."""
    names = text.split(",")
    if not text.strip() or any(not name.strip() for name in names):
        raise UserError(f"objectives '{text}': an empty name in the list; each is {_FORMS}")
    return [parse_objective(name, **options) for name in names]
