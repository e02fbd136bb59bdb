"""Many workers, one sweep folder: claims, leases, a worker killed mid-cell, ``--workers K``.

The toy: 2 tiny models x 2 revisions x 2 datasets = 8 cells, scored by real ``errorentropy
sweep`` processes. What each worker did is read back from what it recorded: every claim's
attempt file (worker, host, pid) and outcome, and every cell's timing.json (worker, attempt).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from errorentropy.errors import UserError
from errorentropy.sweep.cells import CELLS_DIR, read_cell
from errorentropy.sweep.claims import CLAIMS_DIR, WORKER_ENV, ClaimBoard, Worker, this_worker
from errorentropy.sweep.launch import worker_devices
from errorentropy.sweep.merge import merge_sweeps
from errorentropy.sweep.plan import sweep_lock
from errorentropy.sweep.run import survey
from errorentropy.sweep.spec import load_spec
from test_sweep import assert_same_results

ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


@pytest.fixture(scope="module")
def toy(tmp_path_factory, tokenizer, prose_docs) -> Path:
    """Two tiny models with checkpoints/step1, two datasets and spec.toml."""
    from errorentropy.testing import save_model, tiny_model

    root = tmp_path_factory.mktemp("workers-toy")
    kw = dict(hidden=32, layers=1, heads=2, context=64)
    for i, arch in enumerate(("gpt2", "llama")):
        folder = save_model(tiny_model(arch, len(tokenizer), seed=i, **kw), tokenizer, root / arch)
        tiny_model(arch, len(tokenizer), seed=10 + i, **kw).save_pretrained(
            folder / "checkpoints" / "step1"
        )
    for name, start in (("a", 400), ("b", 420)):
        with open(root / f"{name}.jsonl", "w", encoding="utf-8") as handle:
            for text in prose_docs[start : start + 16]:
                handle.write(json.dumps({"text": text[:400]}) + "\n")
    spec = '[scoring]\nmax_length = 64\nbatch_size = 4\n[run]\ndevice = "cpu"\n'
    for arch in ("gpt2", "llama"):
        spec += f'[[models]]\nid = "{arch}"\nrevisions = ["main", "step1"]\n'
    spec += '[[datasets]]\ndata = "a.jsonl"\n[[datasets]]\ndata = "b.jsonl"\n'
    (root / "spec.toml").write_text(spec, encoding="utf-8")
    return root


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Weights fingerprints cached under the test's folder."""
    monkeypatch.setenv("ERRORENTROPY_CACHE", str(tmp_path / "cache"))


def sweep_command(toy: Path, out: Path, *extra: str) -> list[str]:
    """The real command line, as a user types it."""
    spec = str(toy / "spec.toml")
    return [sys.executable, "-m", "errorentropy", "sweep", spec, "--out", str(out), *extra]


def environment(tmp: Path, **more: str) -> dict[str, str]:
    return {**os.environ, **ENV, "ERRORENTROPY_CACHE": str(tmp / "cache"), **more}


@pytest.fixture(scope="module")
def single(toy, tmp_path_factory) -> Path:
    """One worker's sweep of the toy: what any number of workers must reproduce."""
    out = tmp_path_factory.mktemp("single") / "out"
    run = subprocess.run(
        sweep_command(toy, out, "--quiet"),
        env=environment(out.parent),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr
    return out


def attempts(out: Path) -> dict[str, list[dict]]:
    """Every claim attempt recorded in ``out``, per cell: the attempt file and its outcome."""
    found: dict[str, list[dict]] = {}
    for folder in sorted((out / CLAIMS_DIR).iterdir()):
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("attempt-*.json")):
            record = json.loads(path.read_text())
            beat = path.with_suffix(".beat")
            record["outcome"] = json.loads(beat.read_text())["outcome"] if beat.exists() else None
            record["attempt"] = int(path.stem.split("-")[1])
            found.setdefault(folder.name, []).append(record)
    return found


def held_cell(out: Path, pid: int) -> str | None:
    """The cell worker ``pid`` holds now, if any."""
    for cell, records in (attempts(out) if (out / CLAIMS_DIR).is_dir() else {}).items():
        if any(r["pid"] == pid and r["outcome"] is None for r in records):
            return cell
    return None


