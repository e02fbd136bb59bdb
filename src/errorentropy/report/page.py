"""``errorentropy report DIR``: the paper's figures and tables from a sweep folder, as Markdown
and one HTML page.

:func:`build_report` gathers the sweep (:mod:`errorentropy.report.collect`: its cells and its
fits, ``DIR/fits.json`` when it is current for the cells, else one call of
:func:`errorentropy.fits.fit.fit_sweep`, written back), draws the figures
(:mod:`errorentropy.report.draw`) into ``DIR/figures/`` as PNG and SVG, builds the tables
(:mod:`errorentropy.report.tables`, the same objects ``errorentropy fit`` prints) and the words
(:mod:`errorentropy.report.prose`), and assembles them here into

    DIR/report.md     the question, the verdict, the headline figure; figures (linked), tables,
                      detailed statements; settings and notes in <details>
    DIR/report.html   the same, self-contained: figures embedded as base64 PNG data URIs, no
                      JavaScript; the question, verdict and headline figure fill its first screen

The report fits nothing itself: every number comes from the cells or the fits. Missing pieces
(no training steps, no profile, a family with fewer than 3 models) are left out with a note
saying why, never faked.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from errorentropy.errors import as_path_text, check_bool, check_int
from errorentropy.report.collect import ReportData, collect, settings_rows
from errorentropy.report.draw import FigureFile, draw_figures
from errorentropy.report.objectives import append_objectives_section
from errorentropy.report.prose import (
    QUESTION,
    convergence_sentences,
    summary_sentences,
    verdict_sentences,
)
from errorentropy.report.table import Table
from errorentropy.report.tables import (
    components_table,
    convergence_table,
    exponent_table,
    extrapolation_table,
    fit_tables,
    rbp_table,
    saturating_table,
)
from errorentropy.storage import atomic_write_text
from errorentropy.sweep.cells import slug

__all__ = ["build_report", "collect", "write_report"]

FIGURES_DIR = "figures"

# What a reader should look for in each figure, by its number (the ident's prefix).
LOOK_FOR: dict[str, str] = {
    "fig3": "Look for: which component carries CE's fall as training proceeds.",
    "fig4": (
        "Look for: p_e piling up at the low ranks as training proceeds; EE is the entropy of "
        "this distribution, so a steeper curve is a lower EE."
    ),
    "fig5": (
        "Look for: how far the probability at the ground truth's position (dotted) stands above "
        "the ones ranked after it."
    ),
    "fig6": (
        "Look for: the points closing in on the dashed line p = q as training proceeds "
        "(Self-Alignment falling towards 0)."
    ),
    "fig7": (
        "Look for: whether EE's points (top right) sit closer to their line than CE's (top "
        "left); a straight line on these log-log axes is a power law."
    ),
    "fig8": "Look for: how much of CE is EE, and whether that share moves with model size.",
    "rbp": (
        "Look for: whether alpha_k holds steady over small k (one law for the top of the "
        "ranking) and where R^2 falls as k nears the vocabulary; dotted: CE, dashed: EE."
    ),
    "convergence": (
        "Look for: how far the bias bars reach against the gaps between models (the level), "
        "and whether they grow or shrink with N (the exponent)."
    ),
}
FIRST_FIGURES = ("fig7", "fig8", "rbp")  # the scaling figures answer the question: first
LAST_FIGURES = ("convergence",)  # checks on the estimates: last
NO_EXTRAPOLATION = (
    "The fit did not run an extrapolation test (it needs the bootstrap fit and enough models "
    "per group)."
)


def _look_for(fig: FigureFile) -> str:
    return LOOK_FOR.get(fig.ident.split("-", 1)[0], "")


def headline_figure(data: ReportData, figs: Sequence[FigureFile]) -> FigureFile | None:
    """The figure on the first screen: Fig. 7 (each quantity against N with its fit) of the
    first dataset, or of the first dataset that has one; None when none was drawn."""
    first = f"fig7-{slug(data.datasets[0])}" if data.datasets else ""
    scaling = [f for f in figs if f.ident.startswith("fig7-")]
    return next((f for f in scaling if f.ident == first), scaling[0] if scaling else None)


def reading_order(figs: Sequence[FigureFile], headline: FigureFile | None) -> list[FigureFile]:
    """The figures below the first screen: the scaling figures (Fig. 7, 8, RBP_k) first, then
    the rest as drawn, the convergence checks last; the headline figure is not repeated."""

    def rank(f: FigureFile) -> int:
        kind = f.ident.split("-", 1)[0]
        return 0 if kind in FIRST_FIGURES else 2 if kind in LAST_FIGURES else 1

    return sorted((f for f in figs if f is not headline), key=rank)


def _legend(data: ReportData) -> str:
    """How to read the verdict's numbers."""
    brackets = (
        "brackets hold 95% document-bootstrap intervals"
        if data.fits.settings.n_boot > 0
        else "no intervals: plain least squares"
    )
    return (
        "R² is that of the least-squares line log|M| = c + α log N over the non-embedding "
        f"parameters N of every model of a dataset; {brackets}. Each model's cross-entropy "
        "splits exactly as CE = EE + SA − Conf (Error-Entropy, Self-Alignment, Confidence)."
    )


