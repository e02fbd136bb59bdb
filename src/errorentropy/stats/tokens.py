"""The token table: every scored token's document, position, rank and log-probability."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np

from errorentropy.errors import ArgumentError, UserError, type_name
from errorentropy.stats.histogram import RankHistogram
from errorentropy.storage import atomic_write_bytes


@dataclass
class TokenTable:
    """Every scored token, sorted by (document, position): the per-document data a bootstrap
    needs."""

    doc: np.ndarray  # int32, index into the corpus's documents
    position: np.ndarray  # int32, the target's position in its document's token ids
    rank: np.ndarray  # int32
    logprob: np.ndarray  # float64

    def __post_init__(self) -> None:
        """Refuse columns that are not 1-D numeric arrays of one length (kept as given)."""
        columns = {n: getattr(self, n) for n in ("doc", "position", "rank", "logprob")}
        for name, column in columns.items():
            if (
                not isinstance(column, np.ndarray)
                or column.ndim != 1
                or column.dtype.kind not in "iuf"
            ):
                raise ArgumentError(
                    f"{name} must be a 1-D numpy array of numbers, got {type_name(column)}", name
                )
        if len({column.size for column in columns.values()}) > 1:
            sizes = ", ".join(f"{n} {c.size}" for n, c in columns.items())
            raise ArgumentError(f"the columns must have one length, got {sizes}")

    def histogram(self, n_documents: int = 0, n_skipped: int = 0, n_tied: int = 0) -> RankHistogram:
        """The rank histogram of these tokens, with the given bookkeeping counts."""
        return RankHistogram.from_tokens(
            self.rank, self.logprob, n_documents=n_documents, n_skipped=n_skipped, n_tied=n_tied
        )

    def save(self, path: Any) -> None:
        """Compressed ``.npz`` (arrays doc, position, rank, logprob), written atomically."""
        buffer = io.BytesIO()
        np.savez_compressed(
            buffer, doc=self.doc, position=self.position, rank=self.rank, logprob=self.logprob
        )
        atomic_write_bytes(path, buffer.getvalue())

    @classmethod
    def load(cls, path: Any) -> TokenTable:
        """Read a table :meth:`save` wrote; a damaged file is a :class:`UserError`."""
        try:
            with np.load(path, allow_pickle=False) as data:
                table = cls(data["doc"], data["position"], data["rank"], data["logprob"])
        except FileNotFoundError:
            raise UserError(
                f"token file {path} not found; rerun the scoring that writes it"
            ) from None
        except Exception as exc:  # noqa: BLE001 - zip, zlib, npy-header and pickle errors of a damaged file
            detail = f"{type(exc).__name__}: {str(exc)[:80]!r}" if str(exc) else type(exc).__name__
            raise UserError(
                f"token file {path} is unreadable or truncated ({detail}); delete it and recompute"
            ) from None
        arrays = (table.doc, table.position, table.rank, table.logprob)
        integer = all(a.dtype.kind in "iu" for a in arrays[:3])
        if (
            not integer
            or table.logprob.dtype.kind != "f"
            or any(a.ndim != 1 or a.shape != table.doc.shape for a in arrays)
        ):
            raise UserError(
                f"token file {path} is malformed (doc, position, rank, logprob must be "
                "1-D arrays of equal length); delete it and recompute"
            )
        return table
