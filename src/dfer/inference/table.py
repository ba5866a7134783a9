"""What ``dfer predict`` writes: one JSON object per clip, or one table of all clips.

Both hold the same fields per clip: ``path``; ``label`` and ``prob`` (the top class and its
probability); ``top`` (the ``--top`` classes with probabilities); one probability per class
(JSON: ``probs`` {class: p}; table: a column ``prob_<class>`` each, in the model's class
order); ``num_frames`` (frames the clip really has; empty when it could not be read);
``error_type`` and ``error`` (empty for a predicted clip). The table is Parquet or CSV by the
file's extension, written atomically; the Parquet file carries provenance (checkpoint, labels).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dfer.inference.predict import Prediction

TABLE_SUFFIXES = (".parquet", ".csv")
SCHEMA_VERSION = 1


def check_table_path(path: str | os.PathLike[str]) -> Path:
    """``path`` if its extension names a table format, else a ValueError saying which do."""
    p = Path(path)
    if p.suffix.lower() not in TABLE_SUFFIXES:
        raise ValueError(f"--output {p}: the table format comes from the extension; use "
                         f"{' or '.join(TABLE_SUFFIXES)}")
    return p


def record(pred: Prediction, top: int = 3) -> dict[str, Any]:
    """The JSON object of one clip (``--json``)."""
    if not pred.ok:
        return {"path": pred.path, "label": None, "prob": None, "top": [], "probs": None,
                "num_frames": pred.num_frames, "error_type": pred.error_type, "error": pred.error}
    assert pred.probs is not None
    best = pred.top(top)
    return {"path": pred.path, "label": best[0][0], "prob": round(best[0][1], 6),
            "top": [[lab, round(p, 6)] for lab, p in best],
            "probs": {lab: round(float(x), 6) for lab, x in zip(pred.labels, pred.probs, strict=True)},
            "num_frames": pred.num_frames, "error_type": None, "error": None}


def table_rows(preds: Sequence[Prediction], labels: Sequence[str], top: int = 3) -> dict[str, list]:
    """Column name -> values, one entry per clip."""
    cols: dict[str, list] = {"path": [], "label": [], "prob": [], "top": []}
    prob_cols = {lab: f"prob_{lab}" for lab in labels}
    for name in prob_cols.values():
        cols[name] = []
    cols.update({"num_frames": [], "error_type": [], "error": []})
    for p in preds:
        rec = record(p, top)
        cols["path"].append(p.path)
        cols["label"].append(rec["label"])
        cols["prob"].append(rec["prob"])
        cols["top"].append(", ".join(f"{lab} {pr:.3f}" for lab, pr in p.top(top)) or None)
        for lab, name in prob_cols.items():
            cols[name].append(None if not p.ok else rec["probs"][lab])
        cols["num_frames"].append(p.num_frames)
        cols["error_type"].append(p.error_type)
        cols["error"].append(p.error)
    return cols


def write_table(path: str | os.PathLike[str], preds: Sequence[Prediction],
                labels: Sequence[str], top: int = 3,
                info: Mapping[str, Any] | None = None) -> Path:
    """Write the clips' table to ``path`` (``.parquet`` or ``.csv``) atomically."""
    import pyarrow as pa

    from dfer.core.artifacts import atomic_path, provenance, write_parquet

    p = check_table_path(path)
    cols = table_rows(preds, labels, top)
    fields = [pa.field("path", pa.string()), pa.field("label", pa.string()),
              pa.field("prob", pa.float64()), pa.field("top", pa.string())]
    fields += [pa.field(f"prob_{lab}", pa.float64()) for lab in labels]
    fields += [pa.field("num_frames", pa.int64()), pa.field("error_type", pa.string()),
               pa.field("error", pa.string())]
    schema = pa.schema(fields)
    table = pa.table({f.name: pa.array(cols[f.name], type=f.type) for f in schema}, schema=schema)
    if p.suffix.lower() == ".parquet":
        meta = provenance("predict", SCHEMA_VERSION, labels=list(labels), **dict(info or {}))
        return write_parquet(p, table, meta)
    import pyarrow.csv as pacsv

    with atomic_path(p) as tmp:
        pacsv.write_csv(table, tmp)
    return p
