"""Every table of the fits, each built once from a :class:`~errorentropy.fits.records.SweepFits`
(the content of fits.json) as a :class:`~errorentropy.report.table.Table`, which renders it as
Markdown, LaTeX, CSV and HTML: ``errorentropy fit`` prints and writes the same table the report
shows.

Table 1 is R^2 of the log-log fit per (dataset, group), groups being the families then "All";
Table 2 is alpha_CE, |alpha_M - alpha_CE| and alpha_M for EE, SA and Conf. A skipped fit shows
n/a; a dagger marks Conf where Confidence changes sign across the group's models. A dataset of
one family has an "All" group holding the same models, so the same numbers: it is shown once,
under the family's name, and a note says so. Also here: the components of each final cell, the
relative-based law by k, the extrapolation test, the saturating fit, the bias left in each cell's
EE and whether EE's exponent has settled.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from errorentropy.fits.powerlaw import MIN_MODELS
from errorentropy.fits.records import (
    ALL_GROUP,
    CellConvergence,
    ExponentConvergence,
    FitRow,
    RbpFitRow,
    SweepFits,
)
from errorentropy.report.table import MISSING, Cell, Column, Table, Value, latex_escape
from errorentropy.stats.quantities import CE, COMPONENTS, CONF, EE, QUANTITIES
from errorentropy.storage import atomic_write_text

__all__ = [
    "MISSING",
    "TABLE1_QUANTITIES",
    "TABLE2_QUANTITIES",
    "Table",
    "latex_escape",
    "rbp_cells",
    "rbp_markdown",
    "table1",
    "table1_cells",
    "table1_markdown",
    "table2",
    "table2_cells",
    "table2_markdown",
    "write_tables",
]

TABLE1_QUANTITIES = tuple(q.key for q in QUANTITIES)  # CE, EE, SA, Conf
TABLE2_QUANTITIES = tuple(q.key for q in COMPONENTS)  # EE, SA, Conf

Rows = dict[str, FitRow]  # quantity key -> fit row of one (dataset, group)


def twin_of_all(fits: SweepFits, dataset: str) -> str | None:
    """The family whose models are exactly the dataset's ``"All"`` group (a dataset of one
    family), or None; its fits and the All fits are the same numbers, so they are shown once,
    under the family's name."""
    members = {
        r.group: r.models for r in fits.fits if r.dataset == dataset and r.quantity == CE.key
    }
    everyone = members.get(ALL_GROUP)
    twins = [g for g, models in members.items() if g != ALL_GROUP and models == everyone]
    return twins[0] if everyone is not None and twins else None


def hidden(fits: SweepFits, dataset: str, group: str) -> bool:
    """Whether a (dataset, group) is the All group of a one-family dataset (shown as the
    family)."""
    return group == ALL_GROUP and twin_of_all(fits, dataset) is not None


def shown_groups(fits: SweepFits) -> list[tuple[str, str, Rows]]:
    """``(dataset, group, rows)`` in file order, the All twin of a lone family left out."""
    return [(d, g, rows) for d, g, rows in fits.groups() if not hidden(fits, d, g)]


def _twins_note(fits: SweepFits) -> str:
    """Which families stand for their dataset's All group, or ""."""
    twins: dict[str, list[str]] = {}  # family -> the datasets where it holds every model
    for dataset in dict.fromkeys(r.dataset for r in fits.fits):
        twin = twin_of_all(fits, dataset)
        if twin is not None:
            twins.setdefault(twin, []).append(dataset)
    if not twins:
        return ""
    listed = "; ".join(f"{t} on {', '.join(ds)}" for t, ds in twins.items())
    return (
        f"One family holds every model ({listed}): its rows are also the fits over all models "
        f"({ALL_GROUP}), shown once."
    )


def _fit_note(fits: SweepFits) -> str:
    if not fits.fitted_rows():
        return (
            f"No group has {MIN_MODELS} or more models with distinct sizes, so nothing was fitted."
        )
    return _twins_note(fits)


def _brackets(fits: SweepFits) -> str:
    if any(r.r2_ci is not None or r.alpha_ci is not None for r in fits.fits):
        return " (95% bootstrap intervals in brackets)"
    return " (no intervals: plain least squares)"