def _byline(data: ReportData) -> str:
    models = len({c.key.model for c in data.cells})
    name = data.sweep_dir.name  # a folder named sweep (or sweep-1) needs no "sweep" before it
    where = name if "sweep" in name.lower() else f"sweep {name}"
    return (
        f"errorentropy report · {where} · {models} models · "
        f"{len(data.cells)} cells · datasets: {', '.join(data.datasets)}"
    )


_CSS = (
    "\n"
    'body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:1240px;'
    "margin:0 auto;padding:.5em 1.2em 2em;color:#222;line-height:1.45}\n"
    ".byline{font-size:.8em;color:#666;margin:.3em 0}"
    "h1{font-size:1.55em;line-height:1.25;margin:.2em 0 .6em}\n"
    "h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}\n"
    ".answer{display:grid;grid-template-columns:minmax(300px,5fr) 7fr;gap:1.6em;"
    "align-items:start}\n"
    "#verdict p{margin:0 0 .65em}#verdict p.lead{font-size:1.12em;font-weight:600}"
    ".legend{font-size:.82em;color:#555}\n"
    "figure.headline{margin:0}figure.headline img{display:block;width:auto;height:auto;"
    "max-width:100%;max-height:calc(100vh - 12.5em)}\n"
    "@media (max-width:900px){.answer{display:block}}\n"
    "table{border-collapse:collapse;margin:1em 0;font-size:.85em}"
    "caption{font-weight:600;text-align:left;padding:.3em 0}\n"
    "th,td{border:1px solid #bbb;padding:.25em .5em;text-align:right}th{background:#f0f0f0}"
    "td:first-child,td:nth-child(2),td:nth-child(3){text-align:left}\n"
    "figure{margin:1.2em 0}figure img{max-width:100%;height:auto;border:1px solid #ddd}"
    "figcaption{font-size:.9em;color:#555}figcaption .look{color:#222;font-weight:600}\n"
    ".note{color:#7a4b00;font-size:.9em}ul.summary li{margin:.3em 0}\n"
    "details{margin:1em 0;border:1px solid #ddd;border-radius:4px;padding:.4em .8em}"
    "summary{cursor:pointer;font-weight:600}\n"
)


@dataclass
class _Parts:
    """The pieces of the report, in reading order, shared by its Markdown and HTML forms."""

    verdict: list[str]
    headline: FigureFile | None
    figures: Sequence[FigureFile]
    tables: list[Table]
    table_notes: list[str]
    statements: list[str]
    settings: list[tuple[str, str]]
    notes: list[str]


