"""Durability: every result file is written atomically, a failed write loses nothing, and a
damaged result is detected rather than read. (Killing a sweep and resuming it, and damaged sweep
cells being redone, are tested in tests/test_sweep.py.)"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from errorentropy import storage
from errorentropy.errors import UserError
from errorentropy.scoring.results import load_histograms
from errorentropy.stats.histogram import RankHistogram
from errorentropy.stats.tokens import TokenTable


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(
    tmp_path: Path, monkeypatch
) -> None:
    target = tmp_path / "histogram.json"
    old = RankHistogram.from_tokens([0, 1], [-0.5, -2.0], n_documents=1)
    old.save(target)
    before = target.read_bytes()

    def crash(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(storage.os, "fsync", crash)
    with pytest.raises(OSError):
        RankHistogram.from_tokens([0, 0, 3], [-0.1, -0.2, -4.0]).save(target)
    monkeypatch.undo()
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["histogram.json"]
    assert RankHistogram.load(target) == old


def test_an_interrupted_write_keeps_the_old_file(tmp_path: Path, monkeypatch) -> None:
    """Ctrl-C between writing and renaming: the old file stays, the half-done one is removed."""
    target = tmp_path / "summary.json"
    storage.atomic_write_text(target, "old\n")
    monkeypatch.setattr(
        storage.os, "replace", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt())
    )
    with pytest.raises(KeyboardInterrupt):
        storage.atomic_write_text(target, "new\n")
    monkeypatch.undo()
    assert target.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == [
        "summary.json"
    ]


def test_written_files_have_the_usual_permissions(tmp_path: Path) -> None:
    storage.atomic_write_text(tmp_path / "a.txt", "x")
    umask = os.umask(0o022)
    os.umask(umask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~umask


def test_score_writes_every_file_atomically(
    model_dir: Path, short_docs, tmp_path: Path, monkeypatch, capsys
) -> None:
    """Every file in a result folder arrives by rename of a fully written temporary."""
    from errorentropy.cli import main

    renamed: list[str] = []
    real_replace = os.replace

    def tracking_replace(src, dst):
        if tmp_path in Path(dst).parents:  # not the weights-fingerprint cache under ~/.cache
            renamed.append(Path(dst).name)
        return real_replace(src, dst)

    monkeypatch.setattr(storage.os, "replace", tracking_replace)
    data = tmp_path / "docs.jsonl"
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in short_docs))
    out = tmp_path / "out"
    code = main(
        [
            "score",
            "--quiet",
            "--model",
            str(model_dir),
            "--data",
            str(data),
            "--out",
            str(out),
            "--max-length",
            "32",
            "--profile",
        ]
    )
    capsys.readouterr()
    assert code == 0
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted(["histogram.json", "tokens.npz", "profile.json", "summary.json"])
    assert sorted(renamed) == sorted(
        written + ["out"]
    )  # each file, then the whole folder, by rename


def test_score_replaces_a_result_folder_whole(
    model_dir: Path, short_docs, tmp_path: Path, capsys
) -> None:
    """A rerun into the same --out leaves no file of the old result (a stale profile.json included);
    a folder holding anything else is refused before any work."""
    from errorentropy.cli import main

    data = tmp_path / "docs.jsonl"
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in short_docs))
    out = tmp_path / "out"
    base = ["score", "--quiet", "--model", str(model_dir), "--data", str(data), "--out", str(out)]
    assert main([*base, "--max-length", "32", "--profile"]) == 0
    assert (out / "profile.json").exists()
    assert main([*base, "--max-length", "16"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["histogram.json", "summary.json", "tokens.npz"]
    assert json.loads((out / "summary.json").read_text())["max_length"] == 16
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    (out / "notes.txt").write_text("mine")
    capsys.readouterr()
    assert main([*base, "--max-length", "16"]) == 2
    assert "already holds other files (notes.txt)" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "mine"


def test_damaged_results_are_detected_not_read(tmp_path: Path) -> None:
    hist = RankHistogram.from_tokens(np.arange(50) % 7, -np.linspace(0.01, 5, 50), n_documents=5)
    hist.save(tmp_path / "histogram.json")
    raw = (tmp_path / "histogram.json").read_bytes()
    for cut in (1, len(raw) // 3, len(raw) - 2):
        (tmp_path / "histogram.json").write_bytes(raw[:cut])
        with pytest.raises(UserError, match="corrupted or truncated|checksum"):
            load_histograms([str(tmp_path)])
    # one digit changed inside a sum: still valid JSON, caught by the checksum
    text = raw.decode()
    at = text.index('"logprob_sums"') + 30
    digit = next(i for i in range(at, len(text)) if text[i].isdigit())
    (tmp_path / "histogram.json").write_text(
        text[:digit] + str((int(text[digit]) + 1) % 10) + text[digit + 1 :]
    )
    with pytest.raises(UserError, match="fails its checksum"):
        load_histograms([str(tmp_path)])

    tokens = TokenTable(
        np.zeros(50, np.int32),
        np.arange(50, dtype=np.int32),
        (np.arange(50) % 7).astype(np.int32),
        -np.linspace(0.01, 5, 50),
    )
    tokens.save(tmp_path / "tokens.npz")
    data = (tmp_path / "tokens.npz").read_bytes()
    for cut in (10, len(data) // 2, len(data) - 5):
        (tmp_path / "tokens.npz").write_bytes(data[:cut])
        with pytest.raises(UserError, match="token file"):
            TokenTable.load(tmp_path / "tokens.npz")


def test_an_interrupted_replace_brings_the_earlier_result_back(tmp_path, monkeypatch):
    """commit_folder moves the old folder aside, then renames the new one in: if that second
    rename fails (or is interrupted), the old result returns under its name, never left hidden."""
    import os as _os

    from errorentropy import storage

    storage.commit_folder(tmp_path, "cell", lambda d: (d / "x.txt").write_text("old"))
    real = _os.replace
    calls = []

    def failing(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(storage.os, "replace", failing)
    with pytest.raises(OSError):
        storage.commit_folder(tmp_path, "cell", lambda d: (d / "x.txt").write_text("new"))
    monkeypatch.setattr(storage.os, "replace", real)
    assert (tmp_path / "cell" / "x.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["cell"]
