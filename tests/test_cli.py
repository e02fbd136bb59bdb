"""The command line, in-process and as a real subprocess."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from errorentropy.cli import main
from errorentropy.stats.histogram import RankHistogram


def last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory, short_docs):
    path = tmp_path_factory.mktemp("data") / "docs.jsonl"
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in short_docs), encoding="utf-8")
    return path


def test_score_writes_results_and_prints_the_summary_last(model_dir, corpus_file, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(
        [
            "score",
            "--model",
            str(model_dir),
            "--data",
            str(corpus_file),
            "--max-length",
            "64",
            "--batch-size",
            "3",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0
    summary = last_json(capsys.readouterr().out)
    saved = json.loads((out / "summary.json").read_text())
    assert summary == saved
    for key in (
        "n_tokens",
        "n_documents",
        "n_skipped",
        "cross_entropy",
        "error_entropy",
        "self_alignment",
        "confidence",
        "model",
        "revision",
        "dtype",
        "data",
        "data_fingerprint",
        "samples",
        "seed",
        "max_length",
        "window",
        "bos",
        "errorentropy_version",
    ):
        assert key in summary
    assert summary["n_skipped"] == 1 and summary["n_documents"] == 11
    assert (
        abs(
            summary["cross_entropy"]
            - (summary["error_entropy"] + summary["self_alignment"] - summary["confidence"])
        )
        < 1e-9
    )
    hist = RankHistogram.load(out / "histogram.json")
    assert hist.n_tokens == summary["n_tokens"]
    with np.load(out / "tokens.npz") as tokens:
        assert tokens["rank"].size == summary["n_tokens"]
        assert -tokens["logprob"].mean() == pytest.approx(summary["cross_entropy"], rel=1e-12)


def test_decompose_merges_stride_shards_into_the_whole(model_dir, corpus_file, tmp_path, capsys):
    lines = corpus_file.read_text().splitlines(keepends=True)
    parts = []
    for name, chunk in (("a", lines[:5]), ("b", lines[5:])):
        data = tmp_path / f"{name}.jsonl"
        data.write_text("".join(chunk))
        out = tmp_path / name
        assert (
            main(
                [
                    "score",
                    "--model",
                    str(model_dir),
                    "--data",
                    str(data),
                    "--max-length",
                    "16",
                    "--window",
                    "stride",
                    "--stride",
                    "8",
                    "--out",
                    str(out),
                    "--quiet",
                ]
            )
            == 0
        )
        parts.append(out)
    whole = tmp_path / "whole"
    assert (
        main(
            [
                "score",
                "--model",
                str(model_dir),
                "--data",
                str(corpus_file),
                "--max-length",
                "16",
                "--window",
                "stride",
                "--stride",
                "8",
                "--out",
                str(whole),
                "--quiet",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["decompose", *map(str, parts)]) == 0
    merged = last_json(capsys.readouterr().out)
    expected = json.loads((whole / "summary.json").read_text())
    assert merged["n_tokens"] == expected["n_tokens"]
    for key in ("cross_entropy", "error_entropy", "self_alignment", "confidence"):
        assert merged[key] == pytest.approx(expected[key], rel=1e-9)
    # the settings the shards share are carried over; the data files are listed
    assert (merged["model"], merged["max_length"], merged["window"], merged["stride"]) == (
        str(model_dir),
        16,
        "stride",
        8,
    )
    assert merged["data"] == [str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")]
    # the same result twice, or the same documents twice, would be counted twice: refused
    assert main(["decompose", str(parts[0]), str(parts[0] / "histogram.json")]) == 2
    assert "are the same result" in capsys.readouterr().err
    copy = tmp_path / "a-copy"
    shutil.copytree(parts[0], copy)
    assert main(["decompose", str(parts[0]), str(copy)]) == 2
    assert "scored the same documents" in capsys.readouterr().err
    # other scoring settings: refused unless asked for
    other = tmp_path / "other"
    assert (
        main(
            [
                "score",
                "--model",
                str(model_dir),
                "--data",
                str(tmp_path / "b.jsonl"),
                "--max-length",
                "12",
                "--out",
                str(other),
                "--quiet",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["decompose", str(parts[0]), str(other)]) == 2
    err = capsys.readouterr().err
    assert "differ in max_length" in err and "--allow-mixed" in err and err.count("\n") == 1
    assert main(["decompose", str(parts[0]), str(other), "--allow-mixed"]) == 0


def test_params_from_config_alone(tmp_path, capsys):
    from transformers import GPT2Config, GPTNeoXConfig

    configs = {
        "gpt2": (GPT2Config(), 85_056_000),
        "pythia-160m": (
            GPTNeoXConfig(
                hidden_size=768,
                num_hidden_layers=12,
                num_attention_heads=12,
                intermediate_size=3072,
                vocab_size=50304,
                rotary_pct=0.25,
                tie_word_embeddings=False,
            ),
            85_056_000,
        ),
        "pythia-14m": (
            GPTNeoXConfig(
                hidden_size=128,
                num_hidden_layers=6,
                num_attention_heads=4,
                intermediate_size=512,
                vocab_size=50304,
                rotary_pct=0.25,
                tie_word_embeddings=False,
            ),
            1_189_888,
        ),
    }
    for name, (config, expected) in configs.items():
        config.save_pretrained(tmp_path / name)
        assert main(["params", str(tmp_path / name)]) == 0
        counts = last_json(capsys.readouterr().out)
        assert counts["non_embedding"] == expected, name
        assert counts["total"] == counts["embedding"] + counts["non_embedding"]


def test_subprocess_entry_point_and_one_line_errors(model_dir, corpus_file, tmp_path):
    ok = subprocess.run(
        [
            sys.executable,
            "-m",
            "errorentropy",
            "score",
            "--model",
            str(model_dir),
            "--data",
            str(corpus_file),
            "--max-length",
            "32",
            "--samples",
            "4",
            "--seed",
            "0",
            "--out",
            str(tmp_path / "r"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ok.returncode == 0, ok.stderr
    assert last_json(ok.stdout)["samples"] == 4
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "errorentropy",
            "score",
            "--model",
            str(tmp_path / "nope"),
            "--data",
            str(corpus_file),
            "--out",
            str(tmp_path / "x"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode != 0
    assert (
        bad.stderr.strip().count("\n") == 0
        and "does not exist" in bad.stderr
        and "Traceback" not in bad.stderr
    )
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--max-length", "4096"], "exceeds the model's context"),
        (["--data", "nowhere-preset"], "unknown data"),
        (["--samples", "0"], "integer >= 1"),
        (["--seed", "1.5"], "expected an integer"),
    ],
)
def test_bad_options_are_one_line(model_dir, corpus_file, tmp_path, capsys, extra, message):
    argv = [
        "score",
        "--model",
        str(model_dir),
        "--data",
        str(corpus_file),
        "--out",
        str(tmp_path / "o"),
        "--quiet",
        *extra,
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_all_documents_skipped(model_dir, tmp_path, capsys):
    data = tmp_path / "tiny.jsonl"
    data.write_text('{"text": "a"}\n{"text": ""}\n')
    assert (
        main(
            [
                "score",
                "--model",
                str(model_dir),
                "--data",
                str(data),
                "--max-length",
                "64",
                "--out",
                str(tmp_path / "o"),
                "--quiet",
            ]
        )
        == 2
    )
    assert "every document" in capsys.readouterr().err
