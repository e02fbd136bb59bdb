"""The example specs shipped in examples/ parse, and name what the paper ran."""

from __future__ import annotations

from pathlib import Path

import pytest

from errorentropy.spec import load_spec

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.toml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_spec_parses(path):
    spec = load_spec(path)
    assert spec.models and spec.datasets
    assert {d.data for d in spec.datasets} == {"wikipedia", "c4", "github"}


def test_dynamics_example_has_the_papers_checkpoints():
    spec = load_spec(next(p for p in EXAMPLES if p.name == "paper-dynamics.toml"))
    for model in spec.models:
        assert list(model.revisions) == [
            "step0",
            "step16",
            "step128",
            "step1000",
            "step10000",
            "step100000",
        ]
