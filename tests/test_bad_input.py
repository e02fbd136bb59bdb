"""Every row of the bad-input table (tests/bad_input_cases.py): one clear line, non-zero exit,
nothing lost."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import bad_input_cases as table  # noqa: E402

CASES = table.all_cases()
SENTINEL = b'{"finished": "work that a failing command must not touch"}\n'


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """All bad inputs, plus a finished result folder ``out/`` that no failing command may touch."""
    root = table.build_workspace(tmp_path_factory.mktemp("bad-input") / "ws")
    return root


def _plant_finished_result(workspace: Path) -> dict[str, bytes]:
    out = workspace / "out"
    out.mkdir(exist_ok=True)
    files = {"histogram.json": SENTINEL, "summary.json": SENTINEL, "tokens.npz": SENTINEL}
    for name, data in files.items():
        (out / name).write_bytes(data)
    return files


def _check_one_line(code: int, stderr: str, case: table.Case, workspace: Path) -> None:
    assert code != 0, f"{case.id}: exit code 0"
    lines = stderr.splitlines()
    assert len(lines) == 1, (
        f"{case.id}: expected one line on stderr, got {len(lines)}: {stderr[:500]!r}"
    )
    line = table.normalise(lines[0], workspace)
    assert "Traceback" not in stderr and "internal error" not in line, line
    assert line.startswith("errorentropy: error: "), line
    assert case.expect in line, f"{case.id}: {case.expect!r} not in {line!r}"
    assert len(line) <= table.MAX_MESSAGE, f"{case.id}: message of {len(line)} characters"


@pytest.fixture
def progress_on(monkeypatch):
    """Library progress bars as a fresh process without --quiet has them (an earlier --quiet row
    turned them off in this process)."""
    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    from transformers.utils import logging

    was = logging.is_progress_bar_enabled()
    logging.enable_progress_bar()
    yield
    if not was:
        logging.disable_progress_bar()


@pytest.mark.parametrize("quiet", [True, False], ids=["quiet", "progress"])
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_in_process(
    case: table.Case, quiet: bool, workspace: Path, capsys, request
) -> None:
    """One line on stderr with --quiet and without it: no progress bar before the error."""
    from errorentropy.cli import main

    argv = table.expand(case.argv, workspace)
    if not quiet:
        request.getfixturevalue("progress_on")
        argv = [a for a in argv if a != "--quiet"]
    planted = _plant_finished_result(workspace)
    code = main(argv)
    captured = capsys.readouterr()
    _check_one_line(code, captured.err, case, workspace)
    assert code == 2, f"{case.id}: a user error exits 2, got {code}"
    for name, data in planted.items():  # nothing lost: the finished result is untouched
        assert (workspace / "out" / name).read_bytes() == data, f"{case.id} touched out/{name}"
    assert sorted(p.name for p in (workspace / "out").iterdir()) == sorted(planted)


SUBPROCESS_CASES = [c for c in CASES if c.subprocess]


@pytest.mark.parametrize("case", SUBPROCESS_CASES, ids=[c.id for c in SUBPROCESS_CASES])
def test_bad_input_as_a_process(case: table.Case, workspace: Path) -> None:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    env.pop("ERRORENTROPY_DEBUG", None)
    proc = subprocess.run(
        [sys.executable, "-m", "errorentropy", *table.expand(case.argv, workspace)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    _check_one_line(proc.returncode, proc.stderr, case, workspace)
    assert proc.returncode == 2
    assert proc.stdout == ""


def test_debug_flag_shows_the_traceback(workspace: Path) -> None:
    """--debug re-raises, so the one-line form never hides a bug from whoever asks for detail."""
    from errorentropy.cli import main
    from errorentropy.errors import UserError

    with pytest.raises(UserError, match="unknown data"):
        main(
            [
                "score",
                "--debug",
                "--quiet",
                "--model",
                "m",
                "--data",
                str(workspace / "nope.jsonl"),
                "--out",
                str(workspace / "o"),
            ]
        )


def test_very_long_valid_document_is_scored(workspace: Path, capsys) -> None:
    """A very long line that IS valid is not an error: truncate keeps its first max-length
    tokens."""
    import json

    from errorentropy.cli import main

    data = workspace / "long-valid.jsonl"
    data.write_text(json.dumps({"text": "word " * 200_000}) + "\n")
    out = workspace / "long-out"
    code = main(
        [
            "score",
            "--quiet",
            "--model",
            str(workspace / "model"),
            "--data",
            str(data),
            "--out",
            str(out),
            "--max-length",
            "16",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_tokens"] == 15 and summary["n_documents"] == 1


def test_docs_table_is_up_to_date(workspace: Path) -> None:
    """docs/bad-input.md holds exactly the messages the rows give now (regenerate: python
    tests/bad_input_cases.py)."""
    expected = table.generate(workspace)
    actual = table.DOC_PATH.read_text() if table.DOC_PATH.exists() else ""
    assert actual == expected, "docs/bad-input.md is stale: run `python tests/bad_input_cases.py`"


PY_CASES = table.PYTHON_CASES


@pytest.fixture(scope="module")
def python_namespace(workspace: Path) -> dict:
    return table.python_namespace(workspace)


@pytest.mark.parametrize("case", PY_CASES, ids=[c.id for c in PY_CASES])
def test_python_api_bad_input(case: table.PythonCase, python_namespace: dict) -> None:
    """Each Python row raises one line in the caller's terms: keyword names, never a flag."""
    from errorentropy.errors import UserError

    raised = table.run_python(case, python_namespace)
    assert isinstance(raised, UserError), f"{case.id}: {type(raised).__name__}: {raised}"
    message = str(raised)
    assert case.expect in message, f"{case.id}: {case.expect!r} not in {message!r}"
    assert "\n" not in message and len(message) <= table.MAX_MESSAGE, message
    assert not re.search(r"(?<![\w])--[a-z]", message), f"{case.id} names a flag: {message}"