def _flips(rows: Rows) -> bool:
    conf = rows.get(CONF.key)
    return conf is not None and conf.conf_sign_change


_HEAD = (Column("Dataset", "dataset"), Column("Group", "group"), Column("n", "n_models"))
_FLAG = Column("Conf sign change", "conf_sign_change", shown=False)


def _head(dataset: str, group: str, rows: Rows) -> tuple[Cell, Cell, Cell]:
    n = max((r.n_models for r in rows.values()), default=0)
    return Cell(dataset), Cell(group), Cell(n)


def _fit_table(
    fits: SweepFits,
    head: tuple[str, str, str],
    columns: list[Column],
    cells: Callable[[Rows], list[Cell]],
) -> Table:
    """A table of one row per shown (dataset, group): names and model count, ``cells(rows)``,
    and the sign-change flag (CSV only). ``head`` is the ident, caption and LaTeX label."""
    ident, caption, label = head
    table = Table(
        ident,
        caption + _brackets(fits),
        (*_HEAD, *columns, _FLAG),
        note=_fit_note(fits),
        label=label,
    )
    for dataset, group, rows in shown_groups(fits):
        table.rows.append((*_head(dataset, group, rows), *cells(rows), Cell(_flips(rows))))
    return table


def _cell(rows: Rows, q: str, value: str, interval: str) -> Cell:
    """Quantity ``q``'s number named ``value`` with its interval, the dagger on Conf's when
    Confidence changes sign."""
    row, dagger = rows.get(q), q == CONF.key and _flips(rows)
    if row is None:
        return Cell(dagger=dagger)
    return Cell(getattr(row, value), getattr(row, interval), dagger=dagger)


def table1(fits: SweepFits) -> Table:
    """Table 1: R^2 of ``log|M| = c + alpha log N`` per (dataset, group) and quantity."""
    return _fit_table(
        fits,
        ("table1", "Table 1: R² of the fit log|M| = c + α log N", "tab:r2"),
        [Column(q, f"{q}_r2", interval=True) for q in TABLE1_QUANTITIES],
        lambda rows: [_cell(rows, q, "r2", "r2_ci") for q in TABLE1_QUANTITIES],
    )


def _alpha_head(q: str) -> str:
    return rf"$\alpha_{{\mathrm{{{q}}}}}$"


def table2(fits: SweepFits) -> Table:
    """Table 2: alpha_CE, |alpha_M - alpha_CE| and alpha_M of EE, SA and Conf per (dataset,
    group); the dagger sits on |alpha_Conf - alpha_CE|."""
    parts = TABLE2_QUANTITIES
    columns = [
        Column("α_CE", "alpha_CE", interval=True, latex=_alpha_head(CE.key)),
        *[
            Column(f"|Δα| {q}", f"{q}_delta_alpha", interval=True, latex=rf"$|\Delta\alpha|$ {q}")
            for q in parts
        ],
        *[Column(f"α_{q}", f"alpha_{q}", interval=True, latex=_alpha_head(q)) for q in parts],
    ]

    def cells(rows: Rows) -> list[Cell]:
        alpha_ce = Cell(rows[CE.key].alpha, rows[CE.key].alpha_ci) if CE.key in rows else Cell()
        deltas = [_cell(rows, q, "delta_alpha_vs_ce", "delta_alpha_ci") for q in parts]
        alphas = [replace(_cell(rows, q, "alpha", "alpha_ci"), dagger=False) for q in parts]
        return [alpha_ce, *deltas, *alphas]

    head = ("table2", "Table 2: |α_M − α_CE|, and each exponent α_M", "tab:delta-alpha")
    return _fit_table(fits, head, columns, cells)


def fit_tables(fits: SweepFits) -> list[Table]:
    """Table 1 and Table 2."""
    return [table1(fits), table2(fits)]


