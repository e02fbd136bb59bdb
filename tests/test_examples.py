"""The example specs shipped in examples/ parse, and name what the paper ran."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from errorentropy.sweep.spec import load_spec

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


def test_plain_loop_example_trains_and_prints_the_identity():
    """examples/plain_loop.py exits 0, and every decomposition it prints adds up (to the printed
    6 decimals): CE = EE + SA - Conf; training lowers the held-out CE."""
    script = Path(__file__).resolve().parent.parent / "examples" / "plain_loop.py"
    run = subprocess.run(
        [sys.executable, str(script), "--steps", "10", "--eval-every", "5"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    number = r"(-?\d+\.\d+)"
    rows = re.findall(
        rf"step +(\d+)  CE {number} = EE {number} \+ SA {number} - Conf {number}", run.stdout
    )
    assert [int(r[0]) for r in rows] == [0, 5, 10], run.stdout
    for _, ce, ee, sa, conf in rows:
        assert abs(float(ce) - (float(ee) + float(sa) - float(conf))) <= 2.5e-6, run.stdout
    assert float(rows[-1][1]) < float(rows[0][1]), run.stdout
