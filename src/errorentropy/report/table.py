"""One table, defined once and rendered four ways: Markdown, LaTeX (booktabs), CSV and HTML.

A :class:`Table` holds a caption, its columns and rows of :class:`Cell`: a number with its
interval, or text. Every rendering reads the same cells, so ``errorentropy fit``'s printed table,
the files under ``tables/`` and the report's page show the same digits: estimates and interval
ends with :data:`DIGITS` decimals (an R² of 0.9997 reads as such, not as 1.000), ``n/a`` where a
number is undefined, and a dagger on a cell the table's footnote explains. The CSV holds the
full-precision numbers, one column per number (``key``, ``key_lo``, ``key_hi``), empty where
undefined.
"""

from __future__ import annotations

import csv
import html
import io
import math
from dataclasses import dataclass, field

from errorentropy.fits.records import Interval

DIGITS = 4  # decimals of an estimate and of its interval's ends
MISSING = "n/a"
DAGGER = "†"
DAGGER_NOTE = (
    f"{DAGGER} Confidence changes sign across these models; the log|Conf| fit hides the sign."
)
_LATEX_DAGGER_NOTE = (
    r"$^\dagger$ Confidence changes sign across these models; "
    r"the $\log|\mathrm{Conf}|$ fit hides the sign."
)

Value = float | int | str | bool | None


@dataclass(frozen=True)
class Cell:
    """One cell: ``value`` (a float shown with ``digits`` decimals and its interval ``ci`` in
    brackets; an int or a string shown as is; None shown as n/a), ``shown`` to show other text
    for the same value (``1,000,000``), and ``dagger`` for the table's footnote."""

    value: Value = None
    ci: Interval | None = None
    digits: int = DIGITS
    shown: str | None = None
    dagger: bool = False

    def text(self) -> str:
        """The cell as Markdown and HTML show it."""
        return self._plain() + (f" {DAGGER}" if self.dagger else "")

    def _plain(self) -> str:
        if self.shown is not None:
            return self.shown
        if isinstance(self.value, bool) or not isinstance(self.value, float):
            return MISSING if self.value is None else str(self.value)
        if not math.isfinite(self.value):
            return MISSING
        text = _number(self.value, self.digits)
        if self.ci is None:
            return text
        return f"{text} [{_number(self.ci[0], self.digits)}, {_number(self.ci[1], self.digits)}]"

    def latex(self) -> str:
        """The cell in LaTeX: the interval small, ``--`` for n/a."""
        plain = self._plain()
        if plain == MISSING:
            out = "--"
        elif self.ci is not None and self.shown is None and " [" in plain:
            value, interval = plain.split(" [", 1)
            out = f"{value} {{\\scriptsize [{interval}}}"
        else:
            out = latex_escape(plain)
        return out + ("$^\\dagger$" if self.dagger else "")

    def csv(self, with_interval: bool) -> list[str]:
        """The full-precision value (and interval ends when the column has them)."""
        out = [_csv_value(self.value)]
        if with_interval:
            out += [_csv_value(self.ci[0]), _csv_value(self.ci[1])] if self.ci else ["", ""]
        return out


def _number(x: float, digits: int) -> str:
    return f"{x:.{digits}f}" if math.isfinite(x) else MISSING


def _csv_value(value: Value) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return repr(value) if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class Column:
    """A column: its ``head`` as shown, its CSV name ``key`` (with ``key_lo`` and ``key_hi``
    when ``interval``), its LaTeX head (default: the head escaped), and whether it is shown or
    only in the CSV."""

    head: str
    key: str
    interval: bool = False
    latex: str | None = None
    shown: bool = True


