"""The training-objectives section of a report: one ladder per objective, side by side.

A sweep whose families are training objectives (the same models, data, seeds and steps, trained
under different losses) says so in ``objectives.json``; this section then shows, per objective,
each model's held-out CE, EE, SA, Conf, top-1 and RBP_k, the power laws of CE and EE (alpha, R^2
and their bootstrap intervals, the family fits of ``fits.json``), whether EE's law is cleaner
than CE's under that objective (the paired R^2 difference), and CE and EE against N, one line
per objective.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from errorentropy.fits.fit import read_fits
from errorentropy.fits.records import SweepFits
from errorentropy.report.table import Cell, Column, Table
from errorentropy.storage import atomic_write_text, read_checked_json, write_checked_json
from errorentropy.sweep.cells import load_cells

OBJECTIVES_FILE = "objectives.json"  # in a sweep folder: the families that are objectives
FIGURE_STEM = "objectives"
COMPONENTS = (
    ("CE", "cross_entropy"),
    ("EE", "error_entropy"),
    ("SA", "self_alignment"),
    ("Conf", "confidence"),
)


def write_objectives_list(sweep_dir: Path, objectives: Sequence[str]) -> None:
    """Mark ``sweep_dir``'s families ``objectives`` (in this order) as training objectives."""
    write_checked_json(Path(sweep_dir) / OBJECTIVES_FILE, {"objectives": list(objectives)})


def read_objectives(sweep_dir: Path) -> list[str]:
    """The objectives of ``sweep_dir`` in order; [] for an ordinary sweep."""
    path = Path(sweep_dir) / OBJECTIVES_FILE
    if not path.exists():
        return []
    return list(read_checked_json(path, "objectives list")["objectives"])


def objective_rows(sweep_dir: Path, objectives: Sequence[str]) -> list[dict[str, Any]]:
    """Per objective, dataset and model (smallest first): the final checkpoint's held-out
    components (nats per token), top-1 accuracy and RBP_k (from the fits' RBP rows)."""
    rbp: dict[tuple[str, str, str], dict[str, float | None]] = {}
    for row in read_fits(sweep_dir).rbp_fits:
        for model, value in zip(row.models, row.rbp):
            rbp.setdefault((row.group, row.dataset, model), {})[f"RBP_{row.k}"] = value
    finals: dict[tuple[str, str, str], Any] = {}
    for cell in load_cells(sweep_dir):
        key = (cell.family, cell.key.dataset, cell.key.model)
        if cell.family in objectives and (
            key not in finals or (cell.step or 0) > (finals[key].step or 0)
        ):
            finals[key] = cell
    rows = []
    for (family, dataset, model), cell in finals.items():
        s = cell.summary
        rows.append(
            {
                "objective": family,
                "dataset": dataset,
                "model": model,
                "non_embedding_params": cell.non_embedding_params,
                **{name: s[key] for name, key in COMPONENTS},
                "top1": s["top1_accuracy"],
                **rbp.get((family, dataset, model), {}),
            }
        )
    order = {name: i for i, name in enumerate(objectives)}
    rows.sort(key=lambda r: (r["dataset"], order[r["objective"]], r["non_embedding_params"]))
    return rows


def objective_fits(sweep_dir: Path, objectives: Sequence[str]) -> list[dict[str, Any]]:
    """Per objective and dataset: the CE and EE power laws (alpha, R^2, intervals) and the
    paired R^2(EE) - R^2(CE) with its interval and what it says."""
    fits: SweepFits = read_fits(sweep_dir)
    laws = {(r.group, r.dataset, r.quantity): r for r in fits.fits}
    paired = {(r.group, r.dataset): r for r in fits.r2_ee_vs_ce}
    rows = []
    for dataset in sorted({d for _, d, _ in laws}):
        for objective in objectives:
            row: dict[str, Any] = {"objective": objective, "dataset": dataset}
            for q in ("CE", "EE"):
                law = laws.get((objective, dataset, q))
                for k in ("alpha", "alpha_ci", "r2", "r2_ci"):
                    value = getattr(law, k) if law is not None else None
                    row[f"{q}_{k}"] = list(value) if isinstance(value, tuple) else value
            pair = paired.get((objective, dataset))
            row["r2_ee_minus_ce"] = pair.difference_ee_minus_ce if pair else None
            ci = pair.difference_ci if pair else None
            row["r2_difference_ci"] = list(ci) if ci is not None else None
            row["ee_cleaner"] = _cleaner(
                row["r2_ee_minus_ce"], row["r2_difference_ci"], row["CE_alpha"]
            )
            rows.append(row)
    return rows


def _cleaner(
    difference: float | None, ci: Sequence[float] | None, ce_alpha: float | None = None
) -> str:
    """What the paired R^2 difference says: EE's law cleaner, CE's, or no clear difference; and
    no comparison where CE does not fall with N (an objective that did not learn to scale, whose
    R^2 compares two bad fits)."""
    if ce_alpha is not None and ce_alpha >= 0:
        return "no scaling: CE does not fall with N"
    if difference is None:
        return "not fitted"
    if ci is None:
        return "EE (no interval)" if difference > 0 else "CE (no interval)"
    if ci[0] > 0:
        return "yes: EE cleaner"
    if ci[1] < 0:
        return "no: CE cleaner"
    return "no clear difference"


