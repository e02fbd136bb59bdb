"""The flat public API: ``import errorentropy as ee``; ``ee.score``, the ``score`` command's twin.

``ee.score`` must give the command's numbers to the last bit (its summary, histogram, tokens and
profile), take the command's options as keywords with the command's checks, shard under torchrun,
and ``import errorentropy`` must stay light (no torch until a name needs it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import errorentropy as ee
from errorentropy.cli import main
from errorentropy.stats.histogram import RankHistogram
from errorentropy.stats.profile import RankProfile
from errorentropy.stats.tokens import TokenTable

TIMINGS = ("elapsed_s", "tokens_per_s")


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory, short_docs) -> Path:
    path = tmp_path_factory.mktemp("api-data") / "docs.jsonl"
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in short_docs), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def loaded(model_dir):
    return ee.load_model(str(model_dir))


def as_flags(options: dict) -> list[str]:
    flags: list[str] = []
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        flags += [flag] if value is True else [flag, str(value)]
    return flags


@pytest.mark.parametrize(
    "options",
    [
        {"max_length": 64, "batch_size": 3},
        {"max_length": 24, "window": "stride", "stride": 10, "bos": "always", "profile": True},
    ],
    ids=["truncate", "stride-profile"],
)
def test_score_gives_the_score_commands_result_to_the_last_bit(
    options, model_dir, corpus_file, loaded, tmp_path, capsys
):
    out = tmp_path / "run"
    command = ["score", "--model", str(model_dir), "--data", str(corpus_file), "--out", str(out)]
    assert main([*command, *as_flags(options), "--quiet"]) == 0
    capsys.readouterr()
    saved = json.loads((out / "summary.json").read_text())

    model, tokenizer = loaded
    scored = ee.score(model, tokenizer, ee.load_corpus(str(corpus_file)), **options)

    summary = scored.summary
    assert list(summary) == list(saved)  # the same fields, in the same order
    numeric = [k for k, v in saved.items() if isinstance(v, (int, float)) and k not in TIMINGS]
    assert {"cross_entropy", "error_entropy", "n_tokens", "max_length"} <= set(numeric)
    for key in numeric:
        assert summary[key] == saved[key], key  # exact, not approximately
    for key in saved:
        if key not in TIMINGS:  # the settings too: model, revision, data, notes, head path, ...
            assert summary[key] == saved[key], key
    hist = RankHistogram.load(out / "histogram.json")
    assert np.array_equal(hist.counts, scored.histogram.counts)
    assert np.array_equal(hist.logprob_sums, scored.histogram.logprob_sums)  # bit for bit
    assert hist.equals(scored.histogram)
    tokens = TokenTable.load(out / "tokens.npz")
    for name in ("doc", "position", "rank", "logprob"):
        assert np.array_equal(getattr(tokens, name), getattr(scored.tokens, name)), name
    if options.get("profile"):
        profile = RankProfile.load(out / "profile.json")
        assert scored.profile is not None
        assert np.array_equal(profile.counts, scored.profile.counts)
        assert np.array_equal(profile.sums, scored.profile.sums)
    else:
        assert scored.profile is None and not (out / "profile.json").exists()
    assert scored.decompose().cross_entropy == saved["cross_entropy"]


def test_a_list_of_documents_and_a_model_loaded_elsewhere(model_dir, corpus_file, short_docs):
    """A plain list scores the same documents as the corpus file; a model from transformers
    itself is named by its config and has no known revision."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    corpus = ee.load_corpus(str(corpus_file))
    from_list = ee.score(model, tokenizer, list(short_docs), max_length=64).summary
    from_corpus = ee.score(model, tokenizer, corpus, max_length=64).summary
    assert (from_list["model"], from_list["revision"]) == (str(model_dir), None)
    assert from_list["data"] is None and from_list["n_documents_available"] == len(short_docs)
    assert from_list["data_fingerprint"] == corpus.fingerprint
    for key in ("n_tokens", "cross_entropy", "error_entropy", "self_alignment", "confidence"):
        assert from_list[key] == from_corpus[key]
    from_tuple = ee.score(model, tokenizer, tuple(short_docs), max_length=64).summary
    assert from_tuple["n_tokens"] == from_list["n_tokens"]


CALL = "errorentropy.score(): "


