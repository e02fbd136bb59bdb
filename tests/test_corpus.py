"""Corpora: file formats, sampling, built-ins and the hub presets on local stand-ins."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from errorentropy.data import corpus
from errorentropy.data.corpus import PRESETS, Preset, load_corpus, sample_indices
from errorentropy.errors import UserError


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_jsonl_txt_folder_and_parquet(tmp_path):
    texts = [f"document number {i} ünïcode" for i in range(5)]
    jsonl = write_jsonl(tmp_path / "d.jsonl", [{"body": t, "id": i} for i, t in enumerate(texts)])
    assert load_corpus(str(jsonl), text_field="body").documents == texts
    folder = tmp_path / "txt"
    folder.mkdir()
    for i, t in enumerate(texts):
        (folder / f"{i:02d}.txt").write_text(t, encoding="utf-8")
    assert load_corpus(str(folder)).documents == texts
    assert load_corpus(str(folder / "03.txt")).documents == [texts[3]]
    pq.write_table(pa.table({"text": texts}), tmp_path / "d.parquet")
    loaded = load_corpus(str(tmp_path / "d.parquet"))
    assert loaded.documents == texts
    assert loaded.fingerprint == load_corpus(str(folder)).fingerprint


def test_sampling_is_a_seeded_permutation_prefix(tmp_path):
    texts = [f"doc {i}" for i in range(20)]
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": t} for t in texts])
    a = load_corpus(str(path), samples=5, seed=7)
    order = np.random.default_rng(7).permutation(20)[:5]
    assert a.documents == [texts[i] for i in order]
    assert load_corpus(str(path), samples=5, seed=7).fingerprint == a.fingerprint
    assert load_corpus(str(path), samples=5, seed=8).fingerprint != a.fingerprint
    default = load_corpus(
        str(path), samples=5
    )  # no --seed: shuffled with 42, and the summary says so
    assert (
        default.seed == 42
        and default.documents == load_corpus(str(path), samples=5, seed=42).documents
    )
    assert load_corpus(str(path)).seed is None  # every document in file order: no shuffle, no seed
    assert load_corpus(str(path)).documents == texts  # files: all, in file order
    with pytest.raises(UserError, match="larger than the corpus"):
        sample_indices(20, 21, 0)


@pytest.mark.parametrize(
    "content,field,message",
    [
        ('{"text": "a"}\n{"text": \n', "text", "line 2 is not valid JSON"),
        ('{"body": "a"}\n', "text", "no field 'text'"),
        ('{"text": 3}\n', "text", "not a string"),
        ("[1, 2]\n", "text", "not an object"),
    ],
)
def test_bad_jsonl(tmp_path, content, field, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(UserError, match=message):
        load_corpus(str(path), text_field=field)


def test_non_utf8_and_unknown_specs(tmp_path):
    path = tmp_path / "latin.txt"
    path.write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(UserError, match="not valid UTF-8"):
        load_corpus(str(path))
    with pytest.raises(UserError, match="unknown data 'wikipedai'"):
        load_corpus("wikipedai")
    with pytest.raises(UserError, match="unknown built-in"):
        load_corpus("builtin:poetry")


def test_builtins_are_deterministic_and_distinct():
    prose = load_corpus("builtin:prose", samples=30, seed=1)
    again = load_corpus("builtin:prose", samples=30, seed=1)
    code = load_corpus("builtin:code", samples=30, seed=1)
    assert prose.fingerprint == again.fingerprint and prose.documents == again.documents
    assert prose.fingerprint != code.fingerprint
    assert prose.total_documents > 500 and code.total_documents > 500
    assert any("def " in d for d in code.documents)
    assert prose.settings()["python_version"]


def hub_layout_parquet(root, rows, relative):
    """Write rows as a parquet file at the path the hub repository would have."""
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


def test_wikipedia_preset_on_a_local_stand_in(tmp_path, monkeypatch):
    rows = [
        {"id": str(i), "url": f"u{i}", "title": f"T{i}", "text": f"article {i} " * (i + 1)}
        for i in range(40)
    ]
    hub_layout_parquet(tmp_path / "wiki", rows, "20231101.en/train-00000-of-00001.parquet")
    monkeypatch.setitem(
        PRESETS,
        "wikipedia",
        Preset(
            str(tmp_path / "wiki"), None, "train", data_files={"train": "20231101.en/*.parquet"}
        ),
    )
    got = load_corpus("wikipedia", samples=10)  # defaults: seed 42
    import datasets

    expected = datasets.Dataset.from_list(rows).shuffle(seed=42).select(range(10))["text"]
    assert got.documents == expected
    assert (got.samples, got.seed) == (10, 42)
    # The same permutation as the files path: a jsonl copy sampled alike gives the same documents.
    copy = write_jsonl(tmp_path / "wiki.jsonl", rows)
    assert load_corpus(str(copy), samples=10, seed=42).documents == got.documents


def test_github_preset_keeps_only_github_documents(tmp_path, monkeypatch):
    rows = [
        {
            "text": f"code {i}" if i % 3 == 0 else f"prose {i}",
            "meta": {"pile_set_name": "Github" if i % 3 == 0 else "Pile-CC"},
        }
        for i in range(30)
    ]
    root = tmp_path / "pile"
    root.mkdir()
    write_jsonl(root / "test.jsonl", rows)
    monkeypatch.setitem(
        PRESETS,
        "github",
        Preset(
            str(root),
            None,
            "test",
            data_files={"test": "test.jsonl"},
            subset_field="pile_set_name",
            subset_value="Github",
        ),
    )
    got = load_corpus("github", samples=5, seed=1)
    assert len(got.documents) == 5 and all(d.startswith("code") for d in got.documents)
    with pytest.raises(UserError, match="larger than preset github"):
        load_corpus("github", samples=11)


def test_preset_load_failure_is_one_clear_line(monkeypatch, tmp_path):
    monkeypatch.setitem(PRESETS, "c4", Preset(str(tmp_path / "missing"), None, "train"))
    with pytest.raises(UserError, match="cannot load preset c4"):
        corpus.load_corpus("c4", samples=3)


def test_any_hub_dataset_by_hf_spec_on_a_local_stand_in(tmp_path):
    """``hf:PATH[:CONFIG[:SPLIT]]`` goes through datasets.load_dataset (here on a local folder in
    the hub's layout), with the column named by --text-field, sampled like a preset."""
    import datasets

    rows = [{"body": f"post {i} " * (i + 2), "n": i} for i in range(30)]
    root = tmp_path / "forum"
    root.mkdir()
    write_jsonl(root / "train.jsonl", rows[:20])
    write_jsonl(root / "test.jsonl", rows[20:])
    got = load_corpus(f"hf:{root}", samples=5, text_field="body")
    assert (
        got.documents
        == datasets.Dataset.from_list(rows[:20]).shuffle(seed=42).select(range(5))["body"]
    )
    assert (got.samples, got.seed, got.total_documents) == (5, 42, 20)
    assert got.settings()["preset_split"] == "train" and got.settings()["text_field"] == "body"
    test = load_corpus(f"hf:{root}::test", samples=10, seed=0, text_field="body")
    assert sorted(test.documents) == sorted(r["body"] for r in rows[20:])
    with pytest.raises(UserError, match="has no field 'text'.*body.*text_field=NAME"):
        load_corpus(f"hf:{root}", samples=3)
    with pytest.raises(UserError, match="larger than hub dataset"):
        load_corpus(f"hf:{root}::test", samples=11, text_field="body")
    for bad in ("hf:", "hf:a:b:c:d", "hf:a:b:"):
        with pytest.raises(UserError, match="hf:PATH:CONFIG:SPLIT"):
            load_corpus(bad)
    with pytest.raises(UserError, match=r"cannot load hub dataset hf:.*missing"):
        load_corpus(f"hf:{tmp_path / 'missing'}")


def test_hub_dataset_columns_that_are_not_text(tmp_path):
    """A null text is an empty document (skipped later), as in parquet files; a column of numbers
    is refused rather than scored as the digits' string form."""
    root = tmp_path / "mixed"
    hub_layout_parquet(
        root,
        [{"text": "first doc", "n": 1}, {"text": None, "n": 2}, {"text": "third doc", "n": 3}],
        "data/train-00000-of-00001.parquet",
    )
    got = load_corpus(f"hf:{root}", samples=3, seed=0)
    assert sorted(got.documents) == ["", "first doc", "third doc"]
    with pytest.raises(UserError, match="field 'n' holds .*int.*not text.*text_field=NAME"):
        load_corpus(f"hf:{root}", samples=3, text_field="n")
