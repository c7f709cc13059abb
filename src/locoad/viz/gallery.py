"""``index.html``: every test image's panel, most anomalous first, its scores beside it. Plain
HTML and CSS with relative links, so the run folder opens in any browser, offline."""

from __future__ import annotations

import html
import math
from pathlib import Path

import pandas as pd

from locoad.io import atomic_write_text

KNOWN_COLUMNS = ("path", "label", "anomaly_type")

STYLE = """
body { font: 13px/1.4 system-ui, sans-serif; margin: 16px; color: #222; }
table { border-collapse: collapse; }
td, th { padding: 2px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.row { display: flex; gap: 14px; align-items: flex-start; padding: 6px 0; border-top: 1px solid #ddd; }
.info { width: 250px; flex: none; overflow-wrap: anywhere; }
.scores { font-size: 11px; line-height: 1.2; }
.scores td { padding: 0 6px; }
.scores td:first-child { color: #555; }
.fused { font-weight: bold; }
.good { color: #1a7f37; } .logical_anomalies { color: #b35900; } .structural_anomalies { color: #c62828; }
"""


def score_columns(table: pd.DataFrame) -> list[str]:
    """The score columns of a results table (everything but path, label, type and ``extra/``)."""
    return [c for c in table.columns if c not in KNOWN_COLUMNS and not c.startswith("extra/")]


def gallery_order(table: pd.DataFrame) -> list[int]:
    """Row positions, most anomalous first (by ``fused``, else the first score)."""
    cols = score_columns(table)
    key = "fused" if "fused" in table else (cols[0] if cols else None)
    if key is None:
        return list(range(len(table)))
    values = table[key].to_numpy(dtype=float)
    return sorted(range(len(table)), key=lambda i: (-values[i] if math.isfinite(values[i]) else math.inf, i))


def _fmt(v: object) -> str:
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return html.escape(str(v))
    return "–" if not math.isfinite(f) else f"{f:.4g}"


def _metrics_table(metrics: dict) -> str:
    rows = []
    for name, m in metrics.items():
        if isinstance(m, dict) and "f1_max" in m:
            cells = [m.get("f1_max"), m.get("auroc")]
            cells += [(m.get(t) or {}).get(k) for t in ("logical", "structural") for k in ("f1_max", "auroc")]
            rows.append(f"<tr><td>{html.escape(name)}</td>" + "".join(f"<td>{_fmt(c)}</td>" for c in cells) + "</tr>")
    head = ("<tr><th>score</th><th>F1-max</th><th>AUROC</th><th>logical F1</th><th>logical AUROC</th>"
            "<th>structural F1</th><th>structural AUROC</th></tr>")
    return f"<table>{head}{''.join(rows)}</table>" if rows else ""


def _loco_summary(metrics: dict) -> str:
    """The fused MVTec LOCO AD figures, where the run has them: AU-sPRO@0.05 of the anomaly map
    (logical / structural / mean) and the LOCO AUROC (mean of logical and structural)."""
    spro = (metrics.get("pixel") or {}).get("au_spro") or {}
    parts = [f"AU-sPRO@0.05 {t} {_fmt(spro[t]['0.05'])}" for t in ("logical", "structural", "mean")
             if "0.05" in (spro.get(t) or {})]
    loco = (metrics.get("fused") or {}).get("auroc_loco")
    if loco is not None:
        parts.append(f"AUROC (LOCO: logical/structural mean) {_fmt(loco)}")
    return f'<p class="loco">Fused: {" · ".join(parts)}</p>' if parts else ""


def write_gallery(out: Path, table: pd.DataFrame, metrics: dict, panels: dict[int, str], title: str = "") -> Path:
    """Write ``out/index.html``. ``panels`` maps a row position to its PNG path relative to ``out``;
    rows without a panel are listed with their scores only."""
    scores = score_columns(table)
    extras = [c for c in table.columns if c.startswith("extra/")]
    rows = []
    for rank, i in enumerate(gallery_order(table), 1):
        r = table.iloc[i]
        kind = str(r["anomaly_type"])
        cells = [f'<tr class="{"fused" if c == "fused" else ""}"><td>{html.escape(c)}</td><td>{_fmt(r[c])}</td></tr>'
                 for c in [*scores, *extras]]
        img = (f'<img src="{html.escape(panels[i])}" alt="{html.escape(Path(str(r["path"])).name)}">'
               if i in panels else "<div>(no panel)</div>")
        rows.append(
            f'<div class="row" id="r{i}"><div class="info"><b>#{rank}</b> <span class="{html.escape(kind)}">{html.escape(kind)}</span>'
            f'<br><small title="{html.escape(str(r["path"]))}">{html.escape(_short(str(r["path"])))}</small>'
            f'<table class="scores">{"".join(cells)}</table></div>{img}</div>'
        )
    doc = (
        f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{html.escape(title or 'locoad gallery')}</title>"
        f"<style>{STYLE}</style></head><body>\n<h1>{html.escape(title or 'locoad gallery')}</h1>\n"
        f"<p>{len(table)} test images, most anomalous first (fused score). Panels: the image, the "
        "anomaly map (one colour scale for the whole run), the label maps, the ground-truth defect (red).</p>\n"
        f"{_loco_summary(metrics)}{_metrics_table(metrics)}\n" + "\n".join(rows) + "\n</body></html>\n"
    )
    return atomic_write_text(out / "index.html", doc)


def _short(path: str) -> str:
    """The last three parts of a path (type/id.png under the category), enough to find the file."""
    return "/".join(Path(path).parts[-3:])