def _md_figure(data: ReportData, f: FigureFile) -> list[str]:
    png, svg = f.png.relative_to(data.sweep_dir), f.svg.relative_to(data.sweep_dir)
    look = f"**{_look_for(f)}** " if _look_for(f) else ""
    return [
        f"![{f.caption}]({png.as_posix()})",
        "",
        f"{look}*{f.caption}* ([SVG]({svg.as_posix()}))",
        "",
    ]


def _md_details(summary: str, body: list[str]) -> list[str]:
    """A collapsed section (GitHub renders Markdown inside it after a blank line)."""
    return ["<details>", f"<summary>{summary}</summary>", "", *body, "", "</details>", ""]


def _markdown(data: ReportData, parts: _Parts) -> str:
    """report.md, in the page's order: question, verdict, headline figure; figures, tables,
    statements; settings and notes collapsed."""
    lead, *rest = parts.verdict
    md = [f"# {QUESTION}", "", f"*{_byline(data)}*", "", " ".join([f"**{lead}**", *rest]), ""]
    md += [f"<small>{_legend(data)}</small>", ""]
    if parts.headline is not None:
        md += _md_figure(data, parts.headline)
    md += ["## Figures", ""]
    for f in parts.figures:
        md += _md_figure(data, f)
    md += ["## Tables", "", *[t.markdown() for t in parts.tables], *parts.table_notes, ""]
    md += ["## Detailed statements", "", *[f"- {s}" for s in parts.statements], ""]
    settings = ["| setting | value |", "|---|---|", *[f"| {k} | {v} |" for k, v in parts.settings]]
    md += _md_details("Settings", settings)
    if parts.notes:
        md += _md_details(f"Notes ({len(parts.notes)})", [f"- {n}" for n in parts.notes])
    return "\n".join(md)


def _html_figure(f: FigureFile, *, headline: bool = False) -> str:
    """One figure, its PNG inline; the headline one gets the ``headline-figure`` image id."""
    encoded = base64.b64encode(f.png.read_bytes()).decode("ascii")
    caption = html.escape(f.caption)
    look = f'<span class="look">{html.escape(_look_for(f))}</span> ' if _look_for(f) else ""
    kind = ' class="headline"' if headline else ""
    img_id = ' id="headline-figure"' if headline else ""
    return (
        f'<figure id="{html.escape(f.ident)}"{kind}><img class="figure"{img_id} alt="{caption}" '
        f'src="data:image/png;base64,{encoded}">'
        f'<figcaption>{look}<span class="what">{caption}</span></figcaption></figure>'
    )


def _html_first_screen(data: ReportData, parts: _Parts) -> list[str]:
    """The question, the verdict and the headline figure."""
    esc = html.escape
    lead, *rest = parts.verdict
    figure = _html_figure(parts.headline, headline=True) if parts.headline else ""
    return [
        f'<p class="byline">{esc(_byline(data))}</p>',
        f'<h1 id="question">{esc(QUESTION)}</h1>',
        '<section class="answer"><div class="answer-text"><div id="verdict">',
        f'<p class="lead">{esc(lead)}</p>',
        *[f"<p>{esc(s)}</p>" for s in rest],
        f'</div><p class="legend">{esc(_legend(data))}</p></div>',
        figure,
        "</section>",
    ]


def _html_collapsed(parts: _Parts) -> list[str]:
    """Settings and notes, each in a closed <details>."""
    esc = html.escape
    h = [
        '<details id="settings-details"><summary>Settings</summary><table id="settings"><tbody>',
        *[f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in parts.settings],
        "</tbody></table></details>",
    ]
    if parts.notes:
        h += [f'<details id="notes-details"><summary>Notes ({len(parts.notes)})</summary>']
        h += ['<ul class="notes">', *[f'<li class="note">{esc(n)}</li>' for n in parts.notes]]
        h += ["</ul></details>"]
    return h


