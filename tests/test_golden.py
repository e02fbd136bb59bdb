"""Golden files: saved formats stay loadable, and the writers still produce the same bytes.

``tests/golden/v1/`` holds files written once by errorentropy 0.1.0 (histogram format v1, profile
v1, cell v1 with the files it references, and a token table). The tests

* load them with the current code and check exact values (so old files stay readable when a
  format changes: add a ``v2/`` folder beside ``v1/``, never edit ``v1/``);
* write the same inputs with the current writers and compare bytes (so a format change is
  noticed: then bump the format version, keep a reader for v1, and add golden files for v2).

``python tests/test_golden.py`` writes golden files that are missing; it never overwrites one.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from errorentropy.stats.histogram import RankHistogram
from errorentropy.stats.profile import RankProfile
from errorentropy.stats.tokens import TokenTable
from errorentropy.sweep.cells import CellKey, read_cell, write_cell_record

GOLDEN = Path(__file__).parent / "golden" / "v1"

# The golden inputs: 3 documents, 20 scored tokens, 11 of them top-1 (doc 1 has a gap at position 3:
# a skipped target).
DOC = [0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2]
POSITION = [1, 2, 3, 4, 5, 6, 7, 1, 2, 4, 5, 6, 1, 2, 3, 4, 5, 6, 7, 8]
RANK = [0, 1, 0, 0, 2, 5, 0, 17, 0, 1, 0, 0, 3, 0, 1, 0, 0, 2, 299, 0]
LOGPROB = [
    -0.1053605156578263,
    -1.3862943611198906,
    -0.02020270731751944,
    -0.6931471805599453,
    -2.3025850929940455,
    -4.605170185988091,
    -0.010050335853501451,
    -9.210340371976182,
    -0.2876820724517809,
    -1.6094379124341003,
    -0.05129329438755058,
    -0.35667494393873245,
    -3.506557897319982,
    -0.0006000000180000007,
    -2.0794415416798357,
    -0.15082288973458366,
    -0.916290731874155,
    -2.995732273553991,
    -12.345678901234567,
    -1e-12,
]
N_DOCUMENTS, N_SKIPPED, N_TIED = 3, 2, 1
CELL_KEY = CellKey("tiny/gpt2-32", "step128", "builtin:prose")
CELL_SUMMARY = {
    "n_tokens": 20,
    "cross_entropy": 2.131668160504764,
    "error_entropy": 1.442783312158676,
    "data": "builtin:prose",
    "seed": 42,
    "max_length": 512,
}


def golden_tokens() -> TokenTable:
    """The token table every golden file is made from, with the dtypes the engine writes."""
    return TokenTable(
        np.asarray(DOC, dtype=np.int32),
        np.asarray(POSITION, dtype=np.int32),
        np.asarray(RANK, dtype=np.int32),
        np.asarray(LOGPROB, dtype=np.float64),
    )


def golden_histogram() -> RankHistogram:
    return golden_tokens().histogram(n_documents=N_DOCUMENTS, n_skipped=N_SKIPPED, n_tied=N_TIED)


def golden_profile() -> RankProfile:
    """A profile from fixed top-4 log-probs per token (ranks beyond the profile's 16 are
    dropped)."""
    ranks = np.asarray(RANK)
    top = (
        np.log(np.asarray([[0.5, 0.25, 0.125, 0.0625]] * len(RANK)))
        - 0.01 * np.arange(len(RANK))[:, None]
    )
    profile = RankProfile()
    profile.add_tokens(ranks, top)
    return profile


def write_cell(directory: Path) -> None:
    """A cell folder: its data files, then cell.json sealing them."""
    directory.mkdir(parents=True, exist_ok=True)
    golden_histogram().save(directory / "histogram.json")
    golden_tokens().save(directory / "tokens.npz")
    golden_profile().save(directory / "profile.json")
    seal_cell(directory)


def seal_cell(directory: Path) -> None:
    write_cell_record(
        directory,
        CELL_KEY,
        family="gpt2",
        non_embedding_params=12_608,
        total_params=26_240,
        summary=CELL_SUMMARY,
    )


# ---- the committed files load, with exact values -------------------------------------------


def test_golden_histogram_v1_loads_exactly() -> None:
    hist = RankHistogram.load(GOLDEN / "histogram.json")
    assert hist.n_tokens == 20 and (hist.n_documents, hist.n_skipped, hist.n_tied) == (3, 2, 1)
    observed = np.flatnonzero(hist.counts)
    assert observed.tolist() == [0, 1, 2, 3, 5, 17, 299]
    assert hist.counts[observed].tolist() == [11, 3, 2, 1, 1, 1, 1]
    # Sums equal the float64 sums of the inputs, bit for bit (repr round-trips through JSON).
    for rank in observed:
        expected = np.sum(np.asarray(LOGPROB)[np.asarray(RANK) == rank])
        assert hist.logprob_sums[rank] == expected
    assert hist.logprob_sums[299] == -12.345678901234567
    d = hist.decompose()
    ce = -sum(LOGPROB) / 20
    assert d.cross_entropy == pytest.approx(ce, rel=1e-15)
    p = np.asarray([11, 3, 2, 1, 1, 1, 1]) / 20
    assert d.error_entropy == pytest.approx(float(-(p * np.log(p)).sum()), rel=1e-14)
    assert abs(d.identity_residual) < 1e-14


def test_golden_tokens_v1_load_exactly() -> None:
    tokens = TokenTable.load(GOLDEN / "tokens.npz")
    assert [a.dtype for a in (tokens.doc, tokens.position, tokens.rank, tokens.logprob)] == [
        np.int32,
        np.int32,
        np.int32,
        np.float64,
    ]
    assert (
        tokens.doc.tolist() == DOC
        and tokens.position.tolist() == POSITION
        and tokens.rank.tolist() == RANK
    )
    assert tokens.logprob.tolist() == LOGPROB


def test_golden_profile_v1_loads_exactly() -> None:
    profile = RankProfile.load(GOLDEN / "profile.json")
    assert profile.sums.shape == (16, 32) and profile.counts.tolist()[:6] == [11, 3, 2, 1, 0, 1]
    assert profile.counts.sum() == 18  # ranks 17 and 299 lie beyond the profile's 16 ranks
    rows0 = [i for i, r in enumerate(RANK) if r == 0]
    assert profile.sums[0, 0] == pytest.approx(
        sum(0.5 * np.exp(-0.01 * i) for i in rows0), rel=1e-15
    )
    assert np.all(profile.sums[:, 4:] == 0.0)


def test_golden_cell_v1_reads_with_its_files() -> None:
    record = read_cell(GOLDEN / "cell")
    assert record is not None, "the v1 golden cell no longer verifies"
    assert record.key == CELL_KEY and record.family == "gpt2" and record.step == 128
    assert (record.non_embedding_params, record.total_params) == (12_608, 26_240)
    assert record.summary == CELL_SUMMARY
    assert record.histogram() == RankHistogram.load(GOLDEN / "histogram.json")
    assert record.tokens().rank.tolist() == RANK


def test_golden_cell_with_a_damaged_file_is_not_read(tmp_path: Path) -> None:
    cell = tmp_path / "cell"
    shutil.copytree(GOLDEN / "cell", cell)
    data = (cell / "tokens.npz").read_bytes()
    (cell / "tokens.npz").write_bytes(data[: len(data) - 7])  # truncated
    assert read_cell(cell) is None


# ---- the current writers produce the same bytes ----------------------------------------------


FORMAT_CHANGED = (
    "{name} is written differently now: a format change. Bump its version, keep a reader for "
    "v1, add golden files for the new version"
)


def test_histogram_writer_is_byte_identical(tmp_path: Path) -> None:
    golden_histogram().save(tmp_path / "h.json")
    assert (tmp_path / "h.json").read_bytes() == (GOLDEN / "histogram.json").read_bytes(), (
        FORMAT_CHANGED.format(name="histogram.json")
    )


def test_profile_writer_is_byte_identical(tmp_path: Path) -> None:
    golden_profile().save(tmp_path / "p.json")
    assert (tmp_path / "p.json").read_bytes() == (GOLDEN / "profile.json").read_bytes(), (
        FORMAT_CHANGED.format(name="profile.json")
    )


def test_cell_writer_is_byte_identical(tmp_path: Path) -> None:
    cell = tmp_path / "cell"
    cell.mkdir()
    for name in ("histogram.json", "tokens.npz", "profile.json"):
        shutil.copy(GOLDEN / "cell" / name, cell / name)
    seal_cell(cell)
    assert (cell / "cell.json").read_bytes() == (GOLDEN / "cell" / "cell.json").read_bytes(), (
        FORMAT_CHANGED.format(name="cell.json")
    )


def test_token_writer_keeps_names_dtypes_and_values(tmp_path: Path) -> None:
    """npz bytes carry zip timestamps, so the token table is compared by content, not bytes."""
    golden_tokens().save(tmp_path / "t.npz")
    with np.load(tmp_path / "t.npz") as new, np.load(GOLDEN / "tokens.npz") as old:
        assert sorted(new.files) == sorted(old.files) == ["doc", "logprob", "position", "rank"]
        for name in old.files:
            assert new[name].dtype == old[name].dtype and np.array_equal(new[name], old[name]), name


def _write_missing() -> None:
    GOLDEN.mkdir(parents=True, exist_ok=True)
    writers = {
        "histogram.json": lambda p: golden_histogram().save(p),
        "profile.json": lambda p: golden_profile().save(p),
        "tokens.npz": lambda p: golden_tokens().save(p),
        "cell": write_cell,
    }
    for name, write in writers.items():
        if (GOLDEN / name).exists():
            print(f"kept {GOLDEN / name}")
            continue
        write(GOLDEN / name)
        print(f"wrote {GOLDEN / name}")


if __name__ == "__main__":
    _write_missing()
    sys.exit(0)
