"""The tiny demo end to end (tokenizer, ladder, sweep, fits, report), its cache, and its pieces."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from errorentropy.cli import main
from errorentropy.demo import data, ladder, pipeline
from errorentropy.demo.settings import DEFAULT_SIZES, tiny_settings
from errorentropy.demo.tokenizer import train_bpe_tokenizer
from errorentropy.demo.training import (
    ModelShape,
    TrainSettings,
    checkpoint_steps,
    learning_rate,
    pack_tokens,
    parse_shapes,
    token_blocks,
)
from errorentropy.errors import UserError


def _histograms(sweep: Path) -> dict[str, str]:
    return {
        p.parent.name: p.read_text() for p in sorted((sweep / "cells").glob("*/histogram.json"))
    }


def _checkpoint_cells(histograms: dict[str, str]) -> dict[str, str]:
    """The sweep's own cells (checkpoint steps), without the dense cells copied in."""
    steps = {f"__step{s}__" for s in tiny_settings().checkpoints}
    return {k: v for k, v in histograms.items() if any(s in k for s in steps)}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dict[str, float]]:
    out = tmp_path_factory.mktemp("demo")
    summary = pipeline.run_demo(
        out, tiny_settings(), device="cpu", progress=False, log=lambda m: None
    )
    mtimes = {str(p): p.stat().st_mtime_ns for p in out.rglob("model.safetensors")}
    return out, summary, mtimes


def test_tiny_demo_builds_models_spec_sweep_and_report(tiny_run: tuple[Path, dict, dict]) -> None:
    out, summary, _ = tiny_run
    from transformers import AutoModelForCausalLM

    from errorentropy.models.loading import resolve_revision
    from errorentropy.sweep.cells import load_cells
    from errorentropy.sweep.spec import load_spec

    settings = tiny_settings()
    names = [s.name for s in settings.shapes]
    assert [m["name"] for m in summary["models"]] == names
    params = [m["non_embedding_params"] for m in summary["models"]]
    assert params == sorted(params) and len(set(params)) == len(params)
    # every checkpoint is a from_pretrained folder reachable as a revision; step 0 differs from the
    # end
    folder = out / "models" / names[-1]
    source, _ = resolve_revision(str(folder), "step0")
    first = AutoModelForCausalLM.from_pretrained(source)
    last = AutoModelForCausalLM.from_pretrained(str(folder))
    end, _ = resolve_revision(str(folder), f"step{settings.steps}")
    final_ckpt = AutoModelForCausalLM.from_pretrained(end)
    for a, b in zip(last.state_dict().values(), final_ckpt.state_dict().values()):
        assert np.array_equal(a.numpy(), b.numpy())
    assert any(
        not np.array_equal(a.numpy(), b.numpy())
        for a, b in zip(first.state_dict().values(), last.state_dict().values())
    )
    # the spec names every model and checkpoint and both held-out corpora
    spec = load_spec(out / "sweep.toml")
    assert [m.label for m in spec.models] == names
    assert all(m.revisions == tuple(f"step{s}" for s in settings.checkpoints) for m in spec.models)
    assert sorted(d.label for d in spec.datasets) == ["code", "prose"]
    for d in spec.datasets:
        lines = Path(d.source).read_text().splitlines()
        assert len(lines) == settings.eval_docs
    # every cell done, with the step recorded and the identity holding
    cells = load_cells(out / "sweep")
    between = [s for s in settings.dense_steps if s not in settings.checkpoints]
    assert between and set(settings.checkpoints) <= set(settings.dense_steps)
    assert len(cells) == len(names) * (len(settings.checkpoints) * 2 + len(between))
    assert {c.step for c in cells if c.key.dataset == "code"} == set(settings.checkpoints)
    # held-out prose is scored densely during training: every dense step is a prose cell
    assert {c.step for c in cells if c.key.dataset == "prose"} == set(settings.dense_steps)
    for c in cells:
        s = c.summary
        assert math.isclose(
            s["cross_entropy"],
            s["error_entropy"] + s["self_alignment"] - s["confidence"],
            abs_tol=1e-9,
        )
    # step-0 models are near uniform over the vocabulary; training lowers CE for every model
    for name in names:
        ce = {
            c.step: c.summary["cross_entropy"]
            for c in cells
            if c.key.model == name and c.key.dataset == "prose"
        }
        assert ce[settings.steps] < ce[0]
    analysis = summary["analysis"]
    assert Path(analysis["report_html"]).exists() and Path(analysis["report_md"]).exists()