def draw_objectives_figure(
    rows: Sequence[dict[str, Any]], objectives: Sequence[str], stem: Path
) -> tuple[Path, Path]:
    """CE (solid) and EE (dashed) against non-embedding parameters, one colour per objective,
    one panel per dataset; written as ``stem.png`` and ``stem.svg``."""
    import matplotlib  # here: `errorentropy --help` must not load it

    from errorentropy.report import figures

    datasets = sorted({r["dataset"] for r in rows})
    fig, axes = figures._grid(len(datasets))
    colours = matplotlib.colormaps["tab10"](range(len(objectives)))
    for ax, dataset in zip(axes, datasets):
        for colour, objective in zip(colours, objectives):
            here = [r for r in rows if r["dataset"] == dataset and r["objective"] == objective]
            n = [r["non_embedding_params"] for r in here]
            ax.plot(n, [r["CE"] for r in here], "o-", color=colour, label=f"{objective} CE")
            ax.plot(n, [r["EE"] for r in here], "s--", color=colour, label=f"{objective} EE")
        ax.set_xscale("log")
        ax.set_xlabel("non-embedding parameters N")
        ax.set_ylabel("nats per token")
        ax.set_title(dataset)
        ax.legend(fontsize=7)
    return figures.save_figure(
        figures._finish(fig, "CE (solid) and EE (dashed) per training objective"), stem
    )


def _interval(ci: Sequence[float] | None) -> tuple[float, float] | None:
    return None if ci is None else (float(ci[0]), float(ci[1]))


def components_table(rows: Sequence[dict[str, Any]]) -> Table:
    """Each objective's final models: held-out CE, EE, SA, Conf, top-1 and RBP_k."""
    ks = sorted({k for r in rows for k in r if k.startswith("RBP_")}, key=lambda k: int(k[4:]))
    heads = ["objective", "dataset", "model", "N", *(c for c, _ in COMPONENTS), "top-1", *ks]
    keys = ["objective", "dataset", "model", "non_embedding_params", *(c for c, _ in COMPONENTS)]
    columns = tuple(Column(h, k) for h, k in zip(heads, [*keys, "top1", *ks]))
    table = Table(
        "objectives-components",
        "Held-out components of each objective's final models (nats per token)",
        columns,
    )
    for r in rows:
        n = r["non_embedding_params"]
        table.rows.append(
            (
                Cell(r["objective"]),
                Cell(r["dataset"]),
                Cell(r["model"]),
                Cell(n, shown=f"{n:,}"),
                *(Cell(r[c]) for c, _ in COMPONENTS),
                Cell(r["top1"]),
                *(Cell(r.get(k)) for k in ks),
            )
        )
    return table


def laws_table(fit_rows: Sequence[dict[str, Any]]) -> Table:
    """Per objective: CE's and EE's power laws with intervals, and whether EE's is cleaner."""
    laws = [(q, k) for q in ("CE", "EE") for k in ("alpha", "r2")]
    shown = {"alpha": "α", "r2": "R²"}
    columns = (
        Column("objective", "objective"),
        Column("dataset", "dataset"),
        *(Column(f"{shown[k]}({q})", f"{q}_{k}", interval=True) for q, k in laws),
        Column("R²(EE) − R²(CE)", "r2_ee_minus_ce", interval=True),
        Column("EE's law cleaner?", "ee_cleaner"),
    )
    table = Table(
        "objectives-laws",
        "Power laws per objective (95% bootstrap intervals), and whether EE's is cleaner",
        columns,
    )
    for f in fit_rows:
        table.rows.append(
            (
                Cell(f["objective"]),
                Cell(f["dataset"]),
                *(Cell(f[f"{q}_{k}"], _interval(f[f"{q}_{k}_ci"])) for q, k in laws),
                Cell(f["r2_ee_minus_ce"], _interval(f["r2_difference_ci"])),
                Cell(f["ee_cleaner"]),
            )
        )
    return table


def section_markdown(tables: Sequence[Table], png: str) -> str:
    """The section in Markdown, its figure at the relative path ``png``."""
    md = ["", "## Training objectives", "", f"![CE and EE per training objective]({png})", ""]
    return "\n".join(md) + "\n" + "\n".join(t.markdown() for t in tables)


def section_html(tables: Sequence[Table], png: Path) -> str:
    """The section in HTML, its figure inline."""
    encoded = base64.b64encode(png.read_bytes()).decode("ascii")
    h = [
        '<h2 id="objectives">Training objectives</h2>',
        f'<figure><img class="figure" alt="CE and EE per training objective" '
        f'src="data:image/png;base64,{encoded}"></figure>',
        *(t.html() for t in tables),
    ]
    return "\n".join(h) + "\n"


def append_objectives_section(sweep_dir: Path, md_path: Path, html_path: Path) -> list[str]:
    """Add the training-objectives section to the written report of a sweep whose families are
    objectives (:func:`write_objectives_list`); returns the figure files drawn (none for an
    ordinary sweep)."""
    sweep_dir = Path(sweep_dir)
    objectives = read_objectives(sweep_dir)
    if not objectives:
        return []
    rows = objective_rows(sweep_dir, objectives)
    tables = [components_table(rows), laws_table(objective_fits(sweep_dir, objectives))]
    png, svg = draw_objectives_figure(rows, objectives, sweep_dir / "figures" / FIGURE_STEM)
    md = md_path.read_text(encoding="utf-8")
    rel = png.relative_to(sweep_dir).as_posix()
    atomic_write_text(md_path, md + section_markdown(tables, rel))
    page = html_path.read_text(encoding="utf-8")
    head, tail = page.rsplit("</body>", 1)
    atomic_write_text(html_path, head + section_html(tables, png) + "</body>" + tail)
    return [str(png), str(svg)]
