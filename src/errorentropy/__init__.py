"""errorentropy: what scales in cross-entropy.

Split a language model's corpus cross-entropy exactly into Error-Entropy, Self-Alignment and
Confidence (Yan et al., "What Scales in Cross-Entropy Scaling Law?", ICLR 2026)::

    import errorentropy as ee
    model, tokenizer = ee.load_model("EleutherAI/pythia-160m", revision="step1000")
    result = ee.score(model, tokenizer, ee.load_corpus("wikipedia"), max_length=512)
    print(result.histogram.decompose())

Every public name is importable from here; each is loaded on first use, so ``import
errorentropy`` (and the command line) starts without torch, transformers or matplotlib.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from errorentropy.version import __version__

if TYPE_CHECKING:
    from errorentropy.data.corpus import Corpus, load_corpus
    from errorentropy.errors import UserError
    from errorentropy.fits.fit import SweepFits, fit_sweep
    from errorentropy.head.token_stats import TokenStats, token_stats
    from errorentropy.options import ScoreOptions
    from errorentropy.report.page import build_report
    from errorentropy.scoring.api import ScoredCorpus, load_model, score
    from errorentropy.stats.histogram import Decomposition, RankHistogram
    from errorentropy.stats.tokens import TokenTable
    from errorentropy.sweep.run import run_sweep

# Each public name and the module that defines it.
_HOMES: dict[str, str] = {
    "load_model": "scoring.api",
    "score": "scoring.api",
    "ScoredCorpus": "scoring.api",
    "load_corpus": "data.corpus",
    "Corpus": "data.corpus",
    "token_stats": "head.token_stats",
    "TokenStats": "head.token_stats",
    "RankHistogram": "stats.histogram",
    "Decomposition": "stats.histogram",
    "ScoreOptions": "options",
    "TokenTable": "stats.tokens",
    "UserError": "errors",
    "run_sweep": "sweep.run",
    "fit_sweep": "fits.fit",
    "SweepFits": "fits.fit",
    "build_report": "report.page",
}

__all__ = [
    "Corpus",
    "Decomposition",
    "RankHistogram",
    "ScoreOptions",
    "ScoredCorpus",
    "SweepFits",
    "TokenStats",
    "TokenTable",
    "UserError",
    "__version__",
    "build_report",
    "fit_sweep",
    "load_corpus",
    "load_model",
    "run_sweep",
    "score",
    "token_stats",
]


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use (PEP 562) and keep the name here."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
