"""Training objectives from the decomposition CE = EE + SA - Conf (docs/objectives.md).

* :func:`ce_conf_loss`: the exact ``CE + lam * Conf`` of a batch; every weighting of the exact
  terms trains like it (EE has no gradient), ``lam=1`` is ``EE + SA``.
* :func:`soft_error_entropy`: the relaxed Error-Entropy, from soft ranks (:func:`soft_ranks`)
  and a soft histogram of them over rank bins.
* :func:`mixture` / :class:`Objective`: anchored weighted sums, callable as
  ``loss(logits, labels)``, with :class:`ObjectiveTerms` for logging.
* :func:`parse_objective`, :func:`parse_objectives`: names such as ``"ce+0.5conf"``.

All take causal-LM logits ``[B, T, V]`` (float32, bfloat16, float16, float64) and Hugging Face
labels, read the logits in chunks and keep no extra ``[B, T, V]`` tensor for backward.
"""

from __future__ import annotations

from .losses import (
    DEFAULT_BANDWIDTH,
    DEFAULT_TAU,
    Objective,
    ce_conf_from_tokens,
    ce_conf_loss,
    mixture,
    soft_error_entropy,
    soft_ranks,
)
from .parse import parse_objective, parse_objectives
from .soft_rank import default_bins
from .terms import ObjectiveTerms

__all__ = [
    "DEFAULT_BANDWIDTH",
    "DEFAULT_TAU",
    "Objective",
    "ObjectiveTerms",
    "ce_conf_from_tokens",
    "ce_conf_loss",
    "default_bins",
    "mixture",
    "parse_objective",
    "parse_objectives",
    "soft_error_entropy",
    "soft_ranks",
]
