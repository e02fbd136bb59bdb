"""Every public function of ``import errorentropy as ee`` answers wrong arguments at the door.

A property test: each function is fed wrong types and values in one argument at a time (None,
integers, floats, strings, lists, the model and tokenizer swapped) and must raise
:class:`errorentropy.UserError`, never an AttributeError or TypeError from deep inside; the
message names the Python keyword, never a command-line flag.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import errorentropy as ee
from errorentropy.errors import ArgumentError, UserError

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Wrong for any argument that wants a str, a path, a bool, a model or a tokenizer.
NOT_TEXT = st.one_of(
    st.none(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True),
    st.lists(st.integers(0, 5), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
# Wrong for an argument that wants a count: not an integer, or an integer below 1.
NOT_COUNT = st.one_of(
    st.none(),
    st.floats(allow_nan=True),
    st.text(max_size=5),
    st.lists(st.integers(), max_size=2),
    st.booleans(),
    st.integers(-(10**6), 0),
)
# Strings no device, dtype, window, bos or head is called.
NONSENSE = st.text(alphabet="qxz?!", min_size=1, max_size=6)
NOT_BOOL = st.one_of(st.none(), st.integers(), st.text(max_size=3), st.lists(st.booleans()))
FLAG = re.compile(r"(?<![\w])--[a-z]")


@pytest.fixture(scope="module")
def loaded(model_dir):
    return ee.load_model(model_dir, device="cpu")


@pytest.fixture(scope="module")
def folder(tmp_path_factory, short_docs) -> Path:
    """An empty sweep folder and a small corpus file."""
    import json

    root = tmp_path_factory.mktemp("api-arguments")
    (root / "docs.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in short_docs))
    return root


def refused(call: Callable[[], Any]) -> UserError:
    """What ``call`` raised: it must be a one-line UserError in keyword names."""
    with pytest.raises(UserError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message and message, message
    assert not FLAG.search(message), f"a Python caller is shown a flag: {message}"
    return caught.value


@SETTINGS
@given(data=st.data())
def test_score_refuses_wrong_arguments(loaded, data) -> None:
    model, tokenizer = loaded
    slot = data.draw(st.sampled_from(["model", "tokenizer", "corpus", "document", "option"]))
    args: list[Any] = [model, tokenizer, ["a first document", "and a second one"]]
    kwargs: dict[str, Any] = {"max_length": 32}
    if slot == "model":
        args[0] = data.draw(st.one_of(NOT_TEXT, st.text(max_size=8), st.just(tokenizer)))
    elif slot == "tokenizer":
        args[1] = data.draw(st.one_of(NOT_TEXT, st.text(max_size=8), st.just(model)))
    elif slot == "corpus":
        args[2] = data.draw(
            st.one_of(st.none(), st.integers(), st.floats(), st.text(), st.just([]))
        )
    elif slot == "document":
        bad = data.draw(st.one_of(NOT_TEXT, st.binary(max_size=4)))
        args[2] = ["fine", bad]
    else:
        name, value = data.draw(
            st.sampled_from(
                [
                    ("max_length", NOT_COUNT),
                    ("max_length", st.integers(129, 10**6)),  # beyond the model's context
                    ("batch_size", NOT_COUNT),
                    ("vocab_chunk", NOT_COUNT),
                    ("stride", st.one_of(st.floats(), st.text(max_size=3))),
                    ("window", st.one_of(NOT_TEXT, NONSENSE)),
                    ("bos", st.one_of(NOT_TEXT, NONSENSE)),
                    ("head", st.one_of(NOT_TEXT, NONSENSE)),
                    ("profile", NOT_BOOL),
                    ("rbp_k", st.one_of(NOT_COUNT, st.lists(st.integers(-5, 0), min_size=1))),
                    ("progress", NOT_BOOL),
                    ("max_lenght", st.integers(2, 64)),  # a misspelt keyword
                ]
            ).flatmap(lambda pair: st.tuples(st.just(pair[0]), pair[1]))
        )
        kwargs[name] = value
    refused(lambda: ee.score(*args, **kwargs))


@SETTINGS
@given(data=st.data())
def test_load_corpus_refuses_wrong_arguments(folder, data) -> None:
    path = folder / "docs.jsonl"
    slot = data.draw(st.sampled_from(["spec", "samples", "seed", "text_field"]))
    kwargs: dict[str, Any] = {}
    spec: Any = path
    if slot == "spec":
        spec = data.draw(st.one_of(NOT_TEXT, NONSENSE))
    elif slot == "samples":
        optional = NOT_COUNT.filter(lambda v: v is not None)  # None: every document
        kwargs["samples"] = data.draw(st.one_of(optional, st.integers(13, 10**6)))
    elif slot == "seed":
        kwargs["seed"] = data.draw(
            st.one_of(st.integers(max_value=-1), st.floats(), st.text(max_size=3), st.booleans())
        )
    else:
        kwargs["text_field"] = data.draw(st.one_of(NOT_TEXT, st.just(""), NONSENSE))
    refused(lambda: ee.load_corpus(spec, **kwargs))


@SETTINGS
@given(data=st.data())
def test_load_model_refuses_wrong_arguments(model_dir, data) -> None:
    slot = data.draw(st.sampled_from(["name", "revision", "dtype", "device", "trust", "map"]))
    name: Any = model_dir
    kwargs: dict[str, Any] = {"device": "cpu"}
    if slot == "name":
        name = data.draw(NOT_TEXT)
    elif slot == "revision":
        kwargs["revision"] = data.draw(
            st.one_of(st.integers(), st.floats(), st.just(""), st.lists(st.text()))
        )
    elif slot == "dtype":
        kwargs["dtype"] = data.draw(st.one_of(NOT_TEXT, NONSENSE))
    elif slot == "device":
        kwargs["device"] = data.draw(st.one_of(NOT_TEXT, NONSENSE))
    elif slot == "trust":
        kwargs["trust_remote_code"] = data.draw(NOT_BOOL)
    else:
        kwargs["device_map"] = data.draw(st.one_of(st.integers(), st.floats(), st.lists(st.text())))
    refused(lambda: ee.load_model(name, **kwargs))


OPTION_VALUES = {
    "max_length": st.one_of(NOT_COUNT, st.just(1)),
    "window": st.one_of(NOT_TEXT, NONSENSE),
    "stride": st.one_of(st.floats(), st.text(max_size=3), st.integers(max_value=0)),
    "bos": st.one_of(NOT_TEXT, NONSENSE),
    "batch_size": NOT_COUNT,
    "head": st.one_of(NOT_TEXT, NONSENSE),
    "vocab_chunk": NOT_COUNT,
    "chunk_elements": st.one_of(st.floats(), st.text(max_size=3), st.integers(max_value=0)),
    "profile": NOT_BOOL,
    "rbp_k": st.one_of(NOT_COUNT, st.lists(st.integers(-5, 0), min_size=1)),
}


@SETTINGS
@given(data=st.data())
def test_score_options_refuse_wrong_values(data) -> None:
    name = data.draw(st.sampled_from(sorted(OPTION_VALUES)))
    value = data.draw(OPTION_VALUES[name])
    if name == "stride":  # stride is checked with window="stride"
        error = refused(lambda: ee.ScoreOptions(window="stride", stride=value))
    else:
        error = refused(lambda: ee.ScoreOptions(**{name: value}))
    assert isinstance(error, ArgumentError) and name in error.names


@SETTINGS
@given(data=st.data())
def test_the_other_public_functions_refuse_wrong_arguments(folder, data) -> None:
    bad = data.draw(NOT_TEXT)
    calls: dict[str, Callable[[], Any]] = {
        "histogram counts": lambda: ee.RankHistogram(counts=data.draw(st.text(min_size=1))),
        "histogram n_documents": lambda: ee.RankHistogram(
            n_documents=data.draw(NOT_COUNT.filter(lambda v: v != 0))
        ),
        "histogram load": lambda: ee.RankHistogram.load(bad),
        "histogram update": lambda: ee.RankHistogram().update(bad, data.draw(NOT_TEXT)),
        "token table": lambda: ee.TokenTable(bad, bad, bad, bad),
        "token stats": lambda: ee.token_stats(bad, data.draw(NOT_TEXT)),
        "run_sweep": lambda: ee.run_sweep(bad, folder / "sweep-out"),
        "run_sweep out_dir": lambda: ee.run_sweep(folder / "no-spec.toml", bad),
        "fit_sweep": lambda: ee.fit_sweep(bad),
        "fit_sweep n_boot": lambda: ee.fit_sweep(
            folder, n_boot=data.draw(NOT_COUNT.filter(lambda v: v != 0))
        ),
        "fit_sweep rbp_ks": lambda: ee.fit_sweep(
            folder, rbp_ks=data.draw(st.one_of(st.text(max_size=2), st.floats(), st.integers()))
        ),
        "build_report": lambda: ee.build_report(bad),
        "build_report run_fit": lambda: ee.build_report(folder, run_fit=data.draw(NOT_BOOL)),
    }
    name = data.draw(st.sampled_from(sorted(calls)))
    refused(calls[name])


def test_paths_work_as_path_objects(folder, model_dir) -> None:
    """os.PathLike wherever a path is taken: the same corpus as from its text."""
    path = folder / "docs.jsonl"
    assert ee.load_corpus(path).fingerprint == ee.load_corpus(str(path)).fingerprint
    model, _ = ee.load_model(model_dir, device="cpu")
    assert model.config.n_positions == 128


# ---- one record at each boundary ------------------------------------------------------------


def test_score_options_are_checked_once_per_score_command(model_dir, folder, tmp_path, monkeypatch):
    """One `errorentropy score` checks its window options once (when its ScoreOptions is built),
    not again in the command, the engine and the options' reader."""
    import sys

    import errorentropy.cli.score  # noqa: F401 - bind its names before patching them
    import errorentropy.scoring.engine  # noqa: F401
    from errorentropy import options
    from errorentropy.cli import main

    calls: list[tuple[int, str, int | None]] = []
    real = options.check_window_options

    def counted(max_length: int, window: str, stride: int | None) -> None:
        calls.append((max_length, window, stride))
        real(max_length, window, stride)

    for name, module in list(sys.modules.items()):  # every module that bound the name...
        if name.startswith("errorentropy.") and name != "errorentropy.data.windows":
            if getattr(module, "check_window_options", None) is real:  # ...but make_windows
                monkeypatch.setattr(module, "check_window_options", counted)
    argv = ["score", "--quiet", "--model", str(model_dir), "--data", str(folder / "docs.jsonl")]
    assert main([*argv, "--out", str(tmp_path / "out"), "--max-length", "32"]) == 0
    assert calls == [(32, "truncate", None)]


