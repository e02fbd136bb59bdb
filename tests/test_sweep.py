"""Sweeps: resumable after SIGKILL at random moments, damaged cells redone, failures recorded,
merges.

A toy sweep of 4 random-weight models (gpt2, gpt_neox, llama, qwen2) x 2 revisions (the model
folder and a local ``checkpoints/step1``) x 2 local datasets (jsonl, a folder of .txt) = 16 cells.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from errorentropy.cli import main
from errorentropy.errors import UserError
from errorentropy.stats.histogram import RankHistogram
from errorentropy.stats.tokens import TokenTable
from errorentropy.sweep.cells import CELLS_DIR, load_cells, read_cell
from errorentropy.sweep.merge import merge_sweeps
from errorentropy.sweep.plan import plan_cells, sweep_states
from errorentropy.sweep.run import run_sweep
from errorentropy.sweep.spec import load_spec

ARCHS = ("gpt2", "gpt_neox", "llama", "qwen2")
PRELOAD = [
    "errorentropy.cli",
    "errorentropy.sweep.run",
    "errorentropy.sweep.worker",
    "errorentropy.scoring.engine",
    "errorentropy.models.loading",
    "errorentropy.data.corpus",
    "transformers",
    "transformers.models.gpt2.modeling_gpt2",
    "transformers.models.gpt_neox.modeling_gpt_neox",
    "transformers.models.llama.modeling_llama",
    "transformers.models.qwen2.modeling_qwen2",
]


def _texts() -> list[str]:
    from pydoc_data.topics import topics

    return [topics[k] for k in sorted(topics)]


def _spec_text(models: list[str], extra_models: str = "") -> str:
    body = '[scoring]\nmax_length = 32\nbatch_size = 4\n\n[run]\ndevice = "cpu"\n'
    for name in models:
        body += f'\n[[models]]\nid = "{name}"\nrevisions = ["main", "step1"]\n'
    body += extra_models
    body += '\n[[datasets]]\ndata = "docs.jsonl"\nlabel = "jsonl"\n\n[[datasets]]\ndata = "txt"\n'
    return body


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    """A folder with 4 tiny models (each with checkpoints/step1), 2 datasets and spec.toml."""
    from errorentropy.testing import save_model, tiny_model, train_bpe_tokenizer

    root = tmp_path_factory.mktemp("sweep-toy")
    texts = _texts()
    tokenizer = train_bpe_tokenizer(texts[:30], vocab_size=300)
    for i, arch in enumerate(ARCHS):
        kw = dict(hidden=32, layers=1, heads=2, context=64)
        folder = save_model(
            tiny_model(arch, len(tokenizer), seed=i, **kw), tokenizer, root / f"m-{arch}"
        )
        tiny_model(arch, len(tokenizer), seed=100 + i, **kw).save_pretrained(
            folder / "checkpoints" / "step1"
        )
    with open(root / "docs.jsonl", "w", encoding="utf-8") as handle:
        for text in texts[40:46]:
            handle.write(json.dumps({"text": text[:160]}) + "\n")
    (root / "txt").mkdir()
    for i, text in enumerate(texts[60:66]):
        (root / "txt" / f"{i}.txt").write_text(text[:160], encoding="utf-8")
    (root / "spec.toml").write_text(_spec_text([f"m-{a}" for a in ARCHS]), encoding="utf-8")
    return root


ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # tiny models: threads only contend


def _forkserver() -> multiprocessing.context.BaseContext:
    """Children forked from a server that imported torch and transformers once (fast starts), one
    thread each."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    saved = {k: os.environ.get(k) for k in ONE_THREAD}
    os.environ.update(ONE_THREAD)
    try:
        warm = ctx.Process(
            target=len, args=([],)
        )  # starts the server (inheriting this environment) if needed
        warm.start()
        warm.join()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return ctx


def _start(ctx, spec: Path, out: Path):
    process = ctx.Process(target=main, args=(["sweep", str(spec), "--out", str(out), "--quiet"],))
    process.start()
    return process


@pytest.fixture(scope="module")
def reference(toy, tmp_path_factory) -> tuple[Path, float]:
    """An uninterrupted sweep of the toy spec (in a forkserver child) and how long it took."""
    out = tmp_path_factory.mktemp("reference")
    ctx = _forkserver()
    started = time.perf_counter()
    process = _start(ctx, toy / "spec.toml", out)
    process.join(300)
    duration = time.perf_counter() - started
    assert process.exitcode == 0
    return out, duration


