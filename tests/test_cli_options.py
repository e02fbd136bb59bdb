"""Global options and small parsing rules of the command line."""

from __future__ import annotations

import pytest

from errorentropy.cli import build_parser
from errorentropy.sweep.cells import step_of


@pytest.mark.parametrize(
    "argv,quiet",
    [
        (["--quiet", "decompose", "x"], True),
        (["decompose", "x", "--quiet"], True),
        (["decompose", "x"], False),
    ],
)
def test_quiet_counts_before_or_after_the_command(argv, quiet):
    args = build_parser().parse_args(argv)
    assert args.quiet is quiet and args.debug is False


@pytest.mark.parametrize(
    "revision,step",
    [
        ("step1000", 1000),
        ("step-000128", 128),
        ("step_16", 16),
        ("step0", 0),
        ("main", None),
        (None, None),
        ("v1", None),
        ("3f9a2b1c9", None),
        ("deduped", None),
    ],
)
def test_only_step_names_are_training_steps(revision, step):
    assert step_of(revision) == step


def test_a_failed_hub_load_says_when_the_name_looks_like_a_local_path(tmp_path, monkeypatch):
    from errorentropy.models.loading import _load_error

    def message(name: str, exc: Exception) -> str:
        return str(_load_error(name, None, exc))

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    (tmp_path / "models").mkdir()
    offline = OSError("We couldn't connect to 'https://huggingface.co' to load the files")
    assert "models/ exists here but models/tyny does not" in message("models/tyny", offline)
    assert "HF_HUB_OFFLINE=1" in message("EleutherAI/pythia-14m", offline)
    assert (
        message("EleutherAI/pythia-14m", ValueError("bad config"))
        == "cannot load model EleutherAI/pythia-14m: bad config"
    )


def test_a_failed_load_of_an_absolute_folder_is_no_hub_id(tmp_path):
    """An existing absolute folder that holds no model is said to be one, not a hub id whose
    first part "/" exists."""
    from errorentropy.models.loading import _load_error

    text = str(_load_error(str(tmp_path), None, ValueError("Unrecognized model")))
    assert "taken as a hub id" not in text and "//" not in text, text
    assert "a local folder, but no model loads from it" in text
    missing = str(_load_error(str(tmp_path / "a" / "b"), None, ValueError("no such thing")))
    assert "taken as a hub id" not in missing, missing


def test_the_offline_hint_is_not_given_when_offline_is_already_set(monkeypatch):
    from errorentropy.models.loading import _load_error

    offline = OSError("We couldn't connect to 'https://huggingface.co' to load the files")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert "HF_HUB_OFFLINE" not in str(_load_error("EleutherAI/pythia-14m", None, offline))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert "HF_HUB_OFFLINE=1" in str(_load_error("EleutherAI/pythia-14m", None, offline))


def test_help_names_every_data_form_and_every_params_flag(capsys):
    from errorentropy.cli import main

    assert main(["score", "--help"]) == 0
    assert "hf:PATH[:CONFIG[:SPLIT]]" in " ".join(capsys.readouterr().out.split())
    assert main(["params", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--revision REVISION hub branch/tag" in text
    assert "--trust-remote-code allow a hub model's own Python code" in text


def test_the_dry_run_explains_its_token_marks():
    from errorentropy.cli.sweep import tokens_legend
    from errorentropy.sweep.costs import TokenEstimate

    exact, rough = TokenEstimate(10, "tokenized"), TokenEstimate(12, "characters")
    assert tokens_legend(["a"], {"a": exact}) == ""
    assert tokens_legend(["a", "b"], {"a": exact}).startswith("TOKENS: ? not known")
    both = tokens_legend(["a", "b", "c"], {"a": exact, "b": rough})
    assert "~ estimated from characters" in both and "? not known" in both
