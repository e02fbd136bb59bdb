"""One definition of each table: ``errorentropy fit`` prints the digits the report shows, and
every rendering of a table reads the same cells."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from errorentropy.cli import main
from errorentropy.fits.fit import read_fits
from errorentropy.report.page import build_report
from errorentropy.report.table import Cell, Column, Table
from errorentropy.report.tables import table1, table2
from errorentropy.testing import synthetic_sweep


def _table_lines(text: str, caption: str) -> list[str]:
    """The body rows of the Markdown table under the line starting with ``caption``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.lstrip("*").startswith(caption))
    body = []
    for line in lines[start + 4 :]:  # caption, blank, head, rule
        if not line.startswith("|"):
            break
        body.append(line)
    return body


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    folder = synthetic_sweep(tmp_path_factory.mktemp("tables") / "sweep", n_docs=20, doc_len=60)
    out = io.StringIO()
    from contextlib import redirect_stdout

    with redirect_stdout(out):
        assert main(["fit", str(folder), "--n-boot", "40", "--seed", "3", "--quiet"]) == 0
    return folder, out.getvalue()


def test_the_report_shows_the_digits_errorentropy_fit_prints(fitted: tuple[Path, str]) -> None:
    folder, printed = fitted
    build_report(folder, n_boot=40, seed=3)  # reads the fits.json `fit` wrote: it is current
    page = (folder / "report.md").read_text()
    from_fit = _table_lines(printed, "Table 1")
    from_report = _table_lines(page, "Table 1")
    assert from_fit and from_fit == from_report
    assert _table_lines((folder / "tables" / "table2.md").read_text(), "Table 2") == (
        _table_lines(page, "Table 2")
    )
    # The digits are the record's, rounded once: estimate and both ends to 4 decimals.
    row = read_fits(folder).fit("synth", "toy", "EE")
    lo, hi = row.r2_ci
    assert f"{row.r2:.4f} [{lo:.4f}, {hi:.4f}]" in from_report[0]


def test_every_rendering_reads_the_same_cells(fitted: tuple[Path, str]) -> None:
    fits = read_fits(fitted[0])
    for table in (table1(fits), table2(fits)):
        texts = table.texts()
        markdown, latex, page = table.markdown(), table.latex(), table.html()
        for row in texts:
            assert "| " + " | ".join(row) + " |" in markdown
            assert all(f"<td>{cell}</td>" in page for cell in row)
            assert all(cell.split(" [")[0] in latex for cell in row)
        records = list(csv.DictReader(io.StringIO(table.csv())))
        assert [r["group"] for r in records] == [row[1] for row in texts]
    record = next(csv.DictReader(io.StringIO(table1(fits).csv())))
    assert float(record["EE_r2_lo"]) == fits.fit("synth", "toy", "EE").r2_ci[0]


def test_a_cell_shows_na_marks_and_escapes() -> None:
    table = Table(
        "t",
        "A caption with α and R² & 5%",
        (Column("name", "name"), Column("x", "x", interval=True), Column("n", "n")),
        [
            (Cell("a|b"), Cell(0.12345, (0.1, 0.2)), Cell(3)),
            (Cell("c"), Cell(None, dagger=True), Cell(float("nan"))),
        ],
    )
    assert table.texts() == [["a|b", "0.1235 [0.1000, 0.2000]", "3"], ["c", "n/a †", "n/a"]]
    assert "| a\\|b |" in table.markdown() and "† Confidence changes sign" in table.markdown()
    latex = table.latex()
    assert r"$\alpha$" in latex and r"R$^2$" in latex and r"\& 5\%" in latex
    assert r"0.1235 {\scriptsize [0.1000, 0.2000]}" in latex and r"--$^\dagger$" in latex
    assert table.csv().splitlines() == ["name,x,x_lo,x_hi,n", "a|b,0.12345,0.1,0.2,3", "c,,,,"]
