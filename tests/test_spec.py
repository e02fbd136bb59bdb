"""The sweep spec: a valid spec parses to what it says; every mistake is one line naming where it
is."""

from __future__ import annotations

from pathlib import Path

import pytest

from errorentropy.cli import main
from errorentropy.errors import UserError
from errorentropy.sweep.spec import cell_settings, load_spec, parse_spec, settings_digest

GOOD = """\
# a sweep
[scoring]
max_length = 64
batch_size = 2
window = "stride"
stride = 32
profile = true

[run]
dtype = "float32"
device = "cpu"

[[models]]
id = "EleutherAI/pythia-14m"
family = "pythia"
revisions = ["step1000", "step143000"]

[[models]]
id = "models/tiny"        # a local folder, relative to this file
label = "tiny # one"

[[datasets]]
data = "wikipedia"
samples = 100
seed = 7

[[datasets]]
data = "corpus/docs.jsonl"
text_field = "body"
"""


def parse(text: str, base: Path | str = "/base") -> object:
    return parse_spec(text, base_dir=base, name="s.toml")


def error(text: str) -> str:
    with pytest.raises(UserError) as info:
        parse(text)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_good_spec_parses_to_what_it_says(tmp_path):
    (tmp_path / "models" / "tiny").mkdir(parents=True)
    spec = parse(GOOD, tmp_path)
    assert spec.scoring == {
        "max_length": 64,
        "batch_size": 2,
        "window": "stride",
        "stride": 32,
        "profile": True,
    }
    options = spec.score_options()
    assert (options.max_length, options.stride, options.profile, options.head) == (
        64,
        32,
        True,
        "auto",
    )
    assert (spec.run.dtype, spec.run.device, spec.run.trust_remote_code) == (
        "float32",
        "cpu",
        False,
    )
    pythia, tiny = spec.models
    assert (pythia.source, pythia.label, pythia.family, pythia.revisions) == (
        "EleutherAI/pythia-14m",
        "EleutherAI/pythia-14m",
        "pythia",
        ("step1000", "step143000"),
    )
    assert (
        tiny.source == str((tmp_path / "models" / "tiny").resolve()) and tiny.label == "tiny # one"
    )
    assert tiny.family is None and tiny.revisions == (None,)
    wiki, docs = spec.datasets
    assert (wiki.source, wiki.label, wiki.samples, wiki.seed) == ("wikipedia", "wikipedia", 100, 7)
    assert (docs.source, docs.label, docs.text_field, docs.samples) == (
        str(tmp_path / "corpus" / "docs.jsonl"),
        "docs",
        "body",
        None,
    )


def test_load_spec_resolves_against_the_spec_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "spec.toml"
    path.write_text('[[models]]\nid = "./m"\n[[datasets]]\ndata = "d.jsonl"\n')
    spec = load_spec(path)
    assert spec.path == path.resolve() and spec.models[0].source == str(tmp_path / "sub" / "m")
    assert spec.datasets[0].source == str(tmp_path / "sub" / "d.jsonl")


@pytest.mark.parametrize(
    "text, line, key, table",
    [
        ("[scoring]\nmax_length = 8\nmax_lenght = 9\n", 3, "max_lenght", "[scoring]"),
        (
            '[[models]]\nid = "a"\n\n[[models]]\nid = "b"\n  famly = "x"\n',
            6,
            "famly",
            "[[models]] #2",
        ),
        (
            '[[models]]\nid = "a"\n[[datasets]]\ndata = "wikipedia"\nsample = 3\n',
            5,
            "sample",
            "[[datasets]] #1",
        ),
        ('title = "x"\n[[models]]\nid = "a"\n', 1, "title", "the top level"),
        ('[[models]]\nid = "a"\n\n[scorng]\nmax_length = 3\n', 4, "scorng", "the top level"),
        ('[run]\n"devise" = "cpu" # note\n', 2, "devise", "[run]"),
    ],
)
def test_unknown_key_names_key_table_and_line(text, line, key, table):
    message = error(text)
    assert message.startswith(f"s.toml:{line}: unknown key {key!r} in {table}")
    assert "allowed:" in message