def test_three_workers_one_killed_mid_cell_give_one_workers_cells(toy, single, tmp_path):
    out = tmp_path / "shared"
    env = environment(tmp_path, ERRORENTROPY_LEASE_S="5")
    workers = [
        subprocess.Popen(sweep_command(toy, out, "--quiet"), env={**env, WORKER_ENV: f"t{i}"})
        for i in range(3)
    ]
    victim = workers[0]
    deadline = time.monotonic() + 300
    killed = None
    while killed is None and time.monotonic() < deadline and victim.poll() is None:
        killed = held_cell(out, victim.pid)
        if killed is None:
            time.sleep(0.02)
    assert killed is not None, "the first worker never held a cell"
    os.kill(victim.pid, signal.SIGKILL)
    assert victim.wait() == -signal.SIGKILL
    replacement = subprocess.Popen(
        sweep_command(toy, out, "--quiet"), env={**env, WORKER_ENV: "t3"}
    )
    for process in [*workers[1:], replacement]:
        assert process.wait(timeout=600) == 0
    assert_same_results(out, single)
    # Who computed what, from the workers' own records.
    recorded = attempts(out)
    victim_id = f"{this_worker().host}:{victim.pid}:"
    assert set(recorded) == {p.name for p in (out / CELLS_DIR).iterdir()}
    for cell, records in recorded.items():
        timing = json.loads((out / CELLS_DIR / cell / "timing.json").read_text())
        writer = next(r for r in records if r["attempt"] == timing["attempt"])
        assert writer["worker"] == timing["worker"], cell
        assert not any(r["outcome"] in ("superseded", "failed") for r in records), cell
        # Computed exactly once: one attempt ended "done" (the one whose result is on disk),
        # or the victim wrote it and died before it could say so.
        done = [r for r in records if r["outcome"] == "done"]
        assert done == [writer] or (not done and writer["worker"].startswith(victim_id)), cell
        living = [r for r in records if not r["worker"].startswith(victim_id)]
        assert sum(r["outcome"] == "done" for r in living) <= 1, cell
    # The cell the victim held was taken over by a living worker, at a later attempt.
    taken = recorded[killed]
    print(
        f"killed mid-cell {killed}: {[(r['attempt'], r['label'], r['outcome']) for r in taken]}",
        file=sys.stderr,
    )
    dead = [r for r in taken if r["worker"].startswith(victim_id) and r["outcome"] is None]
    (done,) = [r for r in taken if r["outcome"] == "done"]
    assert dead and done["attempt"] > dead[0]["attempt"]
    assert not done["worker"].startswith(victim_id)
    # Any later attempt found the cell done and let it be (a worker that planned meanwhile).
    assert all(r["outcome"] == "skipped" for r in taken if r["attempt"] > done["attempt"])