def test_tiny_demo_second_run_reuses_everything(tiny_run: tuple[Path, dict, dict]) -> None:
    out, first, mtimes = tiny_run
    before = _histograms(out / "sweep")
    logs: list[str] = []
    summary = pipeline.run_demo(out, tiny_settings(), device="cpu", progress=False, log=logs.append)
    assert summary["analysis"]["cells"]["computed_now"] == 0
    assert sum(line.startswith("model") and "reusing" in line for line in logs) == len(
        tiny_settings().shapes
    )
    assert any(line.startswith("tokenizer: reusing") for line in logs) and any(
        line.startswith("report: reusing") for line in logs
    )
    assert {str(p): p.stat().st_mtime_ns for p in out.rglob("model.safetensors")} == mtimes
    assert _histograms(out / "sweep") == before
    assert summary["final"] == first["final"]


def test_a_copied_demo_folder_points_at_its_own_report(
    tiny_run: tuple[Path, dict, dict], tmp_path: Path
) -> None:
    """The report record holds absolute paths: a copy must redraw its own report, not send the
    user to the original folder's."""
    import shutil

    out, first, _ = tiny_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    logs: list[str] = []
    summary = pipeline.run_demo(
        copy, tiny_settings(), device="cpu", progress=False, log=logs.append
    )
    assert Path(summary["analysis"]["report_html"]).resolve().parent == (copy / "sweep").resolve()
    assert not any(line.startswith("report: reusing") for line in logs)
    assert summary["final"] == first["final"]


def test_same_seed_same_numbers_and_changed_settings_redo(
    tiny_run: tuple[Path, dict, dict], tmp_path: Path
) -> None:
    """A fresh folder with the same seed retrains to byte-identical histograms; a changed learning
    rate retrains and recomputes that model's cells (one model and no report, to keep it short)."""
    out, _, _ = tiny_run
    settings = tiny_settings()
    one = replace(settings, shapes=settings.shapes[:1])
    pipeline.run_demo(tmp_path, one, device="cpu", progress=False, log=lambda m: None, report=False)
    before = _histograms(tmp_path / "sweep")
    reference = _histograms(out / "sweep")
    assert before and all(reference[k] == v for k, v in before.items())

    logs: list[str] = []
    summary = pipeline.run_demo(
        tmp_path,
        replace(one, lr=one.lr / 3),
        device="cpu",
        progress=False,
        log=logs.append,
        report=False,
    )
    assert not any(line.startswith("model") and "reusing" in line for line in logs)
    assert summary["analysis"]["cells"]["computed_now"] == len(_checkpoint_cells(before))
    after = _histograms(tmp_path / "sweep")
    step0 = [k for k in before if "__step0__" in k]
    assert step0 and all(after[k] == before[k] for k in step0)  # same initialisation
    assert any(after[k] != before[k] for k in before if k not in step0)


