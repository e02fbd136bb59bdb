"""The rank histogram: the mergeable sufficient statistic of the decomposition.

For every rank e (0 = the ground truth was the model's top choice) it holds ``n_e``, the number
of scored tokens at that rank, and ``S_e``, the sum of their log-probabilities. Histograms add
(``a + b``, ``sum(shards)`` with 0 as identity), so shards, processes, machines and resumed work
merge exactly; :meth:`RankHistogram.decompose` turns one into CE = EE + SA - Conf.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import logsumexp

from errorentropy.errors import ArgumentError, UserError, as_path_text
from errorentropy.options import DEFAULT_RBP_KS
from errorentropy.storage import read_checked_json, write_checked_json

FORMAT_NAME = "errorentropy-histogram"
FORMAT_VERSION = 1
MAX_RANK = (
    1 << 24
)  # a saved rank at or beyond this is damage, not a vocabulary (dense arrays stay < 256 MiB)


@dataclass(frozen=True)
class Decomposition:
    """Cross-entropy split into its three parts (natural log, nats per token).

    ``cross_entropy == error_entropy + self_alignment - confidence`` to float64 round-off.
    ``ranks``, ``p`` and ``q`` list the observed ranks with the RBE distribution p_e and the
    normalised geometric-mean score q_e; ``log_c`` is Confidence itself (log C).
    """

    n_tokens: int
    cross_entropy: float
    error_entropy: float
    self_alignment: float
    confidence: float
    ranks: np.ndarray
    p: np.ndarray
    q: np.ndarray
    log_q_unnormalised: np.ndarray
    error_entropy_miller_madow: float
    top1_accuracy: float

    @property
    def log_c(self) -> float:
        """Log C, the log of the summed geometric-mean scores (equals Confidence)."""
        return self.confidence

    @property
    def identity_residual(self) -> float:
        """CE - (EE + SA - Conf): zero up to float64 round-off."""
        return self.cross_entropy - (self.error_entropy + self.self_alignment - self.confidence)

    def __str__(self) -> str:
        """The identity with its numbers, then the other scalar fields, one per line."""
        lines = [
            f"CE = EE + SA - Conf over {self.n_tokens:,} tokens (nats per token):",
            f"  {self.cross_entropy:.6f} = {self.error_entropy:.6f} + {self.self_alignment:.6f}"
            f" - ({self.confidence:.6f})",
        ]
        for name, value in self.as_dict().items():
            lines.append(
                f"  {name}: {value:.6g}" if isinstance(value, float) else f"  {name}: {value}"
            )
        lines.append(f"  ranks observed: {self.ranks.size}")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, float | int]:
        """The scalar fields, for JSON summaries."""
        return {
            "n_tokens": self.n_tokens,
            "cross_entropy": self.cross_entropy,
            "error_entropy": self.error_entropy,
            "self_alignment": self.self_alignment,
            "confidence": self.confidence,
            "error_entropy_miller_madow": self.error_entropy_miller_madow,
            "top1_accuracy": self.top1_accuracy,
            "identity_residual": self.identity_residual,
        }


def decompose_arrays(counts: np.ndarray, sums: np.ndarray) -> Decomposition:
    """Decompose from dense per-rank counts ``n_e`` and log-prob sums ``S_e`` (float64 math)."""
    counts = np.asarray(counts)
    sums = np.asarray(sums, dtype=np.float64)
    observed = np.flatnonzero(counts > 0)
    if observed.size == 0:
        raise UserError(
            "the rank histogram is empty (no scored tokens); score a corpus with at least one "
            "document of 2+ tokens"
        )
    n_e = counts[observed].astype(np.float64)
    s_e = sums[observed]
    n = float(n_e.sum())
    p = n_e / n
    log_p = np.log(p)
    log_q_unnorm = s_e / n_e  # log Q_e, the log geometric-mean score at rank e
    log_c = float(logsumexp(log_q_unnorm))
    log_q = log_q_unnorm - log_c
    ee = float(-(p * log_p).sum())
    sa = float((p * (log_p - log_q)).sum())
    ce = float(-s_e.sum() / n)
    miller_madow = ee + (observed.size - 1) / (2.0 * n)
    top1 = float(counts[0] / n) if counts.size and counts[0] > 0 else 0.0
    return Decomposition(
        n_tokens=int(round(n)),
        cross_entropy=ce,
        error_entropy=ee,
        self_alignment=sa,
        confidence=log_c,
        ranks=observed.astype(np.int64),
        p=p,
        q=np.exp(log_q),
        log_q_unnormalised=log_q_unnorm,
        error_entropy_miller_madow=float(miller_madow),
        top1_accuracy=top1,
    )


@dataclass(eq=False)
class RankHistogram:
    """Per-rank token counts and log-probability sums, plus additive bookkeeping.

    ``counts[e]`` is n_e and ``logprob_sums[e]`` is S_e (float64). ``n_documents`` counts the
    documents that contributed tokens, ``n_skipped`` those too short to score, and ``n_tied`` the
    scored tokens whose logit exactly tied another token's (ties count in the ground truth's
    favour). All fields add under ``+``.
    """

    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    logprob_sums: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float64))
    n_documents: int = 0
    n_skipped: int = 0
    n_tied: int = 0

    def __post_init__(self) -> None:
        try:
            counts = np.asarray(self.counts, dtype=np.int64)
            sums = np.asarray(self.logprob_sums, dtype=np.float64)
            numbers = counts.ndim == 1 and sums.shape == counts.shape
        except (TypeError, ValueError):
            numbers = False
        if not numbers:
            raise ArgumentError(
                "counts and logprob_sums must be 1-D arrays of numbers of equal length",
                "counts",
                "logprob_sums",
            )
        if counts.size and counts.min() < 0:
            raise ArgumentError("counts must be non-negative", "counts")
        for name in ("n_documents", "n_skipped", "n_tied"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ArgumentError(f"{name} must be an integer >= 0, got {value!r}", name)
        # Trim trailing empty ranks so equal content has equal shape.
        nonzero = np.flatnonzero(counts)
        size = int(nonzero[-1]) + 1 if nonzero.size else 0
        self.counts = counts[:size].copy()
        self.logprob_sums = sums[:size].copy()

    @classmethod
    def from_tokens(
        cls,
        ranks: np.ndarray,
        logprobs: np.ndarray,
        *,
        n_documents: int = 0,
        n_skipped: int = 0,
        n_tied: int = 0,
    ) -> RankHistogram:
        """Build from per-token ranks (int >= 0) and log-probabilities (float <= 0)."""
        try:
            ranks = np.asarray(ranks).astype(np.int64, copy=False).ravel()
            logprobs = np.asarray(logprobs, dtype=np.float64).ravel()
        except (TypeError, ValueError):
            raise ArgumentError(
                "ranks and logprobs must be arrays of numbers", "ranks", "logprobs"
            ) from None
        if ranks.shape != logprobs.shape:
            raise ArgumentError(
                f"ranks ({ranks.size}) and logprobs ({logprobs.size}) differ in length"
            )
        if ranks.size and ranks.min() < 0:
            raise ArgumentError("ranks must be non-negative", "ranks")
        if not np.all(np.isfinite(logprobs)):
            raise ArgumentError(
                "non-finite log-probabilities (NaN or inf) reached the histogram; the model's "
                "logits are not finite, try dtype='float32'",
                "dtype",
            )
        size = int(ranks.max()) + 1 if ranks.size else 0
        counts = np.bincount(ranks, minlength=size).astype(np.int64)
        sums = np.bincount(ranks, weights=logprobs, minlength=size)
        return cls(counts, sums, n_documents=n_documents, n_skipped=n_skipped, n_tied=n_tied)

    def update(
        self,
        logits: Any,
        labels: Any,
        *,
        ignore_index: int = -100,
        shift: bool = True,
        attention_mask: Any = None,
    ) -> RankHistogram:
        """Add the labelled tokens of one batch of logits, in place; returns ``self``.

        For any evaluation loop: ``logits`` ``[B, T, V]`` (or ``[T, V]``) and ``labels`` as
        :func:`errorentropy.head.token_stats.token_stats` takes them (Hugging Face causal-LM labels
        with ``shift=True``; ``ignore_index`` marks positions without a label; pass the batch's
        ``attention_mask`` when it is padded, so no label is scored from a pad position). Ranks
        and log-probabilities are those the scoring engine computes from the same logits; its
        numbers are reproduced when the logits are float32 from a float32 head (16-bit logits
        tie: more than 1% tied tokens warn once, with the cure).
        ``n_documents`` grows by the rows of the batch with at least one labelled token (a
        document cut into several windows counts once per window); ``n_tied`` by the labelled
        tokens whose logit exactly equals another entry's; ``n_skipped`` is left alone.

        Examples:
            >>> import torch
            >>> from errorentropy.stats.histogram import RankHistogram
            >>> _ = torch.manual_seed(0)
            >>> hist = RankHistogram()
            >>> for _ in range(3):  # three batches of 2 sequences of 6 tokens, vocabulary 50
            ...     logits = torch.randn(2, 6, 50)
            ...     labels = torch.randint(0, 50, (2, 6))
            ...     labels[1, 4:] = -100  # padding
            ...     _ = hist.update(logits, labels)
            >>> hist.n_tokens, hist.n_documents  # (5 + 3) targets and 2 rows per batch
            (24, 6)
            >>> d = hist.decompose()
            >>> abs(d.cross_entropy - (d.error_entropy + d.self_alignment - d.confidence)) < 1e-12
            True
        """
        from errorentropy.head.token_stats import token_stats_with_ties, warn_ties

        stats, tied = token_stats_with_ties(
            logits, labels, ignore_index=ignore_index, shift=shift, attention_mask=attention_mask
        )
        labelled = stats.labelled
        rows = labelled if labelled.ndim == 2 else labelled[None]  # [T] labels: one row
        batch = RankHistogram.from_tokens(
            stats.rank[labelled].cpu().numpy(),
            stats.logprob[labelled].cpu().numpy(),
            n_documents=int(rows.any(dim=-1).sum()),
            n_tied=int((tied[labelled] > 0).sum()),
        )
        warn_ties(batch.n_tied, batch.n_tokens, "RankHistogram.update")
        total = self + batch
        self.counts, self.logprob_sums = total.counts, total.logprob_sums
        self.n_documents, self.n_tied = total.n_documents, total.n_tied
        return self

    @property
    def n_tokens(self) -> int:
        """N, the number of scored tokens."""
        return int(self.counts.sum())

    def __len__(self) -> int:
        return self.n_tokens

    def __bool__(self) -> bool:
        return self.n_tokens > 0 or self.n_skipped > 0 or self.n_documents > 0

    def __add__(self, other: object) -> RankHistogram:
        if isinstance(other, int) and other == 0:
            return self.copy()
        if not isinstance(other, RankHistogram):
            return NotImplemented
        size = max(self.counts.size, other.counts.size)
        counts = np.zeros(size, dtype=np.int64)
        sums = np.zeros(size, dtype=np.float64)
        counts[: self.counts.size] += self.counts
        counts[: other.counts.size] += other.counts
        sums[: self.logprob_sums.size] += self.logprob_sums
        sums[: other.logprob_sums.size] += other.logprob_sums
        return RankHistogram(
            counts,
            sums,
            n_documents=self.n_documents + other.n_documents,
            n_skipped=self.n_skipped + other.n_skipped,
            n_tied=self.n_tied + other.n_tied,
        )

    __radd__ = __add__

    def copy(self) -> RankHistogram:
        """An independent copy."""
        return RankHistogram(
            self.counts, self.logprob_sums, self.n_documents, self.n_skipped, self.n_tied
        )

    def equals(self, other: RankHistogram, rtol: float = 0.0) -> bool:
        """Counts and bookkeeping exactly equal; sums equal within relative tolerance ``rtol``."""
        return (
            np.array_equal(self.counts, other.counts)
            and (self.n_documents, self.n_skipped, self.n_tied)
            == (other.n_documents, other.n_skipped, other.n_tied)
            and np.allclose(self.logprob_sums, other.logprob_sums, rtol=rtol, atol=0.0)
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RankHistogram) and self.equals(other)

    def decompose(self) -> Decomposition:
        """CE, EE, SA and Conf of the tokens in this histogram."""
        return decompose_arrays(self.counts, self.logprob_sums)

    def rbp_at(self, ks: Iterable[int] = DEFAULT_RBP_KS) -> dict[int, float]:
        """RBP_k for each k in ``ks``: the share of tokens whose rank is below k, sum of p_e over
        e < k (the relative-based probability of arXiv 2510.20387).

        Ranks count strictly greater logits, so a tie counts for the ground truth; that paper
        counts ties against it. The two differ by at most ``n_tied / n_tokens``. NaN for every k
        when the histogram is empty.

        Examples:
            >>> hist = RankHistogram.from_tokens([0, 0, 1, 3], [-0.1, -0.2, -1.5, -3.0])
            >>> hist.rbp_at((1, 2, 4, 100))
            {1: 0.5, 2: 0.75, 4: 1.0, 100: 1.0}
        """
        ks = sorted({_rank_cut(k) for k in ks})
        n = self.n_tokens
        if n == 0:
            return {k: float("nan") for k in ks}
        cumulative = np.concatenate([[0], np.cumsum(self.counts)])
        return {k: float(cumulative[min(k, self.counts.size)] / n) for k in ks}

    def mrr(self) -> float:
        """The mean reciprocal rank, the mean of 1 / (e + 1) over tokens (1 when every ground
        truth is the top choice); NaN when the histogram is empty.

        Examples:
            >>> RankHistogram.from_tokens([0, 0, 1, 3], [-0.1, -0.2, -1.5, -3.0]).mrr()
            0.6875
        """
        n = self.n_tokens
        if n == 0:
            return float("nan")
        reciprocal = 1.0 / np.arange(1, self.counts.size + 1, dtype=np.float64)
        return float(np.dot(self.counts.astype(np.float64), reciprocal) / n)

    # ---- saving -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The versioned, sparse JSON form (format ``errorentropy-histogram`` version 1).

        Only observed ranks are stored; float64 sums are written with ``repr`` precision so a
        load gives back the identical bits.
        """
        observed = np.flatnonzero(self.counts)
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "n_tokens": self.n_tokens,
            "n_documents": int(self.n_documents),
            "n_skipped": int(self.n_skipped),
            "n_tied": int(self.n_tied),
            "ranks": [int(r) for r in observed],
            "counts": [int(c) for c in self.counts[observed]],
            "logprob_sums": [float(s) for s in self.logprob_sums[observed]],
        }

    @classmethod
    def from_dict(cls, body: dict[str, Any], source: str = "histogram") -> RankHistogram:
        """Inverse of :meth:`to_dict`, for every format version this package has written."""
        if body.get("format") != FORMAT_NAME:
            raise UserError(
                f"{source} is not an errorentropy histogram (format {body.get('format')!r}); pass "
                "a file written by `errorentropy score`"
            )
        version = body.get("version")
        if version != 1:
            if (
                isinstance(version, int)
                and not isinstance(version, bool)
                and version > FORMAT_VERSION
            ):
                raise UserError(
                    f"{source} has histogram format version {version}, newer than this "
                    f"errorentropy supports ({FORMAT_VERSION}); upgrade errorentropy"
                )
            raise UserError(
                f"{source} has an unknown histogram format version {version!r}; it was not "
                "written by errorentropy or is damaged"
            )
        try:
            ranks = np.asarray(body["ranks"], dtype=np.int64)
            counts_sparse = np.asarray(body["counts"], dtype=np.int64)
            sums_sparse = np.asarray(body["logprob_sums"], dtype=np.float64)
            _check_sparse(body, ranks, counts_sparse, sums_sparse)
            size = int(ranks.max()) + 1 if ranks.size else 0
            counts = np.zeros(size, dtype=np.int64)
            sums = np.zeros(size, dtype=np.float64)
            counts[ranks] = counts_sparse
            sums[ranks] = sums_sparse
            bookkeeping = [body["n_documents"], body["n_skipped"], body["n_tied"]]
            if not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in bookkeeping
            ):
                raise ValueError(
                    "n_documents, n_skipped and n_tied must be non-negative integers, got "
                    f"{bookkeeping}"
                )
            hist = cls(counts, sums, *bookkeeping)
        except (KeyError, TypeError, ValueError, IndexError, OverflowError) as exc:
            raise UserError(
                f"{source} is malformed ({str(exc)[:120]}); delete it and recompute"
            ) from None
        if hist.n_tokens != body.get("n_tokens"):
            raise UserError(
                f"{source} is inconsistent (n_tokens does not match its counts); delete it and "
                "recompute"
            )
        return hist

    def save(self, path: Path | str) -> None:
        """Write atomically as checksummed JSON."""
        write_checked_json(path, self.to_dict())

    @classmethod
    def load(cls, path: Path | str) -> RankHistogram:
        """Read a file written by :meth:`save`; corruption is detected by checksum."""
        path = as_path_text(path, "path")
        return cls.from_dict(read_checked_json(path, "histogram"), source=str(path))