@pytest.fixture
def one_thread():
    """In-process sweeps on one torch thread, like the reference (tiny models: threads only
    contend)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def assert_same_results(got: Path, expected: Path) -> None:
    """Same set of cells; identical histograms, token arrays and summaries; no leftovers."""
    names = sorted(p.name for p in (expected / CELLS_DIR).iterdir())
    assert sorted(p.name for p in (got / CELLS_DIR).iterdir()) == names
    assert not any(n.startswith(".") for n in names)
    for name in names:
        a, b = read_cell(got / CELLS_DIR / name), read_cell(expected / CELLS_DIR / name)
        assert a is not None and b is not None, name
        assert a.summary == b.summary, name
        assert (a.key, a.family, a.non_embedding_params, a.step) == (
            b.key,
            b.family,
            b.non_embedding_params,
            b.step,
        )
        assert a.histogram() == b.histogram(), name
        ta, tb = a.tokens(), b.tokens()
        for field in ("doc", "position", "rank", "logprob"):
            np.testing.assert_array_equal(getattr(ta, field), getattr(tb, field))


def test_reference_sweep_records_x_axis_and_family(toy, reference):
    out, _ = reference
    records = {r.key.cell_id: r for r in (read_cell(d) for d in (out / CELLS_DIR).iterdir())}
    assert len(records) == 16
    gpt2 = records["m-gpt2__step1__jsonl"]
    assert gpt2.family == "gpt2" and gpt2.step == 1 and records["m-gpt2__main__txt"].step is None
    # Independent count: every parameter minus token and position embeddings (gpt2 ties its head).
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(toy / "m-gpt2")
    embed = model.transformer.wte.weight.numel() + model.transformer.wpe.weight.numel()
    assert gpt2.non_embedding_params == sum(p.numel() for p in model.parameters()) - embed
    assert {records[f"m-{a}__main__jsonl"].family for a in ARCHS} == set(ARCHS)
    # The token arrays rebuild the histogram exactly (bootstrap data is consistent).
    tokens = gpt2.tokens()
    assert (
        RankHistogram.from_tokens(tokens.rank, tokens.logprob).counts.tolist()
        == gpt2.histogram().counts.tolist()
    )
    assert gpt2.summary["n_tokens"] == tokens.rank.size and np.unique(tokens.doc).size == 6
    assert (out / "spec.toml").read_text() == (toy / "spec.toml").read_text()


def test_sigkill_at_random_moments_then_resume_matches_uninterrupted(toy, reference, tmp_path):
    """20+ SIGKILLs at seeded random moments, a resume after each, then the real CLI finishes."""
    ref, duration = reference
    ctx = _forkserver()
    rng = random.Random(1234)
    out = tmp_path / "killed"
    spec = load_spec(toy / "spec.toml")
    kills = runs = partial = leftovers = 0
    while (
        kills < 20 or partial < 5
    ):  # at least 5 kills must fall mid-sweep (some cells done, some not)
        runs += 1
        assert runs < 200, "the sweep makes no progress between kills"
        process = _start(ctx, toy / "spec.toml", out)
        process.join(rng.uniform(0.0, duration))
        if process.is_alive():
            process.kill()  # SIGKILL (the sweep may still finish in the instant before it lands)
        process.join()
        if process.exitcode == -9:
            kills += 1
            done = sum(s.status == "done" for s in sweep_states(spec, out))
            partial += 0 < done < 16
            leftovers += (
                any(p.name.startswith(".") for p in (out / CELLS_DIR).glob(".*"))
                if (out / CELLS_DIR).exists()
                else 0
            )
        else:
            assert process.exitcode == 0
            if (
                kills < 20 or partial < 5
            ):  # finished before enough kills: start over in a fresh folder
                assert_same_results(out, ref)
                shutil.rmtree(out)
    print(
        f"reference {duration:.2f} s; {kills} kills in {runs} runs; {partial} with some "
        f"cells done, {leftovers} mid-write",
        file=sys.stderr,
    )
    finished = subprocess.run(
        [
            sys.executable,
            "-m",
            "errorentropy",
            "sweep",
            str(toy / "spec.toml"),
            "--out",
            str(out),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **ONE_THREAD},
    )
    assert finished.returncode == 0, finished.stderr
    assert "16 done, 0 failed, 0 pending" in finished.stderr
    assert_same_results(out, ref)


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_damaged_cells_are_detected_and_redone(toy, reference, tmp_path, capsys, one_thread):
    ref, _ = reference
    out = _copy(ref, tmp_path / "damaged")
    cells = out / CELLS_DIR
    tokens = cells / "m-llama__step1__jsonl" / "tokens.npz"
    tokens.write_bytes(tokens.read_bytes()[: tokens.stat().st_size // 2])  # truncated
    hist = cells / "m-llama__step1__txt" / "histogram.json"
    hist.write_text(
        hist.read_text().replace('"n_tied": 0', '"n_tied": 1')
    )  # edited, checksum fails
    cell = cells / "m-qwen2__main__txt" / "cell.json"
    cell.write_bytes(cell.read_bytes()[:-20])  # truncated seal
    (cells / "m-qwen2__main__jsonl" / "summary.json").unlink()  # a listed file missing
    (cells / ".m-gpt2__main__txt.tmp-1-deadbeef").mkdir()  # a killed run's leftover
    spec = load_spec(toy / "spec.toml")
    states = {s.cell.cell_id: s for s in sweep_states(spec, out)}
    damaged = {
        "m-llama__step1__jsonl",
        "m-llama__step1__txt",
        "m-qwen2__main__txt",
        "m-qwen2__main__jsonl",
    }
    assert {k for k, s in states.items() if s.status == "pending"} == damaged
    assert all("damaged" in states[k].detail for k in damaged)
    with pytest.raises(UserError):
        TokenTable.load(tokens)  # never silently read
    assert main(["sweep", str(toy / "spec.toml"), "--out", str(out), "--dry-run"]) == 0
    listing = capsys.readouterr().out
    assert listing.count("pending") >= 4 and "12 done, 0 failed, 4 pending" in listing
    outcome = run_sweep(toy / "spec.toml", out, progress=False)
    assert outcome.ok and outcome.computed == 4
    assert_same_results(out, ref)


def test_failing_model_is_recorded_and_the_rest_is_kept(toy, tmp_path, capsys, one_thread):
    broken = tmp_path / "broken"
    shutil.copytree(toy / "m-gpt2", broken)
    (broken / "config.json").write_text("{ not json")
    extra = (
        f'\n[[models]]\nid = "{broken}"\n\n[[models]]\nid = "./missing-model"\nfamily = "ghost"\n'
    )
    spec = toy / "spec-failing.toml"
    spec.write_text(_spec_text(["m-gpt2"], extra) + '\n[[datasets]]\ndata = "absent.jsonl"\n')
    out = tmp_path / "out"
    code = main(["sweep", str(spec), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 3
    assert "4 done, 8 failed, 0 pending of 12 cells" in err
    records = {
        d.name: json.loads((d / "failure.json").read_text())
        for d in (out / CELLS_DIR).iterdir()
        if (d / "failure.json").exists()
    }
    assert set(records) == {
        f"{m}__{r}__{d}"
        for m in ("broken", "missing-model")
        for r in ("main",)
        for d in ("jsonl", "txt", "absent")
    } | {"m-gpt2__main__absent", "m-gpt2__step1__absent"}
    assert all(r["error"] and "\n" not in r["error"] for r in records.values())
    assert {r["stage"] for k, r in records.items() if k.startswith(("broken", "missing"))} == {
        "load model"
    }
    assert (
        records["m-gpt2__step1__absent"]["stage"] == "load data"
        and "absent.jsonl" in records["m-gpt2__step1__absent"]["error"]
    )
    assert (
        "does not exist" in records["missing-model__main__txt"]["error"]
        and records["missing-model__main__txt"]["family"] == "ghost"
    )
    assert sum(read_cell(d) is not None for d in (out / CELLS_DIR).iterdir()) == 4
    # A rerun keeps everything and recomputes nothing; --dry-run lists the failures.
    assert run_sweep(spec, out, progress=False).computed == 0
    assert main(["sweep", str(spec), "--out", str(out), "--dry-run"]) == 0
    listing = capsys.readouterr().out
    assert listing.count("\nfailed ") == 8 and "load model" in listing and "load data" in listing
    # --retry-failed tries again (and fails again), the finished cells stay untouched.
    before = {
        d.name: (d / "cell.json").read_bytes()
        for d in (out / CELLS_DIR).iterdir()
        if (d / "cell.json").exists()
    }
    outcome = run_sweep(spec, out, progress=False, retry_failed=True)
    assert outcome.failed_now == 8 and outcome.count("done") == 4 and outcome.computed == 0
    assert before == {
        d.name: (d / "cell.json").read_bytes()
        for d in (out / CELLS_DIR).iterdir()
        if (d / "cell.json").exists()
    }
    # Changed settings (say another max_length) make failed cells pending again, without
    # --retry-failed.
    changed = toy / "spec-failing-changed.toml"
    changed.write_text(spec.read_text().replace("max_length = 32", "max_length = 24"))
    states = {s.cell.cell_id: s for s in sweep_states(load_spec(changed), out)}
    assert (
        states["missing-model__main__txt"].status == "pending"
        and "failed with other settings" in states["missing-model__main__txt"].detail
    )


def test_changed_settings_make_cells_stale(toy, reference, tmp_path):
    ref, _ = reference
    out = _copy(ref, tmp_path / "stale")
    spec = toy / "spec-stale.toml"
    spec.write_text(_spec_text(["m-gpt2"]).replace("max_length = 32", "max_length = 24"))
    states = sweep_states(load_spec(spec), out)
    assert [s.status for s in states] == ["pending"] * 4 and "other settings" in states[0].detail


def test_merge_unites_sweeps_and_refuses_conflicts(toy, reference, tmp_path, capsys):
    ref, _ = reference
    names = sorted(p.name for p in (ref / CELLS_DIR).iterdir())
    a, b = tmp_path / "a", tmp_path / "b"
    for folder, chosen in ((a, names[:10]), (b, names[6:])):  # overlapping halves
        for name in chosen:
            shutil.copytree(ref / CELLS_DIR / name, folder / CELLS_DIR / name)
    shutil.copy(ref / "spec.toml", a / "spec.toml")
    merged = tmp_path / "merged"
    assert main(["merge", str(merged), str(a), str(b)]) == 0
    assert "16 cells copied" in capsys.readouterr().err
    assert_same_results(merged, ref)
    assert merge_sweeps(merged, [a, b]).present == names  # idempotent
    # Same cell id, other numbers: an error naming the cell.
    victim = b / CELLS_DIR / names[7]
    record = read_cell(victim)
    hist = record.histogram()
    hist.logprob_sums[np.flatnonzero(hist.counts)[0]] -= 1.0
    hist.save(victim / "histogram.json")
    from errorentropy.sweep.cells import write_cell_record

    write_cell_record(
        victim,
        record.key,
        family=record.family,
        non_embedding_params=record.non_embedding_params,
        total_params=record.total_params,
        summary=record.summary,
    )
    assert read_cell(victim) is not None
    with pytest.raises(UserError, match=names[7]):
        merge_sweeps(tmp_path / "merged2", [a, b])
    assert main(["merge", str(tmp_path / "merged3"), str(tmp_path / "nowhere")]) == 2


def test_plan_and_spec_copy(toy):
    spec = load_spec(toy / "spec.toml")
    cells = plan_cells(spec)
    assert len(cells) == 16 and len({c.cell_id for c in cells}) == 16
    assert cells[0].model.source == str((toy / "m-gpt2").resolve())
    assert cells[1].dataset.source == str((toy / "txt").resolve())


def test_changed_documents_behind_the_same_path_are_redone(toy, reference, tmp_path, one_thread):
    """The digest knows a dataset by its path; each cell also recorded its documents' fingerprint,
    and a rewritten file makes its cells pending (in the dry run too), then redone."""
    ref, _ = reference
    root = tmp_path / "toy"
    shutil.copytree(toy, root, ignore=shutil.ignore_patterns("m-*"))
    for arch in ("gpt2",):
        (root / f"m-{arch}").symlink_to(toy / f"m-{arch}")
    spec = root / "spec.toml"
    spec.write_text(_spec_text(["m-gpt2"]))
    out = tmp_path / "out"
    assert run_sweep(spec, out, progress=False).ok
    lines = (root / "docs.jsonl").read_text().splitlines()
    (root / "docs.jsonl").write_text("\n".join(lines[:-1]) + "\n")  # one document fewer
    states = {
        s.cell.key.dataset: s
        for s in run_sweep(spec, out, dry_run=True).states
        if s.cell.revision == "main"
    }
    assert states["jsonl"].status == "pending" and "other documents" in states["jsonl"].detail
    assert states["txt"].status == "done"
    outcome = run_sweep(spec, out, progress=False)
    assert outcome.ok and outcome.computed == 2  # both revisions on the jsonl dataset
    assert all(c.summary["n_documents"] == 5 for c in load_cells(out) if c.key.dataset == "jsonl")


def test_family_given_later_is_written_and_orphans_are_named(toy, reference, tmp_path, one_thread):
    ref, _ = reference
    out = _copy(ref, tmp_path / "fam")
    spec = toy / "spec-family.toml"
    spec.write_text(
        _spec_text(["m-gpt2"]).replace('id = "m-gpt2"', 'id = "m-gpt2"\nfamily = "mine"')
    )
    outcome = run_sweep(spec, out, progress=False)
    assert outcome.ok and outcome.computed == 0
    assert {c.family for c in load_cells(out) if c.key.model == "m-gpt2"} == {"mine"}
    assert len(outcome.orphans) == 12 and "not in this spec" in outcome.summary_line()


def test_fit_and_merge_never_read_a_killed_writes_leftovers_or_mix_settings(
    toy, reference, tmp_path
):
    """A kill between commit_folder's two renames leaves complete hidden copies (.NAME.old-*,
    .NAME.tmp-*): results never include them. Merging cells scored with another max-length into
    one dataset is refused before anything is copied."""
    ref, _ = reference
    out = _copy(ref, tmp_path / "left")
    name = sorted(p.name for p in (out / CELLS_DIR).iterdir())[0]
    shutil.copytree(out / CELLS_DIR / name, out / CELLS_DIR / f".{name}.old-123-abcdef12")
    assert len(load_cells(out)) == 16
    other = _copy(ref, tmp_path / "other")
    victim = other / CELLS_DIR / name
    record = read_cell(victim)
    from errorentropy.sweep.cells import write_cell_record

    shutil.rmtree(out / CELLS_DIR / name)  # the cell exists only in `other`, scored "differently"
    write_cell_record(
        victim,
        record.key,
        family=record.family,
        non_embedding_params=record.non_embedding_params,
        total_params=record.total_params,
        summary={**record.summary, "max_length": 16},
    )
    with pytest.raises(UserError, match="dataset 'jsonl' scored with .*max_length 32 in .* vs 16"):
        merge_sweeps(tmp_path / "merged", [out, other])
    assert not (tmp_path / "merged").exists()


def test_a_label_starting_with_a_dot_is_not_hidden():
    from errorentropy.sweep.cells import CellKey, slug

    assert (
        slug(".5b") == "5b"
        and slug("..x-") == "x"
        and not CellKey(".5b", None, ".d").cell_id.startswith(".")
    )


def test_leftovers_of_killed_writes_are_cleaned(tmp_path):
    from errorentropy.sweep.plan import clean_leftovers

    cells = tmp_path / CELLS_DIR
    (cells / ".a__main__d.tmp-1-abcdef12").mkdir(parents=True)
    (cells / "a__main__d").mkdir()
    (tmp_path / ".spec.toml.x1y2.tmp").write_text("half")
    (tmp_path / "spec.toml").write_text("whole")
    clean_leftovers(cells)
    assert sorted(p.name for p in tmp_path.iterdir()) == [CELLS_DIR, "spec.toml"]
    assert [p.name for p in cells.iterdir()] == ["a__main__d"]


def test_merge_of_sweeps_scored_differently_is_refused_first_and_creates_nothing(
    toy, reference, tmp_path, one_thread
):
    """max_length 16 vs 32: the refusal names the setting (not a cell "differing", which
    deleting it would not fix), into a new folder creates nothing, into an existing one changes
    nothing."""
    ref, _ = reference
    spec = toy / "spec-short.toml"
    spec.write_text(_spec_text(["m-gpt2"]).replace("max_length = 32", "max_length = 16"))
    short = tmp_path / "short"
    assert run_sweep(spec, short, progress=False).ok
    new = tmp_path / "new"
    with pytest.raises(UserError, match=r"max_length 32 in .* vs 16 in ") as refused:
        merge_sweeps(new, [ref, short])
    assert "delete it" not in str(refused.value) and not new.exists()
    existing = _copy(ref, tmp_path / "existing")
    before = sorted(str(p.relative_to(existing)) for p in existing.rglob("*"))
    with pytest.raises(UserError, match=r"max_length 32 in .* vs 16 in ") as refused:
        merge_sweeps(existing, [short])
    assert "delete it" not in str(refused.value)
    assert sorted(str(p.relative_to(existing)) for p in existing.rglob("*")) == before