def test_dense_points_at_checkpoints_equal_the_sweep_cells_exactly(
    tiny_run: tuple[Path, dict, dict],
) -> None:
    """The held-out prose scored during training (in memory, the training process's threads) at
    a checkpoint step gives the very counts and log-probability sums of the sweep's cell for
    that checkpoint (loaded from disk): same documents, same settings, bit for bit."""
    from errorentropy.stats.histogram import RankHistogram
    from errorentropy.sweep.cells import load_cells

    out, summary, _ = tiny_run
    settings = tiny_settings()
    compared = 0
    for model in summary["models"]:
        assert model["dense_score_seconds"] > 0
        for step in settings.checkpoints:
            cell = f"{model['name']}__step{step}__prose"
            dense = RankHistogram.load(out / "dense" / "cells" / cell / "histogram.json")
            swept = RankHistogram.load(out / "sweep" / "cells" / cell / "histogram.json")
            assert dense.n_tokens > 0
            assert np.array_equal(dense.counts, swept.counts)
            assert np.array_equal(dense.logprob_sums, swept.logprob_sums)
            a = json.loads((out / "dense" / "cells" / cell / "summary.json").read_text())
            b = json.loads((out / "sweep" / "cells" / cell / "summary.json").read_text())
            for key in ("cross_entropy", "error_entropy", "data_fingerprint", "max_length"):
                assert a[key] == b[key]
            compared += 1
    assert compared == len(summary["models"]) * len(settings.checkpoints)
    # the dense cells the report draws hold the same comparable settings as the sweep's
    from errorentropy.sweep.cells import mixed_settings

    assert mixed_settings(list(load_cells(out / "sweep"))) is None
    # and the sweep does not call them orphans of its spec: no spec planned them
    from errorentropy.sweep.plan import orphan_cells
    from errorentropy.sweep.spec import load_spec

    spec_file = out / "sweep.toml"
    assert orphan_cells(load_spec(spec_file), out / "sweep") == []


def test_dense_scoring_leaves_training_unchanged(tmp_path: Path) -> None:
    """Scoring during training draws no random numbers and restores the train mode: the weights
    and losses equal a run without it, bit for bit."""
    import torch
    from transformers import AutoTokenizer

    from errorentropy.demo.training import neox_config, train_model
    from errorentropy.integrations.transformers import score_texts
    from errorentropy.options import ScoreOptions

    settings = tiny_settings()
    splits = data.load_splits(settings.seed)
    tokenizer = train_bpe_tokenizer(data.tokenizer_texts(splits, 40), 384)
    tokenizer.save_pretrained(str(tmp_path / "tok"))
    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path / "tok"))
    blocks = data.training_blocks(tokenizer, splits, settings)
    config = neox_config(settings.shapes[0], len(tokenizer), settings.block)
    docs = splits["builtin:prose"].heldout[:4]
    modes: list[bool] = []

    def on_eval(step: int, model: torch.nn.Module) -> None:
        score_texts(model, tokenizer, docs, ScoreOptions(max_length=16, batch_size=2))
        modes.append(model.training)

    runs = []
    for hook in (None, on_eval):
        model, losses = train_model(
            config,
            blocks,
            settings.train_settings(),
            lambda step, m: None,
            checkpoints=(),
            progress=False,
            on_eval=hook,
            eval_steps=(0, 1, 5, 12),
        )
        runs.append((model.state_dict(), losses))
    assert modes == [True] * 4
    (a, loss_a), (b, loss_b) = runs
    assert loss_a == loss_b
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_heldout_heads_tokenize_like_the_whole_documents(tiny_run: tuple[Path, dict, dict]) -> None:
    from transformers import AutoTokenizer

    out, _, _ = tiny_run
    settings = tiny_settings()
    tokenizer = AutoTokenizer.from_pretrained(str(out / "tokenizer"))
    splits = data.load_splits(settings.seed)
    for corpus, split in splits.items():
        rows = [
            json.loads(line)["text"]
            for line in (out / "data" / f"heldout-{data.corpus_label(corpus)}.jsonl")
            .read_text()
            .splitlines()
        ]
        for head, whole in zip(rows, split.heldout[: settings.eval_docs]):
            assert whole.startswith(head)
            full = tokenizer(whole, add_special_tokens=False)["input_ids"][: settings.max_length]
            assert (
                tokenizer(head, add_special_tokens=False)["input_ids"][: settings.max_length]
                == full
            )


# ---- pieces ------------------------------------------------------------------------------------