def _html(data: ReportData, parts: _Parts) -> str:
    """report.html: one self-contained page, readable without JavaScript."""
    esc = html.escape
    h = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        f"<title>errorentropy report: {esc(data.sweep_dir.name)}</title>"
        f"<style>{_CSS}</style></head><body>",
        *_html_first_screen(data, parts),
        '<h2 id="figures">Figures</h2>',
        *[_html_figure(f) for f in parts.figures],
        '<h2 id="tables">Tables</h2>',
        *[t.html() for t in parts.tables],
        *[f'<p class="note">{esc(n)}</p>' for n in parts.table_notes],
        '<h2 id="statements">Detailed statements</h2><ul class="summary">',
        *[f"<li>{esc(s)}</li>" for s in parts.statements],
        "</ul>",
        *_html_collapsed(parts),
        "</body></html>\n",
    ]
    return "\n".join(h)


def write_report(
    data: ReportData, figs: Sequence[FigureFile], notes: Sequence[str]
) -> tuple[Path, Path]:
    """Write ``report.md`` and the self-contained ``report.html`` into the sweep folder.

    Both open with the question, the verdict (:func:`verdict_sentences`) and the headline
    figure (:func:`headline_figure`); then the other figures, the tables, the detailed
    statements (:func:`summary_sentences`), and the settings and notes, collapsed.
    """
    headline = headline_figure(data, figs)
    fits = data.fits
    extrapolation, saturating = extrapolation_table(fits), saturating_table(fits)
    parts = _Parts(
        verdict=verdict_sentences(data),
        headline=headline,
        figures=reading_order(figs, headline),
        tables=[
            *fit_tables(fits),
            *[t for t in (extrapolation, saturating) if t is not None],
            components_table(fits),
            *[t for t in (rbp_table(fits), convergence_table(fits)) if t is not None],
            *[t for t in (exponent_table(fits),) if t is not None],
        ],
        table_notes=[] if extrapolation else [NO_EXTRAPOLATION],
        statements=[*summary_sentences(data), *convergence_sentences(data)],
        settings=settings_rows(data),
        notes=[*data.notes, *notes],
    )
    md_path = data.sweep_dir / "report.md"
    atomic_write_text(md_path, _markdown(data, parts))
    html_path = data.sweep_dir / "report.html"
    atomic_write_text(html_path, _html(data, parts))
    return md_path, html_path


def build_report(
    sweep_dir: Path | str, *, run_fit: bool = True, n_boot: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """Collect, draw and write the whole report; returns the paths written and the notes.

    Args:
        sweep_dir: a sweep folder (holds ``cells/``).
        run_fit: False for ``--no-fit``: plain least-squares fits, no bootstrap (a fits.json
            current for the cells is read whatever its settings).
        n_boot: bootstrap replicates of the fit (when it runs).
        seed: the bootstrap's seed.

    Examples:
        >>> from errorentropy.testing import synthetic_sweep
        >>> folder = synthetic_sweep(workdir / "sweep")
        >>> result = ee.build_report(folder, run_fit=False)
        >>> sorted(Path(p).name for p in result["figures"] if p.endswith(".png"))
        ['convergence-synth.png', 'fig7-synth.png', 'fig8-synth.png', 'rbp-synth.png']
        >>> Path(result["report_html"]).name, (folder / "fits.json").exists()
        ('report.html', True)
        >>> result["notes"][0].startswith("--no-fit: power laws are plain least squares")
        True
    """
    sweep_dir = as_path_text(sweep_dir, "sweep_dir")
    check_bool(run_fit, "run_fit")
    check_int(n_boot, "n_boot", 0)
    check_int(seed, "seed", 0)
    data = collect(sweep_dir, run_fit=run_fit, n_boot=n_boot, seed=seed)
    figs, notes = draw_figures(data, Path(sweep_dir) / FIGURES_DIR)
    md_path, html_path = write_report(data, figs, notes)
    extra = append_objectives_section(Path(sweep_dir), md_path, html_path)
    return {
        "report_md": str(md_path),
        "report_html": str(html_path),
        "figures": [str(f.png) for f in figs] + [str(f.svg) for f in figs] + extra,
        "notes": [*data.notes, *notes],
    }