def components_table(fits: SweepFits) -> Table:
    """Per final cell: N, tokens, CE, EE, SA and Conf with their bootstrap intervals when the
    fit gives them, and EE/CE."""
    columns = (
        Column("Dataset", "dataset"),
        Column("Family", "family"),
        Column("Model", "model"),
        Column("N (non-emb.)", "non_embedding_params"),
        Column("Tokens", "n_tokens"),
        *[Column(q.key, q.key, interval=True) for q in QUANTITIES],
        Column("EE / CE", "ee_share"),
    )
    table = Table(
        "components",
        "Components of the final revision of each model (nats per token; 95% interval in brackets)",
        columns,
    )
    finals = [c for c in fits.cells if c.final]
    for cell in sorted(
        finals, key=lambda c: (c.dataset, c.non_embedding_params, c.family, c.model)
    ):
        comps = [cell.components.get(q.key) for q in QUANTITIES]
        ee, ce = cell.components.get(EE.key), cell.components.get(CE.key)
        share = None
        if ee and ce and ee.value is not None and ce.value:
            share = ee.value / ce.value
        n, tokens = cell.non_embedding_params, cell.n_tokens or 0
        table.rows.append(
            (
                Cell(cell.dataset),
                Cell(cell.family),
                Cell(cell.model + (f"@{cell.revision}" if cell.revision else "")),
                Cell(n, shown=f"{n:,}"),
                Cell(tokens, shown=f"{tokens:,}"),
                *[Cell(c.value, c.ci) if c else Cell() for c in comps],
                Cell(share, digits=3),
            )
        )
    return table


RBP_CAPTION = (
    "Relative-based law: log(-log RBP_k) = c + alpha log N by k, beside CE and EE "
    "(bootstrap 95% intervals in brackets)"
)
RBP_NOTE = (
    "RBP_k is the share of tokens whose ground truth ranks below k (ties count for it; "
    "arXiv 2510.20387 counts them against it, a difference of at most n_tied / n_tokens)."
)


def _rbp_groups(fits: SweepFits) -> list[tuple[str, str, list[RbpFitRow]]]:
    """``(dataset, group, rows by k)`` in file order, the All twin of a lone family left out."""
    grouped: dict[tuple[str, str], list[RbpFitRow]] = {}
    for row in fits.rbp_fits:
        if not hidden(fits, row.dataset, row.group):
            grouped.setdefault((row.dataset, row.group), []).append(row)
    return [(d, g, sorted(rows, key=lambda r: r.k)) for (d, g), rows in grouped.items()]


def rbp_table(fits: SweepFits) -> Table:
    """alpha_k and R^2 of ``log(-log RBP_k) = c + alpha_k log N`` by k, with CE's and EE's of
    the same group (CSV: also k and why a fit was skipped)."""
    columns = (
        *_HEAD,
        Column("law", "law"),
        Column("k", "k", shown=False),
        Column("alpha", "alpha", interval=True),
        Column("R^2", "r2", interval=True),
        Column("skipped", "skipped", shown=False),
    )
    table = Table("rbp", RBP_CAPTION, columns, note=RBP_NOTE, label="tab:rbp")
    for dataset, group, rows in _rbp_groups(fits):
        laws: list[tuple[str, int | None, RbpFitRow | FitRow | None]] = [
            (f"-log RBP_{r.k}", r.k, r) for r in rows
        ]
        laws += [(q.key, None, fits.fit(dataset, group, q.key)) for q in (CE, EE)]
        for law, k, row in laws:
            n = row.n_models if row else None
            table.rows.append(
                (
                    Cell(dataset),
                    Cell(group),
                    Cell(n, shown="" if n is None else None),
                    Cell(law),
                    Cell(k),
                    Cell(row.alpha, row.alpha_ci) if row else Cell(),
                    Cell(row.r2, row.r2_ci) if row else Cell(),
                    Cell(row.skipped if row else None),
                )
            )
    return table


def extrapolation_table(fits: SweepFits) -> Table | None:
    """The fit-on-small, predict-large test: one row per (dataset, group, quantity); None when
    it did not run."""
    if not fits.extrapolation:
        return None
    heads = ("Dataset", "Group", "Quantity", "Fitted on", "Held out", "α (small models)")
    keys = ("dataset", "group", "quantity", "fit_models", "heldout", "alpha")
    table = Table(
        "extrapolation",
        "Extrapolation: power law fitted on the smaller models, predicting the largest "
        "(mean |relative error|, 95% interval)",
        (
            *[Column(h, k) for h, k in zip(heads, keys)],
            Column("mean |rel. error|", "mean_abs_relative_error", interval=True),
        ),
    )
    for r in fits.extrapolation:
        if hidden(fits, r.dataset, r.group):
            continue
        head = (Cell(r.dataset), Cell(r.group), Cell(r.quantity))
        if r.skipped:
            table.rows.append(
                (*head, Cell(""), Cell(str(r.holdout)), Cell("skipped"), Cell(r.skipped))
            )
            continue
        table.rows.append(
            (
                *head,
                Cell(f"{len(r.fit_models)} models"),
                Cell(", ".join(h.model for h in r.heldout)),
                Cell(r.alpha),
                Cell(r.mean_abs_relative_error, r.mean_abs_relative_error_ci),
            )
        )
    return table