def test_unknown_key_suggests_the_close_one():
    assert "did you mean 'revisions'" in error('[[models]]\nid = "a"\nrevision = ["x"]\n')


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[scoring\n", "invalid TOML"),
        (
            "[[models]]\nid = 'a'\n[[datasets]]\ndata = "
            "'wikipedia'\n[scoring]\nmax_length = '512'\n",
            "s.toml:6: 'max_length' in [scoring] must be an integer",
        ),
        ("[scoring]\nprofile = 1\n", "must be true or false"),
        ("[scoring]\nbatch_size = 0\n", "at least 1"),
        ("[scoring]\nhead = 'fast'\n", "choose one of auto, chunked, fused, full"),
        (
            "[scoring]\nwindow = 'stride'\nmax_length = 8\nstride = 8\n",
            "[scoring] stride must be between 1 and max_length - 1",
        ),
        ("[run]\ndtype = 'fp8'\n", "choose one of auto, float32"),
        ("[[datasets]]\ndata = 'wikipedia'\n", "no [[models]] given"),
        ("[[models]]\nid = 'a'\n", "no [[datasets]] given"),
        ("models = []\n[[datasets]]\ndata = 'c4'\n", "no [[models]] given"),
        ("[models]\nid = 'a'\n", "write [[models]] (an array of tables)"),
        ("scoring = 3\n", "'scoring' must be a table"),
        ("[[models]]\nlabel = 'a'\n", "s.toml:1: [[models]] #1 needs the key 'id'"),
        ("[[models]]\nid = ''\n", "is empty"),
        ("[[models]]\nid = 'a'\nrevisions = []\n", "revisions in [[models]] #1 is empty"),
        ("[[models]]\nid = 'a'\nrevisions = ['x', 1]\n", "must be non-empty strings"),
        ("[[models]]\nid = 'a'\nrevisions = 'step1'\n", "must be an array"),
        (
            "[[models]]\nid = 'a'\nrevisions = ['s1', 's1']\n[[datasets]]\ndata = 'c4'\n",
            "lists revision 's1' twice",
        ),
        (
            "[[models]]\nid = 'x/a'\n[[models]]\nid = 'y/b'\nlabel = "
            "'x/a'\n[[datasets]]\ndata = 'c4'\n",
            "label 'x/a' twice",
        ),
        (
            "[[models]]\nid = 'a b'\n[[models]]\nid = 'a-b'\n[[datasets]]\ndata = 'c4'\n",
            "name the same cell folder",
        ),
        (
            "[[models]]\nid = 'a'\n[[datasets]]\ndata = 'c4'\n[[datasets]]\ndata = "
            "'c4'\nsamples = 5\n",
            "label 'c4' twice",
        ),
        (
            "[[models]]\nid = 'a'\n[[datasets]]\ndata = 'builtin:poetry'\n",
            "unknown built-in corpus",
        ),
        (
            "[[models]]\nid = 'a'\n[[datasets]]\ndata = 'c4'\nseed = 1.5\n",
            "'seed' in [[datasets]] #1 must be an integer",
        ),
        (
            "[[models]]\nid = 'a'\n[[datasets]]\nsamples = 3\n",
            "[[datasets]] #1 needs the key 'data'",
        ),
        (
            "[[models]]\nid = 'a'\n[[datasets]]\ndata = 'hf:a:b:c:d'\n",
            "s.toml:4: data 'hf:a:b:c:d': write a hub dataset as hf:PATH",
        ),
    ],
)
def test_bad_specs_fail_with_one_clear_line(text, expected):
    assert expected in error(text)


def test_settings_digest_changes_with_what_changes_numbers():
    spec = parse('[[models]]\nid = "a"\n[[datasets]]\ndata = "c4"\n')
    other = parse('[scoring]\nmax_length = 9\n[[models]]\nid = "a"\n[[datasets]]\ndata = "c4"\n')
    device = parse('[run]\ndevice = "cuda"\n[[models]]\nid = "a"\n[[datasets]]\ndata = "c4"\n')
    digest = lambda s: settings_digest(cell_settings(s, s.models[0], None, s.datasets[0]))  # noqa: E731
    assert digest(spec) != digest(other)
    assert digest(spec) == digest(device)  # where it runs is not what it computes