@pytest.mark.parametrize(
    ("corpus", "options", "message"),
    [
        (["text"], {"max_lenght": 64}, CALL + "unknown option 'max_lenght'; did you mean"),
        (["text"], {"max_length": "64"}, CALL + "max_length must be an integer, got '64'"),
        (["text"], {"window": "stride"}, CALL + "window='stride' needs stride=K (1 <= K"),
        (["text"], {"head": "fast"}, CALL + "head must be one of auto, chunked, fused, full"),
        (["text"], {"batch_size": 0}, CALL + "batch_size must be >= 1, got 0"),
        ("one string", {}, CALL + "corpus must be a Corpus (errorentropy.load_corpus) or"),
        ([], {}, CALL + "no documents to score"),
        (["fine", 3], {}, CALL + "every document must be a str; corpus[1] is int 3"),
        (["a"], {"max_length": 8}, "every document of the given list was skipped"),
    ],
)
def test_bad_options_and_corpora_are_one_line_errors(loaded, corpus, options, message):
    model, tokenizer = loaded
    with pytest.raises(ee.UserError) as caught:
        ee.score(model, tokenizer, corpus, **options)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_every_document_too_short_names_the_fix_in_python_terms(loaded):
    model, tokenizer = loaded
    with pytest.raises(ee.UserError, match=r"use longer documents or bos='always'$"):
        ee.score(model, tokenizer, ["a", "b"], max_length=8)


def run_python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    return done.stdout.strip()


def test_import_is_light_and_every_public_name_resolves():
    assert run_python("import errorentropy, sys; print('torch' in sys.modules)") == "False"
    missing = [name for name in ee.__all__ if getattr(ee, name, None) is None]
    assert not missing
    assert set(ee.__all__) <= set(dir(ee))
    assert ee.score.__module__ == "errorentropy.scoring.api" and ee.RankHistogram is RankHistogram
    with pytest.raises(AttributeError, match="has no attribute 'scroe'"):
        _ = ee.scroe  # noqa: B018


def test_token_stats_is_the_function_whatever_imported_its_module_first():
    """``errorentropy.head.token_stats`` names both a module and its function; the package keeps the
    function, even when the module was imported first (as RankHistogram.update does)."""
    code = (
        "import sys, errorentropy.head.token_stats, errorentropy as ee\n"
        "from errorentropy.stats.histogram import RankHistogram\n"
        "module = sys.modules['errorentropy.head.token_stats']\n"
        "print(ee.token_stats is module.token_stats, callable(ee.token_stats))"
    )
    assert run_python(code) == "True True"


def test_the_version_is_defined_once_and_the_package_is_typed():
    from importlib.metadata import version

    assert ee.__version__ == version("errorentropy")
    assert (Path(ee.__file__).parent / "py.typed").is_file()
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert 'errorentropy = ["py.typed"]' in pyproject


TORCHRUN_SCRIPT = """
import json, os, sys
import errorentropy as ee
from errorentropy.scoring.distributed import conclude

model, tokenizer = ee.load_model(sys.argv[1], device="cpu")
result = ee.score(model, tokenizer, ee.load_corpus(sys.argv[2]), max_length=64, batch_size=3)
rank = int(os.environ.get("RANK", "0"))
result.tokens.save(f"{sys.argv[3]}/tokens-{rank}.npz")
print(json.dumps({"rank": rank, **result.summary}))
status = conclude(0)  # leave the group together, then exit at once (as the command line does)
sys.stdout.flush()
os._exit(status)
"""


def test_score_shards_under_torchrun_like_the_command(tmp_path, model_dir, corpus_file):
    """Two torchrun processes: each receives the merged result, equal to one process's."""
    script = tmp_path / "score.py"
    script.write_text(TORCHRUN_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    args = [str(script), str(model_dir), str(corpus_file)]
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    (one,) = _summaries([sys.executable, *args, str(tmp_path / "one")], env)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    two = _summaries([*torchrun, "--nproc-per-node", "2", *args, str(tmp_path / "two")], env)
    assert sorted(s["rank"] for s in two) == [0, 1]
    for summary in two:
        assert summary["processes"] == 2 and one["processes"] == 1
        for key in ("n_tokens", "n_documents", "n_skipped", "n_ranks_observed", "data_fingerprint"):
            assert summary[key] == one[key], key
        for key in ("cross_entropy", "error_entropy", "self_alignment", "confidence"):
            assert summary[key] == pytest.approx(one[key], rel=0, abs=1e-12), key
        tokens = TokenTable.load(tmp_path / "two" / f"tokens-{summary['rank']}.npz")
        single = TokenTable.load(tmp_path / "one" / "tokens-0.npz")
        for name in ("doc", "position", "rank", "logprob"):
            assert np.array_equal(getattr(tokens, name), getattr(single, name)), name


def _summaries(command: list[str], env: dict[str, str]) -> list[dict]:
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