def _check_sparse(
    body: dict[str, Any], ranks: np.ndarray, counts: np.ndarray, sums: np.ndarray
) -> None:
    """Raise ValueError unless the sparse arrays are what :meth:`RankHistogram.to_dict` writes."""
    for name in ("ranks", "counts"):
        if any(isinstance(v, bool) or not isinstance(v, int) for v in body[name]):
            raise ValueError(f"{name} must hold integers")
    if ranks.ndim != 1 or counts.shape != ranks.shape or sums.shape != ranks.shape:
        raise ValueError("ranks, counts and logprob_sums must be lists of equal length")
    if ranks.size and (ranks[0] < 0 or np.any(np.diff(ranks) <= 0)):
        raise ValueError("ranks must be distinct, increasing and non-negative")
    if ranks.size and ranks[-1] >= MAX_RANK:
        raise ValueError(f"rank {ranks[-1]} is beyond any vocabulary (limit {MAX_RANK})")
    if np.any(counts < 1) or not np.all(np.isfinite(sums)):
        raise ValueError("counts must be positive and sums finite")


def _rank_cut(k: Any) -> int:
    """``k`` of RBP_k as a positive int, else ValueError."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ArgumentError(f"RBP_k needs integers k >= 1, got {k!r}")
    return int(k)


def total(histograms: list[RankHistogram]) -> RankHistogram:
    """Sum of histograms (the empty sum is the empty histogram)."""
    result = RankHistogram()
    for hist in histograms:
        result = result + hist
    return result
