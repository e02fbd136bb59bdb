"""errorentropy: what scales in cross-entropy.

Split a language model's corpus cross-entropy exactly into Error-Entropy, Self-Alignment and
Confidence (Yan et al., "What Scales in Cross-Entropy Scaling Law?", ICLR 2026).
"""

from .errors import UserError
from .histogram import Decomposition, RankHistogram

__version__ = "0.1.0"
__all__ = ["Decomposition", "RankHistogram", "UserError", "__version__"]
