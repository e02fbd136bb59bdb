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
    from errorentropy.models.loading import _load_message

    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    offline = OSError("We couldn't connect to 'https://huggingface.co' to load the files")
    assert "models/ exists here but models/tyny does not" in _load_message(
        "models/tyny", None, offline
    )
    assert "HF_HUB_OFFLINE=1" in _load_message("EleutherAI/pythia-14m", None, offline)
    assert (
        _load_message("EleutherAI/pythia-14m", None, ValueError("bad config"))
        == "cannot load model EleutherAI/pythia-14m: bad config"
    )
