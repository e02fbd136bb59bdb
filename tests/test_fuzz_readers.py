"""Fuzzing the readers of everything a user or a crash can hand us: only UserError may escape.

Corpora (corpus.read_documents), checksummed JSON (storage.read_checked_json), histograms
(RankHistogram.load), profiles (RankProfile.load), token tables (TokenTable.load), sweep cells
(cells.read_cell: a damaged cell is None, to be redone) and sweep specs (spec.parse_spec).
Inputs are random bytes, random JSON, valid files with damage, and checksummed files whose
content is wrong (so the parser behind the checksum is exercised, not just the checksum).
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from errorentropy.data.corpus import read_documents
from errorentropy.errors import UserError
from errorentropy.stats.histogram import RankHistogram
from errorentropy.stats.profile import RankProfile
from errorentropy.stats.tokens import TokenTable
from errorentropy.storage import read_checked_json, write_checked_json
from errorentropy.sweep.cells import read_cell

# ERRORENTROPY_FUZZ_EXAMPLES=1000 searches harder than the default run.
FUZZ = settings(
    max_examples=int(os.environ.get("ERRORENTROPY_FUZZ_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
WORK = Path(tempfile.mkdtemp(prefix="errorentropy-fuzz-"))

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def only_user_errors(call, *args, **kwargs):
    """Run ``call``; a UserError is a clean refusal, anything else a bug."""
    try:
        return call(*args, **kwargs)
    except UserError as exc:
        message = str(exc)
        assert message and "\n" not in message and len(message) < 600, message[:800]
        return None


def put(name: str, data: bytes) -> Path:
    path = WORK / name
    path.write_bytes(data)
    return path


def damage(data: bytes, how: st.DataObject) -> bytes:
    """Truncate, flip a byte, or splice random bytes into ``data``."""
    kind = how.draw(st.sampled_from(["truncate", "flip", "splice"]))
    at = how.draw(st.integers(0, max(0, len(data) - 1)))
    if kind == "truncate":
        return data[:at]
    if kind == "flip":
        return (
            data[:at] + bytes([data[at] ^ how.draw(st.integers(1, 255))]) + data[at + 1 :]
            if data
            else data
        )
    return data[:at] + how.draw(st.binary(max_size=16)) + data[at:]


# ---- corpora -------------------------------------------------------------------------------


@FUZZ
@given(
    raw=st.binary(max_size=400),
    suffix=st.sampled_from([".jsonl", ".txt", ".parquet", ".json", ".csv"]),
)
def test_corpus_random_bytes(raw, suffix):
    docs = only_user_errors(read_documents, put("corpus" + suffix, raw), "text")
    assert docs is None or all(isinstance(d, str) for d in docs)


@FUZZ
@given(rows=st.lists(json_values, max_size=5), field=st.sampled_from(["text", "body", ""]))
def test_corpus_random_json_lines(rows, field):
    path = put("rows.jsonl", "\n".join(json.dumps(r) for r in rows).encode())
    docs = only_user_errors(read_documents, path, field)
    if docs is not None:
        assert docs == [r[field] for r in rows]


@FUZZ
@given(
    lines=st.lists(
        st.text(max_size=30)
        | st.sampled_from(
            ['{"text": 1e999}', '{"text": "a"', "[" * 5000, '{"text": ' + "9" * 5000 + "}", "NaN"]
        ),
        max_size=4,
    )
)
def test_corpus_awkward_json_lines(lines):
    only_user_errors(
        read_documents,
        put("awkward.jsonl", "\n".join(lines).encode("utf-8", "surrogatepass")),
        "text",
    )


@FUZZ
@given(how=st.data())
def test_corpus_damaged_parquet(how):
    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(pa.table({"text": ["a document", "another one", None]}), buffer)
    only_user_errors(read_documents, put("damaged.parquet", damage(buffer.getvalue(), how)), "text")


# ---- checksummed JSON, histograms, profiles ---------------------------------------------------


@FUZZ
@given(raw=st.binary(max_size=300))
def test_checked_json_random_bytes(raw):
    path = put("random.json", raw)
    only_user_errors(read_checked_json, path, "file")
    only_user_errors(RankHistogram.load, path)
    only_user_errors(RankProfile.load, path)


@FUZZ
@given(body=st.dictionaries(st.text(max_size=10), json_values, max_size=6))
def test_checksummed_random_objects(body):
    path = WORK / "object.json"
    write_checked_json(path, body)
    assert only_user_errors(read_checked_json, path, "file") == {
        k: v for k, v in body.items() if k != "checksum"
    }
    only_user_errors(RankHistogram.load, path)
    only_user_errors(RankProfile.load, path)


GOOD = RankHistogram.from_tokens(
    [0, 0, 1, 4], [-0.1, -0.2, -1.5, -3.0], n_documents=2, n_tied=1
).to_dict()


@FUZZ
@given(
    key=st.sampled_from(sorted(GOOD) + ["extra"]),
    value=json_values | st.lists(st.integers(-3, 2**40), max_size=5),
)
def test_histogram_with_one_wrong_field(key, value):
    """A checksum-valid histogram whose one field holds anything: refused cleanly, or still
    consistent."""
    path = WORK / "hist.json"
    write_checked_json(path, {**GOOD, key: value})
    hist = only_user_errors(RankHistogram.load, path)
    if hist is not None:
        assert hist.n_tokens == GOOD["n_tokens"] or key == "n_tokens"
        assert np.all(hist.counts >= 0) and np.all(np.isfinite(hist.logprob_sums))


@FUZZ
@given(how=st.data())
def test_damaged_histogram_file(how):
    path = WORK / "valid.json"
    RankHistogram.from_dict(GOOD).save(path)
    damaged = put("damaged-hist.json", damage(path.read_bytes(), how))
    hist = only_user_errors(RankHistogram.load, damaged)
    if hist is not None:  # a damage that left the content intact (whitespace, a no-op splice)
        assert hist == RankHistogram.from_dict(GOOD)


@FUZZ
@given(sums=json_values, counts=json_values)
def test_profile_with_wrong_arrays(sums, counts):
    path = WORK / "profile.json"
    write_checked_json(
        path, {"format": "errorentropy-profile", "version": 1, "sums": sums, "counts": counts}
    )
    profile = only_user_errors(RankProfile.load, path)
    if profile is not None:
        assert profile.sums.ndim == 2 and profile.counts.shape == profile.sums.shape[:1]


# ---- token tables ------------------------------------------------------------------------------


def _npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


GOOD_TOKENS = dict(
    doc=np.array([0, 0, 1], np.int32),
    position=np.array([1, 2, 1], np.int32),
    rank=np.array([0, 3, 1], np.int32),
    logprob=np.array([-0.1, -2.0, -0.5]),
)


@FUZZ
@given(raw=st.binary(max_size=300))
def test_tokens_random_bytes(raw):
    only_user_errors(TokenTable.load, put("random.npz", raw))


@FUZZ
@given(how=st.data())
def test_tokens_damaged(how):
    only_user_errors(TokenTable.load, put("damaged.npz", damage(_npz(**GOOD_TOKENS), how)))


@FUZZ
@given(
    drop=st.sampled_from([None, "doc", "logprob"]),
    shape=st.sampled_from(["ok", "short", "2d", "strings", "object"]),
)
def test_tokens_wrong_arrays(drop, shape):
    arrays = {k: v for k, v in GOOD_TOKENS.items() if k != drop}
    if shape == "short":
        arrays["rank"] = arrays["rank"][:1]
    elif shape == "2d":
        arrays["position"] = np.zeros((3, 2), np.int32)
    elif shape == "strings":
        arrays["rank"] = np.array(["a", "b", "c"])
    elif shape == "object":
        arrays["logprob"] = np.array([None, 1, "x"], dtype=object)
    table = only_user_errors(TokenTable.load, put("wrong.npz", _npz(**arrays)))
    if table is not None:
        assert drop is None and shape == "ok"
        assert len({table.doc.size, table.position.size, table.rank.size, table.logprob.size}) == 1


def test_tokens_plain_npy_is_refused():
    buffer = io.BytesIO()
    np.save(buffer, np.arange(3))
    with pytest.raises(UserError):
        TokenTable.load(put("plain.npz", buffer.getvalue()))


def test_tokens_bad_member_in_zip():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("doc.npy", b"\x93NUMPY garbage")
    with pytest.raises(UserError):
        TokenTable.load(put("badmember.npz", buffer.getvalue()))


# ---- sweep cells -----------------------------------------------------------------------------


@FUZZ
@given(
    body=st.dictionaries(
        st.sampled_from(
            [
                "format",
                "version",
                "model",
                "revision",
                "dataset",
                "family",
                "files",
                "summary",
                "step",
                "non_embedding_params",
                "total_params",
            ]
        ),
        json_values,
        max_size=11,
    )
)
def test_cell_with_wrong_fields_is_redone_not_read(body):
    cell = WORK / "cell"
    cell.mkdir(exist_ok=True)
    write_checked_json(cell / "cell.json", {"format": "errorentropy-cell", "version": 1, **body})
    try:
        record = read_cell(cell)
    except UserError:
        record = None
    if record is not None:  # only a record that names every field correctly may be read
        assert isinstance(record.key.model, str) and isinstance(record.summary, dict)


@FUZZ
@given(raw=st.binary(max_size=200))
def test_cell_random_bytes(raw):
    cell = WORK / "cell-bytes"
    cell.mkdir(exist_ok=True)
    (cell / "cell.json").write_bytes(raw)
    assert read_cell(cell) is None


# ---- sweep specs -------------------------------------------------------------------------------

spec = pytest.importorskip("errorentropy.sweep.spec")

TOML_KEYS = [
    "id",
    "data",
    "revisions",
    "family",
    "label",
    "samples",
    "seed",
    "max_length",
    "stride",
    "window",
    "bos",
    "batch_size",
    "dtype",
    "text_field",
    "profile",
    "device",
    "unknown",
]
toml_values = st.sampled_from(
    [
        '"x"',
        '"step1"',
        "1",
        "0",
        "-5",
        "1.5",
        "true",
        '["a", "b"]',
        "[1, 2]",
        "[]",
        '"wikipedia"',
        "{a = 1}",
        '"./nope"',
        "9999999999999999999",
        "nan",
        "inf",
    ]
)


@st.composite
def toml_documents(draw) -> str:
    """Spec-shaped TOML: known tables and keys, with values of any type."""
    lines = []
    for header in draw(
        st.lists(
            st.sampled_from(["[scoring]", "[run]", "[[models]]", "[[datasets]]", "[other]", ""]),
            max_size=5,
        )
    ):
        lines.append(header)
        for key in draw(st.lists(st.sampled_from(TOML_KEYS), max_size=4, unique=True)):
            lines.append(f"{key} = {draw(toml_values)}")
    return "\n".join(lines) + "\n"


@FUZZ
@given(text=toml_documents())
def test_spec_shaped_toml(text):
    only_user_errors(spec.parse_spec, text, base_dir=WORK, name="spec.toml")


@FUZZ
@given(text=st.text(max_size=200))
def test_spec_random_text(text):
    only_user_errors(spec.parse_spec, text, base_dir=WORK, name="spec.toml")


@FUZZ
@given(raw=st.binary(max_size=200))
def test_spec_random_bytes_on_disk(raw):
    only_user_errors(spec.load_spec, put("spec.toml", raw))