def test_cli_reports_spec_errors_in_one_line(tmp_path, capsys):
    path = tmp_path / "spec.toml"
    path.write_text('[[models]]\nid = "a"\nfamliy = "x"\n[[datasets]]\ndata = "c4"\n')
    assert main(["sweep", str(path), "--out", str(tmp_path / "out"), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err == f"errorentropy: error: {path}:3: unknown key 'famliy' in [[models]] #1 (did you "
        "mean 'family'?); allowed: id, label, family, revisions, dtype, trust_remote_code"
    )
    assert not (tmp_path / "out").exists()
    assert main(["sweep", str(tmp_path / "nope.toml"), "--out", str(tmp_path / "out")]) == 2
    assert "not found" in capsys.readouterr().err


def test_the_documented_example_parses(tmp_path):
    docs = Path(__file__).resolve().parents[1] / "docs" / "sweep.md"
    text = docs.read_text(encoding="utf-8")
    example = text.split("```toml\n", 1)[1].split("```", 1)[0]
    spec = parse(example, tmp_path)
    assert [m.label for m in spec.models] == ["EleutherAI/pythia-160m", "my-gpt2-small"]
    assert spec.models[1].revisions == ("main", "step200") and spec.models[0].family == "pythia"
    assert [d.label for d in spec.datasets] == ["wikipedia", "notes"] and spec.datasets[
        1
    ].text_field == "body"
    assert spec.score_options().max_length == 512


def test_hub_datasets_keep_their_spec_and_get_a_short_label(tmp_path):
    spec = parse(
        "[[models]]\nid = 'a'\n[[datasets]]\ndata = "
        "'hf:allenai/c4:en:validation'\n[[datasets]]\ndata = 'hf:owner/forum'\ntext_field "
        "= 'body'\n",
        tmp_path,
    )
    c4, forum = spec.datasets
    assert (c4.source, c4.label) == ("hf:allenai/c4:en:validation", "c4-en-validation")
    assert (forum.source, forum.label, forum.text_field) == ("hf:owner/forum", "forum", "body")


def test_a_mistyped_local_model_path_stays_a_local_path(tmp_path):
    """ "models/tyny" beside a "models" folder is a typo of a local path: the cell then fails with
    "does not exist", not with a hub download of "models/tyny"."""
    (tmp_path / "models" / "tiny").mkdir(parents=True)
    spec = parse(
        "[[models]]\nid = 'models/tyny'\n[[models]]\nid = "
        "'EleutherAI/pythia-14m'\n[[datasets]]\ndata = 'c4'\n",
        tmp_path,
    )
    typo, hub = spec.models
    assert typo.source == str(tmp_path / "models" / "tyny")
    assert hub.source == "EleutherAI/pythia-14m"


OLD_SPEC = """[scoring]
max_length = 64
batch_size = 4
[[models]]
id = "EleutherAI/pythia-14m"
revisions = ["step1000"]
[[datasets]]
data = "wikipedia"
samples = 10
"""


def test_batch_size_and_written_out_defaults_do_not_make_cells_stale(tmp_path):
    """Results are bit-identical whatever the batch size: a smaller batch after running out of
    memory redoes nothing, nor does writing out a default; cells digested by errorentropy 0.1.0
    (golden digest below, computed by that version for this spec) stay finished."""
    from errorentropy.sweep.plan import plan_cells
    from errorentropy.sweep.spec import cell_settings, legacy_cell_settings, settings_digest

    def digest(text):
        spec = parse(text, tmp_path)
        return settings_digest(cell_settings(spec, spec.models[0], "step1000", spec.datasets[0]))

    base = digest(OLD_SPEC)
    assert digest(OLD_SPEC.replace("batch_size = 4", "batch_size = 1")) == base
    assert digest(OLD_SPEC.replace("batch_size = 4\n", "")) == base
    assert (
        digest(
            OLD_SPEC.replace("max_length = 64\n", "max_length = 64\nbos = 'auto'\nhead = 'auto'\n")
        )
        == base
    )
    assert digest(OLD_SPEC.replace("max_length = 64", "max_length = 32")) != base
    spec = parse(OLD_SPEC, tmp_path)
    assert (
        settings_digest(legacy_cell_settings(spec, spec.models[0], "step1000", spec.datasets[0]))
        == "01cb8f3e23a830ef"
    )
    (cell,) = plan_cells(spec)
    assert cell.matches("01cb8f3e23a830ef") and cell.matches(base) and not cell.matches("0" * 16)


def test_revisions_naming_one_folder_and_over_long_cell_names_are_refused(tmp_path):
    assert "lists revisions 'run/a' and 'run-a', which name the same cell folder" in error(
        "[[models]]\nid = 'a'\nrevisions = ['run/a', 'run-a']\n[[datasets]]\ndata = 'c4'\n"
    )
    assert "would be 2" in error(
        f"[[models]]\nid = 'a'\n[[datasets]]\ndata = 'c4'\nlabel = '{'d' * 235}'\n"
    ) and "shorter label" in error(
        f"[[models]]\nid = 'a'\n[[datasets]]\ndata = 'c4'\nlabel = '{'d' * 235}'\n"
    )