def saturating_table(fits: SweepFits) -> Table | None:
    """The saturating law ``M = a N^(-α) + E`` per (dataset, group, quantity), when it ran."""
    rows = [
        r for r in fits.fits if r.saturating is not None and not hidden(fits, r.dataset, r.group)
    ]
    if not rows:
        return None
    heads = ("Dataset", "Group", "Quantity", "a", "α", "E (asymptote)", "R²")
    keys = ("dataset", "group", "quantity", "a", "alpha", "E", "r2")
    table = Table(
        "saturating",
        "Saturating fit M = a N^(−α) + E (a > 0: falls to the floor E; a < 0: rises to the "
        "ceiling E; R² on the linear scale)",
        tuple(Column(h, k) for h, k in zip(heads, keys)),
    )
    for r in rows:
        sat = r.saturating
        assert sat is not None
        head = (Cell(r.dataset), Cell(r.group), Cell(r.quantity))
        if sat.converged:
            a = Cell(sat.a, shown=None if sat.a is None else f"{sat.a:.4g}")
            table.rows.append((*head, a, Cell(sat.alpha), Cell(sat.e), Cell(sat.r2)))
        else:
            reason = f"not fitted: {sat.reason or 'did not converge'}"
            table.rows.append((*head, Cell(), Cell(), Cell(), Cell(reason)))
    return table


def si(n: float) -> str:
    """``n`` with a k, M or B suffix and three significant digits."""
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:.3g}"


def _share_cell(row: CellConvergence) -> Cell:
    """The bias and its interval as a share of the spread of EE across models (percent)."""
    relative = row.relative()
    if relative is None:
        return Cell()
    value, (lo, hi) = relative
    shown = f"{100 * value:.1f}% [{100 * lo:.1f}%, {100 * hi:.1f}%]"
    return Cell(value, (lo, hi), shown=shown)


CONVERGENCE_NOTE = (
    "Bias left: how much each cell's plug-in EE still reads low because rare ranks are still "
    "being discovered, estimated from 50 random halves of its documents with a heavy-tail factor "
    "(95% interval; docs/fit.md). Share: the bias as a share of the spread (max - min) of EE "
    "across the dataset's models. Miller-Madow, Grassberger and Chao-Shen are bias-corrected EE "
    "from the same counts."
)


def convergence_table(fits: SweepFits) -> Table | None:
    """The bias left in each final cell's EE (nats, and as a share of the spread of EE across
    the models) beside the bias-corrected estimators; None without bias checks."""
    rows = [r for r in fits.convergence if r.final]
    if not rows:
        return None
    note = CONVERGENCE_NOTE
    others = [r.check.bias for r in fits.convergence if not r.final and r.check.bias]
    if others:
        note += (
            f" At other revisions the bias left ranges over {min(others):+.4f} to "
            f"{max(others):+.4f} nats."
        )
    heads = ("Dataset", "Model", "N", "documents", "EE")
    keys = ("dataset", "model", "non_embedding_params", "n_documents", "error_entropy")
    columns = (
        *[Column(h, k) for h, k in zip(heads, keys)],
        Column("bias left", "bias", interval=True),
        Column("share of spread", "relative_bias", interval=True),
        Column("EE + bias", "corrected"),
        Column("Miller-Madow", "miller_madow"),
        Column("Grassberger", "grassberger"),
        Column("Chao-Shen", "chao_shen"),
    )
    table = Table(
        "convergence",
        "How large is the bias left in EE with the documents scored?",
        columns,
        note=note,
    )
    for r in rows:
        c = r.check
        table.rows.append(
            (
                Cell(r.dataset),
                Cell(r.model),
                Cell(r.non_embedding_params, shown=si(r.non_embedding_params)),
                Cell(c.n_documents),
                Cell(c.error_entropy),
                Cell(c.bias, c.interval),
                _share_cell(r),
                Cell(c.corrected),
                Cell(c.error_entropy_miller_madow),
                Cell(c.error_entropy_grassberger),
                Cell(c.error_entropy_chao_shen),
            )
        )
    return table