def test_one_scored_corpus_type(loaded, short_docs) -> None:
    """The engine's result and ee.score's are one type, with the summary filled in by ee.score."""
    from errorentropy.scoring.engine import score_documents
    from errorentropy.scoring.results import ScoredCorpus

    model, tokenizer = loaded
    assert ScoredCorpus is ee.ScoredCorpus
    raw = score_documents(model, tokenizer, short_docs, ee.ScoreOptions(max_length=32))
    scored = ee.score(model, tokenizer, short_docs, max_length=32)
    assert isinstance(raw, ee.ScoredCorpus) and raw.summary == {}
    assert (
        raw.histogram.equals(scored.histogram)
        and scored.summary["n_tokens"] == raw.histogram.n_tokens
    )
    assert scored.decompose().cross_entropy == scored.summary["cross_entropy"]


def test_default_max_length_fits_a_short_context_and_says_so(loaded, short_docs) -> None:
    """ee.score with max_length unset on a model of context 128 scores 128-token windows and
    notes it; an explicit max_length beyond the context is refused in keyword terms."""
    model, tokenizer = loaded
    scored = ee.score(model, tokenizer, short_docs)
    assert scored.summary["max_length"] == 128
    assert scored.summary["notes"][0].startswith("max_length 128: the model's context")
    explicit = ee.score(model, tokenizer, short_docs, max_length=128)
    assert explicit.histogram.equals(scored.histogram)  # the same windows as asking for 128
    error = refused(lambda: ee.score(model, tokenizer, short_docs, max_length=512))
    assert "max_length=512 exceeds the model's context of 128 tokens" in str(error)