@dataclass
class Table:
    """A table: ``ident`` names its files and its HTML id, ``label`` its LaTeX label; ``rows``
    hold one :class:`Cell` per column; ``note`` is read below it."""

    ident: str
    caption: str
    columns: tuple[Column, ...]
    rows: list[tuple[Cell, ...]] = field(default_factory=list)
    note: str = ""
    label: str = ""

    def _shown(self) -> list[int]:
        return [i for i, c in enumerate(self.columns) if c.shown]

    def texts(self) -> list[list[str]]:
        """The shown cells of every row, as text."""
        return [[row[i].text() for i in self._shown()] for row in self.rows]

    def notes(self) -> list[str]:
        """What is read below the table: its note, and the dagger's when a cell has one."""
        dagger = any(cell.dagger for row in self.rows for cell in row)
        return [n for n in (self.note, DAGGER_NOTE if dagger else "") if n]

    def markdown(self) -> str:
        """The table in Markdown: the caption in bold, then the table, then its notes."""
        esc = lambda s: s.replace("|", "\\|")  # noqa: E731
        head = [esc(self.columns[i].head) for i in self._shown()]
        lines = [f"**{self.caption}**", "", "| " + " | ".join(head) + " |"]
        lines += ["|" + "---|" * len(head)]
        lines += ["| " + " | ".join(map(esc, row)) + " |" for row in self.texts()]
        notes = self.notes()
        return "\n".join(lines + (["", *notes] if notes else [])) + "\n"

    def html(self) -> str:
        """The table in HTML (its ident as id), its notes after it."""
        head = "".join(f"<th>{html.escape(self.columns[i].head)}</th>" for i in self._shown())
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
            for row in self.texts()
        )
        notes = "".join(f'<p class="note">{html.escape(n)}</p>' for n in self.notes())
        return (
            f'<table id="{self.ident}"><caption>{html.escape(self.caption)}</caption>'
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{notes}"
        )

    def records(self) -> list[dict[str, Value]]:
        """The rows as the CSV holds them, one dict per row, with the values unformatted."""
        out = []
        for row in self.rows:
            record: dict[str, Value] = {}
            for c, cell in zip(self.columns, row):
                record[c.key] = cell.value
                if c.interval:
                    record[f"{c.key}_lo"] = cell.ci[0] if cell.ci else None
                    record[f"{c.key}_hi"] = cell.ci[1] if cell.ci else None
            out.append(record)
        return out

    def csv(self) -> str:
        """The table as CSV: every column (shown or not), full precision."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        names = []
        for c in self.columns:
            names += [c.key, f"{c.key}_lo", f"{c.key}_hi"] if c.interval else [c.key]
        writer.writerow(names)
        for row in self.rows:
            writer.writerow([v for c, cell in zip(self.columns, row) for v in cell.csv(c.interval)])
        return buffer.getvalue()

    def latex(self) -> str:
        """The table in booktabs LaTeX; a dataset's name is written on its first row only."""
        shown = self._shown()
        heads = [self.columns[i].latex or latex_escape(self.columns[i].head) for i in shown]
        lines = [
            r"\begin{table}[t]",
            r"\centering",
            f"\\caption{{{latex_escape(self.caption)}}}",
            f"\\label{{{self.label or 'tab:' + self.ident}}}",
            r"\begin{tabular}{ll r " + "c" * (len(shown) - 3) + "}",
            r"\toprule",
            " & ".join(heads) + r" \\",
            r"\midrule",
        ]
        previous = None
        for row in self.rows:
            cells = [row[i].latex() for i in shown]
            first = row[shown[0]].text()
            if previous is not None and first != previous:
                lines.append(r"\midrule")
            cells[0] = "" if first == previous else cells[0]
            previous = first
            lines.append(" & ".join(cells) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}"]
        lines += [
            f"\\par\\footnotesize {latex_escape(n)}" for n in self.notes() if n != DAGGER_NOTE
        ]
        if DAGGER_NOTE in self.notes():
            lines.append(f"\\par\\footnotesize {_LATEX_DAGGER_NOTE}")
        lines.append(r"\end{table}")
        return "\n".join(lines) + "\n"


_LATEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\^{}",
    # The report's captions use a few symbols pdflatex has no glyph for in text mode.
    "α": r"$\alpha$",
    "Δ": r"$\Delta$",
    "²": r"$^2$",
    "−": "-",
    "≥": r"$\geq$",
}


def latex_escape(text: str) -> str:
    """Text safe inside a LaTeX table cell or caption."""
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in text)