def shown_exponent(fits: SweepFits, dataset: str) -> ExponentConvergence | None:
    """The exponent check the report states for a dataset: its All group's (its family's when
    All is that family again), or its first group's; None without one."""
    shown = [
        e for e in fits.ee_exponent if e.dataset == dataset and not hidden(fits, dataset, e.group)
    ]
    return next((e for e in shown if e.group == ALL_GROUP), shown[0] if shown else None)


EXPONENT_NOTE = (
    "Settled: alpha fitted on random halves of the documents moves from alpha on all of them by "
    "at most half the half-width of alpha's bootstrap interval, the Monte Carlo error of the "
    "mean shift included (bound). A settled exponent can sit on a level that still carries a "
    "bias (the bias-left table)."
)


def exponent_table(fits: SweepFits) -> Table | None:
    """Whether EE's exponent has settled per shown (dataset, group): alpha on all documents,
    its mean shift on random halves, the shift's bound and the shift allowed; None without
    exponent checks."""
    checks = [e for e in fits.ee_exponent if not hidden(fits, e.dataset, e.group)]
    if not checks:
        return None
    columns = (
        Column("Dataset", "dataset"),
        Column("Group", "group"),
        Column("models", "n_models"),
        Column("alpha (all documents)", "alpha_all", interval=True),
        Column("mean shift on halves", "shift"),
        Column("bound", "shift_bound"),
        Column("allowed", "allowed"),
        Column("settled", "settled"),
    )
    caption = "Has EE's exponent settled with the documents scored?"
    table = Table("ee-exponent", caption, columns, note=EXPONENT_NOTE)
    verdict = {True: "yes", False: "NO", None: MISSING}
    for e in checks:
        c = e.check
        allowed = None if c.alpha_halfwidth is None else c.tolerance * c.alpha_halfwidth
        table.rows.append(
            (
                Cell(e.dataset),
                Cell(e.group),
                Cell(c.n_models),
                Cell(c.alpha_all, e.alpha_ci),
                Cell(c.shift, shown=f"{c.shift:+.4f}"),
                Cell(c.shift_bound),
                Cell(allowed),
                Cell(c.settled, shown=verdict[c.settled]),
            )
        )
    return table


def table1_cells(fits: SweepFits) -> list[dict[str, Value]]:
    """Table 1 as records (the CSV's columns, values unformatted)."""
    return table1(fits).records()


def table2_cells(fits: SweepFits) -> list[dict[str, Value]]:
    """Table 2 as records (the CSV's columns, values unformatted)."""
    return table2(fits).records()


def rbp_cells(fits: SweepFits) -> list[dict[str, Value]]:
    """The relative-based table as records: dataset, group, n_models, law, k (None for CE and
    EE), alpha and R^2 with their intervals, and why a fit was skipped."""
    return rbp_table(fits).records()


def table1_markdown(fits: SweepFits) -> str:
    """Table 1 as Markdown (what ``errorentropy fit`` prints)."""
    return table1(fits).markdown()


def table2_markdown(fits: SweepFits) -> str:
    """Table 2 as Markdown."""
    return table2(fits).markdown()


def rbp_markdown(fits: SweepFits) -> str:
    """The relative-based table as Markdown."""
    return rbp_table(fits).markdown()


def write_tables(fits: SweepFits, directory: Path | str) -> dict[str, Path]:
    """Write table1.{md,csv,tex} and table2.{md,csv,tex} into ``directory``, and
    rbp.{md,csv,tex} when the fits hold relative-based rows; returns the paths by name."""
    directory = Path(directory)
    tables = fit_tables(fits) + ([rbp_table(fits)] if fits.rbp_fits else [])
    written = {}
    for table in tables:
        for suffix, text in (
            ("md", table.markdown()),
            ("csv", table.csv()),
            ("tex", table.latex()),
        ):
            name = f"{table.ident}.{suffix}"
            atomic_write_text(directory / name, text)
            written[name] = directory / name
    return written
