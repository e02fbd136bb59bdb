"""What was loaded: the weights' fingerprint and the hub commit in every summary; revisions that
hold the same weights found by the sweep and counted once by fits and report; a cell whose
weights changed behind the same revision name redone.

The toy model: ``tiny`` (its own weights as ``main``) with ``checkpoints/step1``,
``checkpoints/step3`` and ``checkpoints/step12``, where step3 and step12 hold byte-identical
weights (a hub branch serving another step's files, as EleutherAI/pythia#205).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from errorentropy.cli import main
from errorentropy.fits.fit import fit_sweep, is_current
from errorentropy.models import provenance
from errorentropy.report.page import collect
from errorentropy.sweep.cells import load_cells
from errorentropy.sweep.run import run_sweep
from errorentropy.testing import save_model, tiny_model

KW = dict(hidden=32, layers=1, heads=2, context=64)


def reference_fingerprint(folder: Path) -> str:
    """The definition, written out: SHA-256 over "name sha256\\n" of the safetensors files."""
    lines = "".join(
        f"{p.name} {hashlib.sha256(p.read_bytes()).hexdigest()}\n"
        for p in sorted(folder.glob("*.safetensors"))
    )
    return hashlib.sha256(lines.encode()).hexdigest()


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Fingerprints cached under the test's folder, none from earlier tests in memory."""
    monkeypatch.setenv(provenance.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(provenance, "_MEMORY", {})


@pytest.fixture
def toy(tmp_path, tokenizer, prose_docs) -> Path:
    """tiny/ with checkpoints step1, step3 and step12 (step3 == step12), a corpus and a spec."""
    root = tmp_path / "toy"
    model = save_model(tiny_model("gpt2", len(tokenizer), seed=0, **KW), tokenizer, root / "tiny")
    same = tiny_model("gpt2", len(tokenizer), seed=3, **KW)
    tiny_model("gpt2", len(tokenizer), seed=1, **KW).save_pretrained(model / "checkpoints/step1")
    same.save_pretrained(model / "checkpoints" / "step3")
    same.save_pretrained(model / "checkpoints" / "step12")
    with open(root / "docs.jsonl", "w", encoding="utf-8") as handle:
        for text in prose_docs[300:306]:
            handle.write(json.dumps({"text": text[:200]}) + "\n")
    (root / "spec.toml").write_text(
        '[scoring]\nmax_length = 32\n[run]\ndevice = "cpu"\n'
        '[[models]]\nid = "tiny"\nrevisions = ["step1", "step3", "step12", "main"]\n'
        '[[datasets]]\ndata = "docs.jsonl"\nlabel = "notes"\n',
        encoding="utf-8",
    )
    return root


def test_fingerprint_is_the_documented_hash_and_is_cached(tmp_path, tokenizer, monkeypatch):
    folder = save_model(tiny_model("gpt2", len(tokenizer), **KW), tokenizer, tmp_path / "m")
    (folder / "training_args.bin").write_bytes(b"not weights")  # left out, as documented
    expected = reference_fingerprint(folder)
    assert provenance.weights_fingerprint(folder) == expected
    # Same path, size, mtime and inode: the cached digest is used, the bytes are not read again.
    weights = folder / "model.safetensors"
    stat = weights.stat()
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    with open(weights, "r+b") as handle:  # in place: the inode stays
        handle.write(data)
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    monkeypatch.setattr(provenance, "_MEMORY", {})  # the disk cache alone answers
    assert provenance.weights_fingerprint(folder) == expected
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # a new mtime
    assert provenance.weights_fingerprint(folder) == reference_fingerprint(folder) != expected
    # .bin files only where there are no .safetensors; none at all: no fingerprint.
    bins = tmp_path / "bins"
    bins.mkdir()
    (bins / "pytorch_model.bin").write_bytes(b"weights")
    (bins / "training_args.bin").write_bytes(b"arguments")
    digest = hashlib.sha256(b"weights").hexdigest()
    line = f"pytorch_model.bin {digest}\n".encode()
    assert provenance.weights_fingerprint(bins) == hashlib.sha256(line).hexdigest()
    assert provenance.weights_fingerprint(tmp_path / "bins" / "none") is None


def test_hub_cache_blob_names_give_the_same_fingerprint(tmp_path, monkeypatch):
    """A snapshot file linked to blobs/<sha256> is taken by its name, without reading: the same
    fingerprint as hashing the bytes (what the hub's LFS oid is)."""
    import huggingface_hub.constants

    payload = b"safetensors bytes"
    sha = hashlib.sha256(payload).hexdigest()
    repo = tmp_path / "hub" / "models--org--m"
    (repo / "blobs").mkdir(parents=True)
    (repo / "blobs" / sha).write_bytes(b"other bytes: the name is trusted, as documented")
    snapshot = repo / "snapshots" / ("c" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").symlink_to(repo / "blobs" / sha)
    (snapshot / "config.json").write_text("{}")
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "model.safetensors").write_bytes(payload)
    assert provenance.weights_fingerprint(snapshot) == provenance.weights_fingerprint(plain)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    (repo / "refs").mkdir()
    (repo / "refs" / "step1").write_text("c" * 40)
    expected = provenance.Provenance("c" * 40, provenance.weights_fingerprint(plain))
    assert provenance.source_provenance("org/m", "step1") == expected
    assert provenance.source_provenance("org/m", "c" * 40) == expected
    assert provenance.source_provenance("org/m", "step2") == provenance.Provenance(None, None)
    # A model loaded some other way: the config's commit if it records one, never a guess at main
    (repo / "refs" / "main").write_text("c" * 40)

    class Loaded:
        def __init__(self, commit: str | None) -> None:
            self.config = type("Config", (), {"_name_or_path": "org/m", "_commit_hash": commit})

    assert provenance.model_provenance(Loaded("c" * 40)) == expected
    assert provenance.model_provenance(Loaded(None)) == provenance.Provenance(None, None)


def test_sweep_records_equal_fingerprints_and_fit_and_report_count_them_once(toy, capsys):
    code = main(["sweep", str(toy / "spec.toml"), "--out", str(toy / "out"), "--quiet"])
    assert code == 0
    err = capsys.readouterr().err
    line = (
        "tiny: revisions step3, step12 hold identical weights (fingerprint "
        f"{reference_fingerprint(toy / 'tiny/checkpoints/step3')[:12]}); kept step3 (the lowest "
        "step), left out step12"
    )
    assert f"sweep: {line}" in err.splitlines()
    cells = {c.key.revision: c for c in load_cells(toy / "out")}
    prints = {r: c.summary["weights_fingerprint"] for r, c in cells.items()}
    for revision, folder in [("step1", "checkpoints/step1"), ("step3", "checkpoints/step3")]:
        assert prints[revision] == reference_fingerprint(toy / "tiny" / folder)
    assert prints["main"] == reference_fingerprint(toy / "tiny")
    assert prints["step3"] == prints["step12"] and len(set(prints.values())) == 3
    assert all(c.summary["model_commit"] is None for c in cells.values())  # local: no commit
    # The fit: a note of kind same-weights, and no row for step12.
    fits = fit_sweep(toy / "out", n_boot=0)
    assert [n.message for n in fits.notes if n.kind == "same-weights"] == [line]
    assert sorted(str(r.revision) for r in fits.cells) == ["main", "step1", "step3"]
    kept = [c for c in load_cells(toy / "out") if c.key.revision != "step12"]
    assert is_current(fits, kept)
    # The report: training dynamics over steps 1 and 3 only, the note once.
    data = collect(toy / "out", run_fit=False)
    assert [c.step for c in data.dynamics["notes"]["tiny"]] == [1, 3]
    assert data.notes.count(line) == 1
    assert "step12" not in {str(c.key.revision) for c in data.cells}
    # The dry run names them too.
    assert main(["sweep", str(toy / "spec.toml"), "--out", str(toy / "out"), "--dry-run"]) == 0
    assert line in capsys.readouterr().out.splitlines()


def test_weights_changed_behind_a_revision_name_are_redone(toy):
    out = toy / "out"
    assert run_sweep(toy / "spec.toml", out, progress=False).ok
    before = {c.key.revision: c.summary["weights_fingerprint"] for c in load_cells(out)}
    step1 = toy / "tiny" / "checkpoints" / "step1"
    shutil.copy(toy / "tiny" / "model.safetensors", step1 / "model.safetensors")  # step1 = main
    survey = run_sweep(toy / "spec.toml", out, dry_run=True)
    states = {s.cell.revision: s for s in survey.states}
    assert states["step1"].status == "pending" and "other weights" in states["step1"].detail
    assert all(states[r].status == "done" for r in ("step3", "step12", "main"))
    outcome = run_sweep(toy / "spec.toml", out, progress=False)
    assert outcome.ok and outcome.computed == 1
    after = {c.key.revision: c.summary["weights_fingerprint"] for c in load_cells(out)}
    assert after["step1"] == before["main"] != before["step1"]
    assert {(s.kept, s.dropped) for s in outcome.same_weights} == {
        ("step1", ("main",)),
        ("step3", ("step12",)),
    }


def test_score_out_records_the_fingerprint(tmp_path, model_dir, short_docs):
    import errorentropy as ee

    model, tokenizer = ee.load_model(str(model_dir), device="cpu")
    summary = ee.score(model, tokenizer, short_docs[:3], max_length=32).summary
    assert summary["model_commit"] is None
    assert summary["weights_fingerprint"] == reference_fingerprint(model_dir)


def test_score_out_of_a_hub_revision_records_its_commit(tmp_path, tokenizer, short_docs):
    """``errorentropy score --model org/tiny --revision step1`` from a stand-in hub cache
    (offline, transformers' own resolution): the summary names the commit the branch points to,
    and the fingerprint of the files behind it."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--org--tiny"
    snapshot = save_model(
        tiny_model("gpt2", len(tokenizer), **KW), tokenizer, repo / "snapshots" / commit
    )
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "step1").write_text(commit)
    data = tmp_path / "docs.txt"
    data.write_text("\n\n".join(short_docs[:3]), encoding="utf-8")
    env = {
        **os.environ,
        "HF_HOME": str(tmp_path / "hf-home"),
        "HF_HUB_CACHE": str(tmp_path / "hub"),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        provenance.CACHE_ENV: str(tmp_path / "cache"),
    }
    run = subprocess.run(
        [sys.executable, "-m", "errorentropy", "score", "--model", "org/tiny"]
        + ["--revision", "step1", "--data", str(data), "--max-length", "32", "--device", "cpu"]
        + ["--quiet", "--out", str(tmp_path / "result")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    summary = json.loads((tmp_path / "result" / "summary.json").read_text())
    assert summary["model_commit"] == commit
    assert summary["weights_fingerprint"] == reference_fingerprint(snapshot)


def test_only_the_files_transformers_loads_are_fingerprinted(tmp_path, tokenizer):
    """A stray copy (Mistral-style consolidated.safetensors) changes neither what transformers
    loads nor the fingerprint; a sharded checkpoint is its index's shards."""
    from transformers import AutoModelForCausalLM

    folder = save_model(tiny_model("gpt2", len(tokenizer), **KW), tokenizer, tmp_path / "m")
    expected = reference_fingerprint(folder)
    shutil.copy(folder / "model.safetensors", folder / "consolidated.safetensors")
    assert provenance.weights_fingerprint(folder) == expected
    # Sharded: the shards, not the index; a stray file beside them left out as well.
    sharded = tmp_path / "sharded"
    tiny_model("gpt2", len(tokenizer), seed=5, **KW).save_pretrained(sharded, max_shard_size="50KB")
    shards = sorted(sharded.glob("model-*-of-*.safetensors"))
    assert len(shards) > 1 and (sharded / "model.safetensors.index.json").exists()
    lines = "".join(f"{p.name} {hashlib.sha256(p.read_bytes()).hexdigest()}\n" for p in shards)
    (sharded / "consolidated.safetensors").write_bytes(b"not loaded")
    AutoModelForCausalLM.from_pretrained(sharded)  # still what transformers loads
    assert provenance.weights_fingerprint(sharded) == hashlib.sha256(lines.encode()).hexdigest()


def test_a_model_changed_after_loading_records_no_fingerprint(model_dir, short_docs):
    """ee.score of a model whose weights were changed in memory after ee.load_model: no
    fingerprint (that of the files would name other weights), and a note saying why."""
    import torch

    import errorentropy as ee

    model, tokenizer = ee.load_model(str(model_dir), device="cpu")
    kept = ee.score(model, tokenizer, short_docs[:3], max_length=32).summary
    assert kept["weights_fingerprint"] == reference_fingerprint(model_dir)
    assert not [n for n in kept["notes"] if "weights_fingerprint" in n]
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(0.5)
    changed = ee.score(model, tokenizer, short_docs[:3], max_length=32).summary
    assert changed["cross_entropy"] != kept["cross_entropy"]
    assert changed["weights_fingerprint"] is None and changed["model_commit"] is None
    (note,) = [n for n in changed["notes"] if "weights_fingerprint" in n]
    assert "differ from those load_model loaded" in note


def test_a_dry_run_reads_no_weights_and_a_run_hashes_only_changed_files(toy, monkeypatch):
    """Planning knows each local folder's fingerprint by its files' size and mtime (noted in the
    sweep folder): a dry run, even on a machine with no hash cache, reads no weights; a run
    hashes a folder only when its files changed, and redoes its cells when the bytes did."""
    out = toy / "out"
    assert run_sweep(toy / "spec.toml", out, progress=False).ok
    hashed: list[str] = []
    real_hash = provenance._hash_file

    def spy(path):
        hashed.append(Path(path).parent.name)
        return real_hash(path)

    monkeypatch.setattr(provenance, "_hash_file", spy)
    # Another machine: nothing cached by file, in memory or on disk.
    monkeypatch.setenv(provenance.CACHE_ENV, str(toy / "empty-cache"))
    monkeypatch.setattr(provenance, "_MEMORY", {})
    survey = run_sweep(toy / "spec.toml", out, dry_run=True)
    assert hashed == [] and all(s.status == "done" for s in survey.states)
    outcome = run_sweep(toy / "spec.toml", out, progress=False)  # nothing changed: nothing read
    assert hashed == [] and outcome.computed == 0
    # step1's bytes change, size kept, mtime moved on: seen without reading, redone by a run.
    weights = toy / "tiny" / "checkpoints" / "step1" / "model.safetensors"
    before = {c.key.revision: c.summary["weights_fingerprint"] for c in load_cells(out)}
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    survey = run_sweep(toy / "spec.toml", out, dry_run=True)
    states = {s.cell.revision: s for s in survey.states}
    assert hashed == [] and states["step1"].status == "pending"
    assert "changed on disk" in states["step1"].detail
    assert all(states[r].status == "done" for r in ("step3", "step12", "main"))
    outcome = run_sweep(toy / "spec.toml", out, progress=False)
    assert outcome.ok and outcome.computed == 1 and set(hashed) == {"step1"}
    after = {c.key.revision: c.summary["weights_fingerprint"] for c in load_cells(out)}
    assert after["step1"] == reference_fingerprint(weights.parent) != before["step1"]
    assert {r: after[r] for r in ("step3", "step12", "main")} == {
        r: before[r] for r in ("step3", "step12", "main")
    }
