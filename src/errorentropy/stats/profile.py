"""The sorted-probability profile (the paper's Fig. 5): for predictions whose ground truth sits at
rank r, the mean of the top-k probabilities in descending order. Additive like the histogram."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from errorentropy.errors import UserError
from errorentropy.storage import read_checked_json, write_checked_json

PROFILE_RANKS = 16
PROFILE_TOP = 32
FORMAT_NAME = "errorentropy-profile"
FORMAT_VERSION = 1


@dataclass(eq=False)
class RankProfile:
    """``sums[r, j]``: summed j-th largest probability over tokens of rank r; ``counts[r]``: their
    number."""

    sums: np.ndarray = field(default_factory=lambda: np.zeros((PROFILE_RANKS, PROFILE_TOP)))
    counts: np.ndarray = field(default_factory=lambda: np.zeros(PROFILE_RANKS, dtype=np.int64))

    def add_tokens(self, ranks: np.ndarray, top_logprobs: np.ndarray) -> None:
        """Accumulate tokens (ranks ``[T]``, descending top log-probs ``[T, k]``)."""
        ranks = np.asarray(ranks)
        keep = ranks < self.sums.shape[0]
        if not keep.any():
            return
        probs = np.exp(np.asarray(top_logprobs, dtype=np.float64)[keep])
        width = min(probs.shape[1], self.sums.shape[1])
        np.add.at(self.sums[:, :width], ranks[keep], probs[:, :width])
        np.add.at(self.counts, ranks[keep], 1)

    def __add__(self, other: object) -> RankProfile:
        if isinstance(other, int) and other == 0:
            return RankProfile(self.sums.copy(), self.counts.copy())
        if not isinstance(other, RankProfile):
            return NotImplemented
        return RankProfile(self.sums + other.sums, self.counts + other.counts)

    __radd__ = __add__

    def mean(self) -> np.ndarray:
        """Mean sorted probabilities per rank, NaN rows for ranks never observed."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.sums / self.counts[:, None]

    def save(self, path: Path | str) -> None:
        """Write the profile as checksummed JSON."""
        write_checked_json(
            path,
            {
                "format": FORMAT_NAME,
                "version": FORMAT_VERSION,
                "sums": self.sums.tolist(),
                "counts": self.counts.tolist(),
            },
        )

    @classmethod
    def load(cls, path: Path | str) -> RankProfile:
        """Read a profile :meth:`save` wrote; a damaged or foreign file is a :class:`UserError`."""
        body: dict[str, Any] = read_checked_json(path, "profile")
        if body.get("format") != FORMAT_NAME or body.get("version") != FORMAT_VERSION:
            raise UserError(
                f"{path} is not a version-{FORMAT_VERSION} errorentropy profile; "
                "recompute it with --profile"
            )
        try:
            sums = np.asarray(body["sums"], dtype=np.float64)
            counts = np.asarray(body["counts"], dtype=np.int64)
            if (
                sums.ndim != 2
                or counts.shape != sums.shape[:1]
                or np.any(counts < 0)
                or not np.all(np.isfinite(sums))
            ):
                raise ValueError(
                    "sums must be [ranks, top] and counts [ranks], non-negative and finite"
                )
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise UserError(
                f"profile {path} is malformed ({str(exc)[:120]}); delete it and recompute "
                "with --profile"
            ) from None
        return cls(sums, counts)