def test_workers_flag_starts_k_processes(toy, single, tmp_path):
    out = tmp_path / "k"
    run = subprocess.run(
        sweep_command(toy, out, "--workers", "2", "--quiet"),
        env=environment(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr
    assert "8 done, 0 failed, 0 pending of 8 cells" in run.stderr
    assert "2 workers ended with 0, 0" in run.stderr
    assert_same_results(out, single)
    labels = {r["label"] for records in attempts(out).values() for r in records}
    assert labels <= {"w0", "w1"} and labels


def test_worker_devices():
    four = ["0", "1", "2", "3"]
    assert worker_devices(4, "auto", None, four) == four
    assert worker_devices(2, "cuda", None, four) == ["0", "1"]
    assert worker_devices(2, "auto", "auto", four) == ["0,1", "2,3"]  # a model over 2 GPUs each
    assert worker_devices(6, "auto", None, four) == ["0", "1", "2", "3", "0", "1"]
    assert worker_devices(3, "cpu", None, four) == [None, None, None]
    assert worker_devices(2, "auto", None, []) == [None, None]
    with pytest.raises(UserError, match="its own GPU"):
        worker_devices(2, "cuda:1", None, four)


def other_machine(board: ClaimBoard) -> ClaimBoard:
    """The same folder as a worker on another machine sees it (another boot id: no flock)."""
    board.worker = Worker("elsewhere", "another-boot", 1, "feedbeef", "")
    return board


def test_claims_exclude_and_leases_expire_without_heartbeats(tmp_path):
    mine = ClaimBoard(tmp_path, lease_s=0.6)
    claim = mine.try_claim("c")
    assert claim is not None and claim.attempt == 1
    assert mine.try_claim("c") is None  # held, by this very process
    far = other_machine(ClaimBoard(tmp_path, lease_s=0.6))
    assert far.try_claim("c") is None
    time.sleep(1.2)  # two leases: heartbeats (every 0.15 s) keep the claim alive
    assert far.alive(far.latest("c")) and far.try_claim("c") is None
    mine.close("interrupted")  # gone: the outcome says so, anyone may claim at once
    assert far.latest("c").outcome == "interrupted"
    taken = far.try_claim("c")
    assert taken is not None and taken.attempt == 2
    # A holder whose heartbeats stop (a lost node) loses the cell once the lease runs out.
    far._stop.set()
    here = ClaimBoard(tmp_path, lease_s=0.6)
    assert here.try_claim("c") is None
    time.sleep(1.0)
    again = here.try_claim("c")
    assert again is not None and again.attempt == 3
    assert taken.superseded()  # the stalled holder finds out before it writes anything
    again.release("done")
    taken.release("superseded")


def test_a_killed_holder_on_this_machine_is_dead_at_once(tmp_path):
    """flock: the kernel drops the lock of a SIGKILLed process; no lease to wait out."""
    code = (
        "import sys, time; from errorentropy.sweep.claims import ClaimBoard; "
        f"c = ClaimBoard({str(tmp_path)!r}, lease_s=3600).try_claim('c'); "
        "print(c.attempt, flush=True); time.sleep(600)"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "1"
    board = ClaimBoard(tmp_path, lease_s=3600)
    assert board.flock_works()  # this folder's file system honours flock (ext4/overlay here)
    assert board.alive(board.latest("c")) and board.try_claim("c") is None
    child.kill()
    child.wait()
    claim = board.try_claim("c")
    assert claim is not None and claim.attempt == 2
    claim.release("done")


def test_dry_run_shows_who_runs_a_cell_and_merge_waits_for_workers(toy, single, tmp_path):
    spec = load_spec(toy / "spec.toml")
    board = ClaimBoard(single, lease_s=60)
    claim = board.try_claim("gpt2__step1__b")
    try:
        # A done cell stays done; a pending one held by a worker is running, by whom.
        (single / CELLS_DIR / "gpt2__step1__b" / "cell.json").rename(tmp_path / "cell.json")
        states = {s.cell.cell_id: s for s in survey(spec, single, estimate=False).states}
        running = states["gpt2__step1__b"]
        assert running.status == "running"
        assert f"by {this_worker().host}/{os.getpid()}" in running.detail
        assert states["gpt2__main__a"].status == "done"
        with sweep_lock(single, shared=True), sweep_lock(single, shared=True):
            with pytest.raises(UserError, match="another errorentropy sweep or merge"):
                merge_sweeps(single, [single])
    finally:
        (tmp_path / "cell.json").rename(single / CELLS_DIR / "gpt2__step1__b" / "cell.json")
        claim.release("skipped")


def test_dry_run_counts_tokens_and_the_time_left(toy, single, tmp_path, capsys):
    """Tokens to score: exact (the tokenizer and windows of scoring) for a local model, from
    characters for a model whose tokenizer is not at hand; time left once a model has run."""
    from errorentropy.cli import main

    spec = toy / "spec-dry-run.toml"  # beside the toy: the same relative paths, the same digests
    text = (toy / "spec.toml").read_text().replace('"b.jsonl"', '"gone"')
    text += '[[datasets]]\ndata = "b.jsonl"\nlabel = "b"\n'
    text += '[[models]]\nid = "nobody/no-such-model"\nlabel = "hub"\n'
    spec.write_text(text)
    out = tmp_path / "out"
    out.mkdir()
    (out / CELLS_DIR).mkdir()
    for cell in ("gpt2__main__a", "gpt2__step1__a"):  # one model has run: its speed is known
        os.symlink(single / CELLS_DIR / cell, out / CELLS_DIR / cell)
    outcome = survey(load_spec(spec), out)
    tokens = outcome.tokens
    for cell in ("gpt2__main__b", "llama__step1__b"):  # exact: what the single sweep scored
        summary = json.loads((single / CELLS_DIR / cell / "summary.json").read_text())
        assert tokens[cell].how == "tokenized" and tokens[cell].tokens == summary["n_tokens"]
    assert tokens["hub__main__b"].how == "characters" and tokens["hub__main__b"].text()[0] == "~"
    assert "gpt2__main__gone" not in tokens  # unreadable data: not counted
    left = outcome.time_left
    assert left.measured == 2 and left.unmeasured == 11 and left.seconds > 0  # gpt2's b cells
    assert main(["sweep", str(spec), "--out", str(out), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "work left" in printed and "11 cell(s) of models with no finished cell yet" in printed
    assert f"{tokens['gpt2__main__b'].tokens:,}" in printed


# ---- a paused holder, skewed clocks, NFS, merged failures ------------------------------------


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _runner(toy: Path, out: Path, board: ClaimBoard | None):
    from errorentropy.sweep.worker import _Runner

    return _Runner(load_spec(toy / "spec.toml"), out, progress=False, board=board)


def _outcome(out: Path, cell: str, attempt: int) -> str | None:
    beat = out / CLAIMS_DIR / cell / f"attempt-{attempt:06d}.beat"
    return json.loads(beat.read_text())["outcome"]


def test_a_paused_holder_keeps_the_cell_of_the_worker_that_took_over(
    toy, single, tmp_path, monkeypatch
):
    """A holder paused past its lease after its last check: another worker takes the cell over and
    commits it; the paused one, resumed, commits nothing over it and writes no failure."""
    import errorentropy.sweep.worker as worker_module

    out, cell = tmp_path / "out", "gpt2__main__a"
    board = ClaimBoard(out, lease_s=3600)  # heartbeats every 900 s: none while the test runs
    runner = _runner(toy, out, board)
    claim = board.try_claim(cell)
    clock = FakeClock()
    real_write = worker_module.write_result

    def paused_here(directory, *args, **kwargs):  # after the early check, before the rename
        beat = claim.path.with_suffix(".beat")  # its last beat, long ago: the process is paused
        beat.write_text(json.dumps({"beat": 1.0, "outcome": None}))
        other = other_machine(ClaimBoard(out, lease_s=1, clock=clock))
        taken = other.try_claim(cell)
        if taken is None:  # the heartbeat is new to this reader: watched for a lease first
            clock.now += 2
            taken = other.try_claim(cell)
        assert taken is not None and taken.attempt == 2
        shutil.copytree(single / CELLS_DIR / cell, out / CELLS_DIR / cell)
        taken.release("done")
        real_write(directory, *args, **kwargs)

    monkeypatch.setattr(worker_module, "write_result", paused_here)
    runner.compute(runner.cells[cell], claim)
    kept = out / CELLS_DIR / cell
    assert (kept / "timing.json").read_bytes() == (
        single / CELLS_DIR / cell / "timing.json"
    ).read_bytes()
    assert not (kept / "failure.json").exists() and runner.computed == 0 and runner.failed == 0
    assert (_outcome(out, cell, 1), _outcome(out, cell, 2)) == ("superseded", "done")
    assert not [p.name for p in (out / CELLS_DIR).iterdir() if p.name.startswith(".")]
    board.close()


def test_a_failure_is_never_recorded_over_a_verified_cell(toy, single, tmp_path):
    """Two commits interleaved (ENOTEMPTY from the rename), or a failure after another worker
    committed: the verified cell stands."""
    out, cell = tmp_path / "out", "gpt2__main__a"
    shutil.copytree(single / CELLS_DIR / cell, out / CELLS_DIR / cell)
    runner = _runner(toy, out, None)
    error = OSError(errno.ENOTEMPTY, "Directory not empty")
    assert runner.fail(runner.cells[cell], "score", error, None, None) == "superseded"
    assert read_cell(out / CELLS_DIR / cell) is not None
    assert not (out / CELLS_DIR / cell / "failure.json").exists() and runner.failed == 0


def test_a_commit_that_meets_another_commit_at_the_rename_keeps_it(single, tmp_path, monkeypatch):
    """The other worker's folder lands between this one's look and its rename: the rename fails
    (ENOTEMPTY), and the verified cell now there is kept, not counted as an error."""
    from errorentropy.sweep import commit

    cells, cell = tmp_path / "cells", "gpt2__main__a"
    real_rename = os.rename

    def racing(src, dst):
        if Path(dst).name == cell and not Path(dst).exists():
            shutil.copytree(single / CELLS_DIR / cell, dst)
        return real_rename(src, dst)

    monkeypatch.setattr(commit.os, "rename", racing)
    wrote = commit.commit_cell(
        cells,
        cell,
        lambda d: (d / "failure.json").write_text("{}"),
        stands=lambda d: read_cell(d) is not None,
    )
    assert wrote is False and read_cell(cells / cell) is not None
    assert [p.name for p in cells.iterdir()] == [cell]


def test_a_reader_whose_clock_runs_ahead_takes_no_cell_from_a_living_worker(tmp_path):
    """The holder's timestamps are compared with nothing: a heartbeat counts as stale only once
    this reader has seen it unchanged for a whole lease on its own clock."""
    holder = ClaimBoard(tmp_path, lease_s=3600)
    claim = holder.try_claim("c")
    beat = claim.path.with_suffix(".beat")
    behind = time.time() - 10_000  # the holder's clock is hours behind the reader's
    beat.write_text(json.dumps({"beat": behind, "outcome": None}))
    clock = FakeClock()
    reader = other_machine(ClaimBoard(tmp_path, lease_s=10, clock=clock))
    assert reader.try_claim("c") is None
    for _ in range(5):  # a living holder: a new beat (by its clock) within every lease
        clock.now += 8
        behind += 1
        beat.write_text(json.dumps({"beat": behind, "outcome": None}))
        assert reader.try_claim("c") is None
    clock.now += 8
    assert reader.try_claim("c") is None  # 8 s unchanged: within the lease
    clock.now += 3
    taken = reader.try_claim("c")  # 11 s unchanged: dead
    assert taken is not None and taken.attempt == 2 and claim.superseded()
    taken.release("done")
    claim.release("superseded")
    holder.close()


def test_a_held_flock_on_this_machine_never_expires(tmp_path):
    """A paused process on this machine still holds its flock: alive, however old its beat."""
    code = (
        "import sys, time; from errorentropy.sweep.claims import ClaimBoard; "
        f"c = ClaimBoard({str(tmp_path)!r}, lease_s=3600).try_claim('c'); "
        "print(c.attempt, flush=True); time.sleep(600)"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "1"
        os.kill(child.pid, signal.SIGSTOP)
        beat = tmp_path / CLAIMS_DIR / "c" / "attempt-000001.beat"
        beat.write_text(json.dumps({"beat": 1.0, "outcome": None}))  # a clock at 1970
        clock = FakeClock()
        reader = ClaimBoard(tmp_path, lease_s=1, clock=clock)
        for _ in range(3):
            assert reader.try_claim("c") is None
            clock.now += 100
    finally:
        child.kill()
        child.wait()
    claim = reader.try_claim("c")  # the lock went with the process: at once
    assert claim is not None and claim.attempt == 2
    claim.release("done")


def test_a_link_that_succeeded_but_said_eexist_is_a_claim(tmp_path, monkeypatch):
    """NFSv3 answers a retried link() that succeeded with EEXIST: the temporary file's two names
    tell that the claim is ours."""
    from errorentropy.sweep import claims

    real_link = os.link

    def retried(src, dst):
        real_link(src, dst)
        raise FileExistsError(errno.EEXIST, "File exists")

    monkeypatch.setattr(claims.os, "link", retried)
    board = ClaimBoard(tmp_path, lease_s=60)
    claim = board.try_claim("c")
    assert claim is not None and claim.attempt == 1
    assert board.try_claim("c") is None  # and a real loss is still a loss
    other = other_machine(ClaimBoard(tmp_path, lease_s=60))
    assert other.try_claim("c") is None
    claim.release("done")
    assert [p.name for p in (tmp_path / CLAIMS_DIR / "c").iterdir() if p.name.startswith(".")] == []


def test_retry_failed_retries_a_merged_failure_on_the_first_run(toy, single, tmp_path):
    """A failure copied in by merge carries another folder's attempt counter: it is retried on the
    first --retry-failed run, whatever that counter says."""
    from errorentropy.sweep.cells import CellKey, write_failure
    from errorentropy.sweep.run import run_sweep

    source, cell = tmp_path / "elsewhere", "llama__step1__b"
    shutil.copytree(single / CELLS_DIR, source / CELLS_DIR)
    shutil.rmtree(source / CELLS_DIR / cell)
    (source / CELLS_DIR / cell).mkdir()
    key = CellKey("llama", "step1", "b")
    write_failure(
        source / CELLS_DIR / cell,
        key,
        error="boom",
        stage="score",
        attempt=3,
        worker="elsewhere:1:feedbeef",
    )
    out = tmp_path / "out"
    assert merge_sweeps(out, [source]).failures == [cell]
    outcome = run_sweep(toy / "spec.toml", out, progress=False, retry_failed=True)
    assert outcome.computed == 1 and outcome.ok
    assert_same_results(out, single)


# Each worker as if on its own machine (its own kernel boot id): no flock is trusted across
# them, so a paused worker's cells are taken over once its lease runs out.
OWN_MACHINE = (
    "import sys, uuid; import errorentropy.sweep.claims as claims; "
    "claims._boot_id = lambda: 'machine-' + uuid.uuid4().hex; "
    "from errorentropy.cli import main; sys.exit(main(['sweep', *sys.argv[1:]]))"
)


def test_chaos_workers_paused_past_their_lease_again_and_again(toy, single, tmp_path):
    """Three workers on one folder, a 1 s lease; one after another is SIGSTOPped for 1.5-3
    leases (its cells taken over meanwhile) and resumed, until all have exited: every cell as one
    uninterrupted worker made it, no failure, every worker exits 0."""
    import random

    out, lease = tmp_path / "chaos", 1.0
    env = environment(tmp_path, ERRORENTROPY_LEASE_S=str(lease))
    spec = str(toy / "spec.toml")
    command = [sys.executable, "-c", OWN_MACHINE, spec, "--out", str(out), "--quiet"]
    workers = [subprocess.Popen(command, env={**env, WORKER_ENV: f"c{i}"}) for i in range(3)]
    rng, pauses, started = random.Random(17), 0, time.monotonic()
    try:
        while any(p.poll() is None for p in workers):
            assert time.monotonic() - started < 300, "the workers never finished"
            time.sleep(rng.uniform(0.1, 0.5))
            living = [p for p in workers if p.poll() is None]
            if not living:
                break
            victim = rng.choice(living)
            os.kill(victim.pid, signal.SIGSTOP)
            time.sleep(lease * rng.uniform(1.5, 3.0))
            os.kill(victim.pid, signal.SIGCONT)
            pauses += 1
    finally:
        for p in workers:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGCONT)
                p.kill()
    assert [p.wait() for p in workers] == [0, 0, 0]
    assert_same_results(out, single)
    for cell in (single / CELLS_DIR).iterdir():
        mine = out / CELLS_DIR / cell.name
        assert (mine / "histogram.json").read_bytes() == (cell / "histogram.json").read_bytes()
        assert not (mine / "failure.json").exists()
    outcomes = [str(r["outcome"]) for records in attempts(out).values() for r in records]
    print(
        f"chaos: {pauses} pauses, {time.monotonic() - started:.1f} s, outcomes "
        f"{sorted((o, outcomes.count(o)) for o in set(outcomes))}",
        file=sys.stderr,
    )


def test_a_release_whose_heartbeat_file_was_deleted_still_lets_go(tmp_path, monkeypatch):
    """A paused holder's half-written heartbeat is deleted by the worker that took its cell over
    (claims._clean_older); the holder, resumed, finishes its release without an error and drops
    its lock."""
    import errorentropy.sweep.claims as claims

    board = ClaimBoard(tmp_path, lease_s=3600)
    claim = board.try_claim("c")
    assert claim is not None

    def deleted_under_it(path, text):
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(path))

    monkeypatch.setattr(claims, "atomic_write_text", deleted_under_it)
    claim.release("superseded")  # raised FileNotFoundError out of the worker before the fix
    monkeypatch.undo()
    assert claim.outcome is None  # nothing was written, and nothing claims it was
    board.close()
    again = ClaimBoard(tmp_path, lease_s=3600).try_claim("c")  # the lock went with the release
    assert again is not None and again.attempt == 2
    again.release("done")


def test_a_claim_taken_over_while_its_first_heartbeat_was_written_is_lost(tmp_path, monkeypatch):
    """Paused between its attempt file and its first heartbeat, past the lease: another worker
    made the next attempt and deleted the half-written heartbeat. The claim is lost, quietly."""
    import errorentropy.sweep.claims as claims

    board = ClaimBoard(tmp_path, lease_s=3600)

    def taken_over_meanwhile(path, text):
        (path.parent / "attempt-000002.json").write_text("{}\n")
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(path))

    monkeypatch.setattr(claims, "atomic_write_text", taken_over_meanwhile)
    assert board.try_claim("c") is None
    # Not taken over: the error is real (a full disk), and it is raised.
    monkeypatch.setattr(
        claims,
        "atomic_write_text",
        lambda path, text: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left")),
    )
    with pytest.raises(OSError, match="No space"):
        board.try_claim("d")
