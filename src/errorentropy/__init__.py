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
import sys
import types
from typing import TYPE_CHECKING, Any

from .version import __version__

if TYPE_CHECKING:
    from .api import ScoredCorpus, load_model, score
    from .corpus import Corpus, load_corpus
    from .errors import UserError
    from .fits import SweepFits, fit_sweep
    from .histogram import Decomposition, RankHistogram
    from .options import ScoreOptions
    from .report import build_report
    from .sweep import run_sweep
    from .token_stats import TokenStats, token_stats
    from .tokens import TokenTable

# Each public name and the module that defines it.
_HOMES: dict[str, str] = {
    "load_model": "api",
    "score": "api",
    "ScoredCorpus": "api",
    "load_corpus": "corpus",
    "Corpus": "corpus",
    "token_stats": "token_stats",
    "TokenStats": "token_stats",
    "RankHistogram": "histogram",
    "Decomposition": "histogram",
    "ScoreOptions": "options",
    "TokenTable": "tokens",
    "UserError": "errors",
    "run_sweep": "sweep",
    "fit_sweep": "fits",
    "SweepFits": "fits",
    "build_report": "report",
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


class _Package(types.ModuleType):
    """The package module: a public function keeps its name when its namesake submodule is
    imported (``errorentropy.token_stats`` is the function; the module is
    ``sys.modules["errorentropy.token_stats"]``)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _HOMES and isinstance(value, types.ModuleType):
            return  # the import system binding the submodule over the public name
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
