"""The headline: each model's final-checkpoint components per dataset, as data and as text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from errorentropy.sweep.cells import load_cells


def headline(sweep_dir: Path, steps: int) -> dict[str, list[dict[str, Any]]]:
    """Per dataset, each model's final-checkpoint components (nats per token), smallest first."""
    table: dict[str, list[dict[str, Any]]] = {}
    for cell in load_cells(sweep_dir):
        if cell.step != steps:
            continue
        s = cell.summary
        table.setdefault(cell.key.dataset, []).append(
            {
                "model": cell.key.model,
                "non_embedding_params": cell.non_embedding_params,
                **{
                    k: round(s[key], 4)
                    for k, key in (
                        ("CE", "cross_entropy"),
                        ("EE", "error_entropy"),
                        ("SA", "self_alignment"),
                        ("Conf", "confidence"),
                    )
                },
            }
        )
    for rows in table.values():
        rows.sort(key=lambda r: r["non_embedding_params"])
    return table


def format_headline(table: dict[str, list[dict[str, Any]]]) -> str:
    """The headline table as aligned text lines."""
    lines = []
    for dataset, rows in sorted(table.items()):
        lines.append(
            f"{dataset}: {'model':<12} {'N (non-emb.)':>12} {'CE':>7} {'EE':>7} {'SA':>7} "
            f"{'Conf':>7} {'EE/CE':>6}"
        )
        for r in rows:
            lines.append(
                f"{'':<{len(dataset) + 1}} {r['model']:<12} "
                f"{r['non_embedding_params']:>12,} {r['CE']:>7.4f} {r['EE']:>7.4f} "
                f"{r['SA']:>7.4f} {r['Conf']:>7.4f} {r['EE'] / r['CE']:>6.3f}"
            )
    return "\n".join(lines)