def test_checkpoint_steps_are_log_spaced_from_zero() -> None:
    assert checkpoint_steps(384, 5) == [0, 3, 11, 36, 117, 384]
    assert checkpoint_steps(1, 5) == [0, 1]
    steps = checkpoint_steps(100000, 5)
    ratios = np.diff(np.log(steps[1:]))
    assert steps[0] == 0 and steps[-1] == 100000 and np.allclose(ratios, ratios[0], rtol=0.05)


def test_blocks_are_a_seeded_shuffle_of_the_packed_stream() -> None:
    stream = pack_tokens([[1, 2, 3], [4, 5], [6]], eos_id=0)
    assert stream.tolist() == [1, 2, 3, 0, 4, 5, 0, 6, 0]
    long = np.arange(100)
    a, b = token_blocks(long, 10, 25, seed=3), token_blocks(long, 10, 25, seed=3)
    assert np.array_equal(a, b)
    assert sorted(map(tuple, a[:10].tolist())) == [
        tuple(range(i, i + 10)) for i in range(0, 100, 10)
    ]  # one epoch, then the next
    assert not np.array_equal(token_blocks(long, 10, 10, seed=4), a[:10])


def test_learning_rate_warms_up_then_decays_to_the_floor() -> None:
    s = TrainSettings(steps=100, batch_size=1, block=8, lr=1e-3, warmup=10)
    lrs = [learning_rate(i, s) for i in range(100)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert all(x >= y for x, y in zip(lrs[10:], lrs[11:]))
    assert learning_rate(100, s) == pytest.approx(1e-4)


def test_split_keeps_each_source_on_one_side_and_drops_copies() -> None:
    """A module's docstrings (prose) and its code are held out together; empty documents, exact
    copies of training text and near-copies (most long lines in training) never count as held
    out."""
    line = "x = compute_something_long(argument_one, argument_two)"
    prose = [
        (f"m{i}.py", f"Docstring of module {i}, which says what module {i} does.")
        for i in range(40)
    ] + [("topic:if", "The if statement chooses."), ("e.py", " ")]
    code = [
        (f"m{i}.py", f"# module {i}\n{line} + {i}\nvalue_{i} = function_{i}(long_name_{i})\n")
        for i in range(40)
    ]
    code += [
        ("twin.py", code[0][1]),
        ("near.py", f"{line} + 0\n{line} + 1\n{line} + 2\nunique_line_that_is_long_enough = 1\n"),
        ("e.py", ""),
    ]
    sources = {"builtin:prose": prose, "builtin:code": code}
    a, b = (
        data.split_by_source(sources, seed=3, fraction=0.5),
        data.split_by_source(sources, seed=3, fraction=0.5),
    )
    assert a == b
    held_modules = {
        f"m{i}.py"
        for i in range(40)
        if any(f"module {i}," in d for d in a["builtin:prose"].heldout)
    }
    for i in range(40):  # both halves of a module on the same side
        in_code_held = any(d.startswith(f"# module {i}\n") for d in a["builtin:code"].heldout)
        in_code_train = any(d.startswith(f"# module {i}\n") for d in a["builtin:code"].train)
        assert in_code_held == (f"m{i}.py" in held_modules) or (
            in_code_held is False and in_code_train is False
        )
    for split in a.values():
        assert set(split.heldout).isdisjoint(split.train) and all(
            d.strip() for d in split.heldout + split.train
        )
    all_train = set(a["builtin:prose"].train) | set(a["builtin:code"].train)
    assert not any(d in all_train for s in a.values() for d in s.heldout)
    # near.py shares 3 of its 4 long lines with the modules' code; whichever side those are on, it
    # is never held out beside them
    near = next(d for k, d in code if k == "near.py")
    train_lines = {
        x.strip()
        for d in a["builtin:code"].train + a["builtin:prose"].train
        for x in d.splitlines()
    }
    shared = sum(x.strip() in train_lines for x in near.splitlines())
    assert (near in a["builtin:code"].heldout) == (
        shared <= 2 and near not in a["builtin:code"].train
    )


def test_parse_shapes_and_default_ladder_span() -> None:
    import torch
    from transformers import GPTNeoXForCausalLM

    from errorentropy.demo.training import neox_config
    from errorentropy.models.loading import count_parameters

    assert parse_shapes("16x1, 64x2") == [ModelShape(16, 1), ModelShape(64, 2)]
    for bad in ("16", "ax2", "16x0", "16x1,16x1", "", "100x2"):
        with pytest.raises(UserError):
            parse_shapes(bad)
    shapes = parse_shapes(DEFAULT_SIZES)
    assert len(shapes) >= 6
    with torch.device("meta"):
        counts = [
            count_parameters(GPTNeoXForCausalLM(neox_config(s, 4096, 128))).non_embedding
            for s in shapes
        ]
    assert counts == sorted(counts) and counts[-1] / counts[0] >= 100


def test_cli_rejects_bad_options_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--out", str(tmp_path / "d"), "--steps", "3", "--tokens", "100"]) == 2
    assert "--steps and --tokens" in capsys.readouterr().err
    assert main(["demo", "--out", str(tmp_path / "d"), "--sizes", "16y1"]) == 2
    assert "HIDDENxLAYERS" in capsys.readouterr().err
    assert main(["demo", "--out", str(tmp_path / "d"), "--max-length", "512"]) == 2
    assert "--max-length" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main(["demo", "--tiny", "--out", str(tmp_path / "file")]) == 2
    assert "is a file" in capsys.readouterr().err


def test_worker_processes_train_the_same_weights_as_one_process(
    tiny_run: tuple[Path, dict, dict], tmp_path: Path
) -> None:
    """The CPU ladder trains in spawned worker processes (one thread each); the weights equal an
    in-process run of the same job bit for bit, whatever the process's own thread count, so the
    cache may serve either (a model retrained alone after a kill gets the ladder's weights)."""
    import torch
    from safetensors.numpy import load_file
    from transformers import AutoTokenizer

    from errorentropy.demo.training import neox_config

    out, _, _ = tiny_run
    settings = tiny_settings()
    tokenizer = AutoTokenizer.from_pretrained(str(out / "tokenizer"))
    blocks = data.training_blocks(tokenizer, data.load_splits(settings.seed), settings)

    def job(shape: ModelShape, root: Path) -> ladder.TrainJob:
        config = neox_config(
            shape, len(tokenizer), settings.block, bos_eos_id=tokenizer.eos_token_id
        ).to_dict()
        return ladder.TrainJob(
            shape, root / shape.name, config, "k", settings, blocks, out / "tokenizer", "cpu", 1
        )

    shapes = settings.shapes[:2]
    done = ladder._train_parallel(
        [job(s, tmp_path / "pool") for s in shapes], 2, False, lambda m: None
    )
    assert sorted(done) == sorted(s.name for s in shapes)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the process's own count must not matter: the job says 1
    try:
        ladder.train_one(job(shapes[0], tmp_path / "here"), None, False)
        assert torch.get_num_threads() == 2  # and it is restored
    finally:
        torch.set_num_threads(threads)
    a = load_file(str(tmp_path / "pool" / shapes[0].name / "model.safetensors"))
    b = load_file(str(tmp_path / "here" / shapes[0].name / "model.safetensors"))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_a_size_left_out_of_the_ladder_leaves_the_sweep(
    tiny_run: tuple[Path, dict, dict], tmp_path: Path
) -> None:
    import shutil

    out, _, _ = tiny_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    settings = tiny_settings()
    dropped = settings.shapes[-1].name
    assert any(p.name.startswith(dropped + "__") for p in (copy / "sweep" / "cells").iterdir())
    pipeline.run_demo(
        copy,
        replace(settings, shapes=settings.shapes[:-1]),
        device="cpu",
        progress=False,
        log=lambda m: None,
        report=False,
    )
    names = [p.name for p in (copy / "sweep" / "cells").iterdir()]
    assert names and not any(n.startswith(dropped + "__") for n in names)
