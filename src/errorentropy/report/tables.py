"""The paper's Table 1 (R^2 of the log-log fit) and Table 2 (|alpha_M - alpha_CE|) from the fits,
and the relative-based table (alpha_k and R^2 of -log RBP_k by k, beside CE and EE).

Every function takes a :class:`~errorentropy.fits.records.SweepFits` (the content of fits.json).

Rows are (dataset, group) with group a model family or "All"; Table 1's columns are CE, EE, SA
and Conf, Table 2's are alpha_CE then EE, SA and Conf. Each cell shows the estimate with its
bootstrap 95% interval when one was computed; a skipped fit shows "n/a". A dagger marks a
Conf column where Confidence changes sign across the group's models.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

from errorentropy.fits.records import FitRow, Interval, RbpFitRow, SweepFits
from errorentropy.stats.quantities import CE, COMPONENTS, CONF, EE, QUANTITIES
from errorentropy.storage import atomic_write_text

TABLE1_QUANTITIES = tuple(q.key for q in QUANTITIES)  # CE, EE, SA, Conf
TABLE2_QUANTITIES = tuple(q.key for q in COMPONENTS)  # EE, SA, Conf
MISSING = "n/a"

Rows = dict[str, FitRow]  # quantity key -> fit row of one (dataset, group)


def _fmt(value: float | None, ci: Interval | None, digits: int = 4) -> str:
    if value is None:
        return MISSING
    text = f"{value:.{digits}f}"
    return f"{text} [{ci[0]:.{digits - 1}f}, {ci[1]:.{digits - 1}f}]" if ci else text


def _n_models(rows: Rows) -> int:
    return max((r.n_models for r in rows.values()), default=0)


def _sign_flag(rows: Rows) -> bool:
    conf = rows.get(CONF.key)
    return conf is not None and conf.conf_sign_change


def _bounds(prefix: str, value: float | None, ci: Interval | None) -> dict[str, Any]:
    """``{prefix: value, prefix_lo: lo, prefix_hi: hi}``, None where undefined."""
    return {
        prefix: value,
        f"{prefix}_lo": ci[0] if ci else None,
        f"{prefix}_hi": ci[1] if ci else None,
    }


def table1_cells(result: SweepFits) -> list[dict[str, Any]]:
    """Table 1 as records: dataset, group, n_models, then per quantity r2 with its interval."""
    out = []
    for dataset, group, rows in result.groups():
        record: dict[str, Any] = {"dataset": dataset, "group": group, "n_models": _n_models(rows)}
        for q in TABLE1_QUANTITIES:
            row = rows.get(q)
            value, ci = (row.r2, row.r2_ci) if row else (None, None)
            record.update(_bounds(f"{q}_r2", value, ci))
        record["conf_sign_change"] = _sign_flag(rows)
        out.append(record)
    return out


def table2_cells(result: SweepFits) -> list[dict[str, Any]]:
    """Table 2 as records: dataset, group, n_models, alpha_CE, then per quantity
    |alpha_M - alpha_CE| with its interval."""
    out = []
    for dataset, group, rows in result.groups():
        ce = rows.get(CE.key)
        record: dict[str, Any] = {"dataset": dataset, "group": group, "n_models": _n_models(rows)}
        alpha, ci = (ce.alpha, ce.alpha_ci) if ce else (None, None)
        record.update(_bounds("alpha_CE", alpha, ci))
        for q in TABLE2_QUANTITIES:
            row = rows.get(q)
            value, ci = (row.delta_alpha_vs_ce, row.delta_alpha_ci) if row else (None, None)
            record.update(_bounds(f"{q}_delta_alpha", value, ci))
        record["conf_sign_change"] = _sign_flag(rows)
        out.append(record)
    return out


def _table(
    result: SweepFits,
    columns: tuple[str, ...],
    value: Callable[[Rows, str], str],
) -> list[list[str]]:
    body = []
    for dataset, group, rows in result.groups():
        cells = [value(rows, col) for col in columns]
        if _sign_flag(rows) and CONF.key in columns:
            i = columns.index(CONF.key)
            cells[i] += " †"
        body.append([dataset, group, str(_n_models(rows))] + cells)
    return body


def _t1_value(rows: Rows, q: str) -> str:
    row = rows.get(q)
    return _fmt(row.r2, row.r2_ci) if row else MISSING


def _t2_value(rows: Rows, q: str) -> str:
    if q == "alpha_CE":
        row = rows.get(CE.key)
        return _fmt(row.alpha, row.alpha_ci) if row else MISSING
    row = rows.get(q)
    return _fmt(row.delta_alpha_vs_ce, row.delta_alpha_ci) if row else MISSING


T1_HEAD = ("Dataset", "Group", "n", *TABLE1_QUANTITIES)
T2_HEAD = ("Dataset", "Group", "n", "alpha_CE", *TABLE2_QUANTITIES)
T1_CAPTION = (
    "Table 1: R^2 of the fit log|M| = c + alpha log N (bootstrap 95% intervals in brackets)."
)
T2_CAPTION = (
    "Table 2: |alpha_M - alpha_CE| (alpha_CE itself in its own column; "
    "bootstrap 95% intervals in brackets)."
)
DAGGER_NOTE = "† Confidence changes sign across these models; the log|Conf| fit hides the sign."


def _markdown(head: tuple[str, ...], body: list[list[str]], caption: str) -> str:
    lines = [caption, "", "| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    if any("†" in cell for row in body for cell in row):
        lines += ["", DAGGER_NOTE]
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
}


def latex_escape(text: str) -> str:
    """Text safe inside a LaTeX table cell."""
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in text)


def _latex_cell(text: str) -> str:
    dagger = text.endswith(" †")
    text = text.removesuffix(" †")
    if text == MISSING:
        out = "--"
    elif " [" in text:
        value, interval = text.split(" [", 1)
        out = f"{value} {{\\scriptsize [{interval}}}"
    else:
        out = latex_escape(text)
    return out + ("$^\\dagger$" if dagger else "")


def _latex(head: tuple[str, ...], body: list[list[str]], caption: str, label: str) -> str:
    latex_head = [latex_escape(h) for h in head]
    latex_head = [r"$\alpha_{\mathrm{CE}}$" if h == r"alpha\_CE" else h for h in latex_head]
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        f"\\caption{{{latex_escape(caption)}}}",
        f"\\label{{{label}}}",
        r"\begin{tabular}{ll r " + "c" * (len(head) - 3) + "}",
        r"\toprule",
        " & ".join(latex_head) + r" \\",
        r"\midrule",
    ]
    previous = None
    for row in body:
        if previous is not None and row[0] != previous:
            lines.append(r"\midrule")
        dataset = latex_escape(row[0]) if row[0] != previous else ""
        previous = row[0]
        lines.append(
            " & ".join([dataset, latex_escape(row[1]), row[2]] + [_latex_cell(c) for c in row[3:]])
            + r" \\"
        )
    lines += [r"\bottomrule", r"\end{tabular}"]
    if any("†" in cell for row in body for cell in row):
        lines.append(
            r"\par\footnotesize $^\dagger$ Confidence changes sign across these models; "
            r"the $\log|\mathrm{Conf}|$ fit hides the sign."
        )
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def _csv(records: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    if not records:
        return ""
    writer = csv.DictWriter(buffer, fieldnames=list(records[0]), lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow(
            {
                k: ("" if v is None else repr(v) if isinstance(v, float) else v)
                for k, v in record.items()
            }
        )
    return buffer.getvalue()


def table1_markdown(result: SweepFits) -> str:
    """Table 1 (R^2 per dataset and group) as a Markdown table."""
    return _markdown(T1_HEAD, _table(result, TABLE1_QUANTITIES, _t1_value), T1_CAPTION)


def table2_markdown(result: SweepFits) -> str:
    """Table 2 (|alpha_M - alpha_CE| per dataset and group) as a Markdown table."""
    return _markdown(
        T2_HEAD, _table(result, ("alpha_CE",) + TABLE2_QUANTITIES, _t2_value), T2_CAPTION
    )


def table1_latex(result: SweepFits) -> str:
    """Table 1 as a booktabs LaTeX table."""
    return _latex(T1_HEAD, _table(result, TABLE1_QUANTITIES, _t1_value), T1_CAPTION, "tab:r2")


def table2_latex(result: SweepFits) -> str:
    """Table 2 as a booktabs LaTeX table."""
    return _latex(
        T2_HEAD,
        _table(result, ("alpha_CE",) + TABLE2_QUANTITIES, _t2_value),
        T2_CAPTION,
        "tab:delta-alpha",
    )


RBP_HEAD = ("Dataset", "Group", "n", "law", "alpha", "R^2")
RBP_CAPTION = (
    "Relative-based law: log(-log RBP_k) = c + alpha log N per k (RBP_k: share of tokens ranked "
    "below k), beside CE and EE; bootstrap 95% intervals in brackets."
)


def _rbp_law(k: int) -> str:
    return f"-log RBP_{k}"


def _rbp_groups(result: SweepFits) -> list[tuple[str, str, list[RbpFitRow]]]:
    """``(dataset, group, rows by k)`` in file order."""
    grouped: dict[tuple[str, str], list[RbpFitRow]] = {}
    for row in result.rbp_fits:
        grouped.setdefault((row.dataset, row.group), []).append(row)
    return [(d, g, sorted(rows, key=lambda r: r.k)) for (d, g), rows in grouped.items()]


def rbp_cells(result: SweepFits) -> list[dict[str, Any]]:
    """The relative-based table as records: dataset, group, n_models, law (``-log RBP_k``, then
    CE and EE of the same group), k (None for CE and EE), alpha and R^2 with their intervals,
    and why a fit was skipped."""
    out = []
    for dataset, group, rows in _rbp_groups(result):
        laws: list[tuple[str, int | None, RbpFitRow | FitRow | None]] = [
            (_rbp_law(r.k), r.k, r) for r in rows
        ]
        laws += [(q.key, None, result.fit(dataset, group, q.key)) for q in (CE, EE)]
        for law, k, row in laws:
            record: dict[str, Any] = {
                "dataset": dataset,
                "group": group,
                "n_models": row.n_models if row else None,
                "law": law,
                "k": k,
            }
            record.update(_bounds("alpha", *((row.alpha, row.alpha_ci) if row else (None, None))))
            record.update(_bounds("r2", *((row.r2, row.r2_ci) if row else (None, None))))
            record["skipped"] = row.skipped if row else None
            out.append(record)
    return out


def _rbp_body(result: SweepFits) -> list[list[str]]:
    return [
        [
            r["dataset"],
            r["group"],
            "" if r["n_models"] is None else str(r["n_models"]),
            r["law"],
            _fmt(r["alpha"], (r["alpha_lo"], r["alpha_hi"]) if r["alpha_lo"] is not None else None),
            _fmt(r["r2"], (r["r2_lo"], r["r2_hi"]) if r["r2_lo"] is not None else None),
        ]
        for r in rbp_cells(result)
    ]


def rbp_markdown(result: SweepFits) -> str:
    """The relative-based table (alpha_k and R^2 by k, beside CE and EE) as Markdown."""
    return _markdown(RBP_HEAD, _rbp_body(result), RBP_CAPTION)


def rbp_latex(result: SweepFits) -> str:
    """The relative-based table as a booktabs LaTeX table."""
    return _latex(RBP_HEAD, _rbp_body(result), RBP_CAPTION, "tab:rbp")


def write_tables(result: SweepFits, directory: Path | str) -> dict[str, Path]:
    """Write table1.{md,csv,tex} and table2.{md,csv,tex} into ``directory``, and
    rbp.{md,csv,tex} when the fits hold relative-based rows."""
    directory = Path(directory)
    texts = {
        "table1.md": table1_markdown(result),
        "table1.csv": _csv(table1_cells(result)),
        "table1.tex": table1_latex(result),
        "table2.md": table2_markdown(result),
        "table2.csv": _csv(table2_cells(result)),
        "table2.tex": table2_latex(result),
    }
    if result.rbp_fits:
        texts |= {
            "rbp.md": rbp_markdown(result),
            "rbp.csv": _csv(rbp_cells(result)),
            "rbp.tex": rbp_latex(result),
        }
    written = {}
    for name, text in texts.items():
        atomic_write_text(directory / name, text)
        written[name] = directory / name
    return written