def test_command_line_names_flags_for_keywords() -> None:
    """An ArgumentError's keywords become flags on the command line, values and all."""
    from errorentropy.cli.messages import for_command_line

    error = ArgumentError(
        "score: window='stride' needs stride=K (1 <= K < max_length)",
        "window",
        "stride",
        "max_length",
    )
    assert (
        for_command_line(error) == "score: --window stride needs --stride K (1 <= K < --max-length)"
    )
    assert for_command_line(ArgumentError("pass trust_remote_code=True", "trust_remote_code")) == (
        "pass --trust-remote-code"
    )
    assert for_command_line(ArgumentError("spec is empty; samples=3", "spec", "samples")) == (
        "--data is empty; --samples 3"
    )
    assert for_command_line(UserError("max_length stays")) == "max_length stays"


def test_run_sweep_refuses_a_file_as_out_dir_in_python_and_cli_words(tmp_path):
    from errorentropy.cli.messages import for_command_line

    spec = tmp_path / "spec.toml"
    spec.write_text('[[models]]\nid = "x"\n[[datasets]]\ndata = "builtin:prose"\n')
    afile = tmp_path / "afile"
    afile.write_text("")
    with pytest.raises(ee.UserError, match="out_dir=.* is a file") as refused:
        ee.run_sweep(spec, afile, progress=False)
    assert for_command_line(refused.value).startswith(f"--out {afile} is a file")
