"""The analyses' results as tables, rendered as aligned text (the CLI) or HTML (the report).

Each ``*_table`` function takes the JSON-ready dict of an analysis (``_results.py``,
``Baseline.to_dict``), so the printed table, the report and ``--json`` cannot disagree.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple


class Table(NamedTuple):
    """A titled table of strings.

    Attributes:
      title: one line saying what the table is.
      headers: column names.
      rows: one tuple of cell strings per row.
      note: a line printed under the table ("" for none).
    """

    title: str
    headers: tuple[str, ...]
    rows: list[tuple[str, ...]]
    note: str = ""


def _percent(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{100 * value:.2f}%"


def _points(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{100 * value:+.2f}"


def dimension_table(result: Mapping[str, Any]) -> Table:
    """Rows: checkpoint step; columns: the four dimensions (Figs. 7, A3)."""
    return Table(
        title=f"dimensions of the {result['support_size']} support images over training "
        f"(gradients: NTK of {result['kernel']})",
        headers=(
            "step",
            "intrinsic (Two-NN)",
            "linear (PCA 90%)",
            "gradient intrinsic",
            "gradient linear",
        ),
        rows=[
            (
                str(r["step"]),
                f"{r['intrinsic']:.2f}",
                str(r["linear"]),
                f"{r['gradient_intrinsic']:.2f}",
                str(r["gradient_linear"]),
            )
            for r in result["rows"]
        ],
    )


def band_table(result: Mapping[str, Any]) -> Table:
    """Rows: eigenvalue bands; columns: accuracy added and alone, learned vs initial (Fig. 8)."""
    final, initial = result["final"], result["initial"]
    edges = final["edges"]
    count, n = len(edges) - 1, edges[-1]
    rows: list[tuple[str, ...]] = []
    for b in range(count):
        name = f"{100 * b // count}-{100 * (b + 1) // count}%"
        rows.append(
            (
                f"{name} (eigenvalues {edges[b] + 1}-{edges[b + 1]} of {n})",
                _points(final["accuracy_change"][b]),
                _percent(final["relative_change"][b]),
                _percent(final["band_accuracy"][b]),
                _points(initial["accuracy_change"][b]),
                _percent(initial["relative_change"][b]),
                _percent(initial["band_accuracy"][b]),
            )
        )
    return Table(
        title=f"ridge-0 KRR test accuracy by band of K_ss's spectrum (NTK of {result['kernel']}, "
        f"{result['test_size']} test images)",
        headers=(
            "band (largest first)",
            "learned: added (points)",
            "learned: share",
            "learned: band alone",
            "initial: added (points)",
            "initial: share",
            "initial: band alone",
        ),
        rows=rows,
        note=f"whole spectrum: learned {_percent(final['full_accuracy'])}, initial "
        f"{_percent(initial['full_accuracy'])}; 'added' starts from chance "
        f"({_percent(final['chance'])}); 'share' is added / (whole - chance)",
    )


def subsample_table(result: Mapping[str, Any]) -> Table:
    """Rows: kept fraction; columns: mean +- std accuracy and relative drop (Fig. A1)."""
    return Table(
        title=f"KRR test accuracy of random subsets ({result['draws']} draws each; NTK of "
        f"{result['kernel']}, {result['test_size']} test images)",
        headers=("kept", "images", "learned", "learned drop", "initial", "initial drop"),
        rows=[
            (
                f"{r['fraction']:.0%}",
                str(r["size"]),
                f"{_percent(r['final_mean'])} ± {100 * r['final_std']:.2f}",
                _percent(r["final_drop"]),
                f"{_percent(r['initial_mean'])} ± {100 * r['initial_std']:.2f}",
                _percent(r["initial_drop"]),
            )
            for r in result["rows"]
        ],
        note=f"whole support: learned {_percent(result['full']['final'])}, initial "
        f"{_percent(result['full']['initial'])}; drop = 1 - subset mean / whole",
    )


def baseline_table(result: Mapping[str, Any]) -> Table:
    """Rows: images per class; columns: mean +- std KRR test accuracy (Table A1)."""
    pool = (
        "the whole train set"
        if result["pool_per_class"] is None
        else f"a fixed pool of {result['pool_per_class']} train images per class"
    )
    return Table(
        title=f"{result['dataset']}: KRR test accuracy of random class-balanced natural subsets "
        f"(NTK of {result['kernel']}, {result['preprocessing']} preprocessing, "
        f"{result['test_size']} test images)",
        headers=("images/class", "mean", "std", "draws"),
        rows=[
            (
                str(r["per_class"]),
                _percent(r["mean"]),
                f"{100 * r['std']:.2f}",
                str(len(r["accuracies"])),
            )
            for r in result["rows"]
        ],
        note=f"drawn from {pool}; {result['distinct_images']} distinct images, "
        f"{result['kernel_pairs']:,} kernel entries, {result['seconds']:.0f} s",
    )


def _value(name: str, value: Any) -> str:
    if isinstance(value, float):
        return _percent(value) if name.endswith("accuracy") else f"{value:.4g}"
    return str(value)


def mapping_table(title: str, values: Mapping[str, Any]) -> Table:
    """A two-column table of names and values (a config, a summary); floats named
    ``*accuracy`` as percentages, other floats to 4 significant digits."""
    return Table(title, ("name", "value"), [(str(k), _value(k, v)) for k, v in values.items()])


def to_text(table: Table) -> str:
    """The table as aligned plain text: title, header, rows, note."""
    widths = [max(len(cell) for cell in column) for column in zip(table.headers, *table.rows)]

    def line(cells: Sequence[str]) -> str:
        return "  " + "  ".join(cell.rjust(w) for cell, w in zip(cells, widths))

    lines = [table.title, line(table.headers), *(line(row) for row in table.rows)]
    if table.note:
        lines.append(table.note)
    return "\n".join(lines)


def to_html(table: Table) -> str:
    """The table as an HTML ``<table>`` with a caption (and the note as a paragraph)."""
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in table.headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{esc(cell)}</td>" for cell in row) + "</tr>" for row in table.rows
    )
    note = f'<p class="note">{esc(table.note)}</p>' if table.note else ""
    return (
        f"<table><caption>{esc(table.title)}</caption><thead><tr>{head}</tr></thead>"
        f"<tbody>{body}</tbody></table>{note}"
    )
