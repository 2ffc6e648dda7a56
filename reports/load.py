"""Read and validate a run directory (docs/run-directory.md) into plain frames.

Every problem becomes a one-line `LabError` naming the file and what is wrong.
"""

from __future__ import annotations

import csv as std_csv
import difflib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pyarrow import csv

from lab.local.state import RUN_INCOMPLETE, RUN_INTERRUPTED
from lab.model.errors import LabError

_DICT = pa.dictionary(pa.int32(), pa.string())

QUERY_COLUMNS: dict[str, pa.DataType] = {
    "t_send_ns": pa.int64(),
    "latency_ms": pa.float64(),
    "outcome": _DICT,
    "rcode": _DICT,
    "resolver": _DICT,
    "proto": _DICT,
    "qname": _DICT,
    "qtype": _DICT,
    "src_port": pa.int32(),
    "worker": _DICT,
}
# Optional (docs/run-directory.md): a run without them has one lookup per query.
LOOKUP_COLUMNS: dict[str, pa.DataType] = {"lookup_id": pa.int64(), "attempt": pa.int32()}
IPVS_COLUMNS: dict[str, pa.DataType] = {
    "t_ns": pa.int64(),
    "vip": _DICT,
    "proto": _DICT,
    "real_server": _DICT,
    "weight": pa.int64(),
    "active_conns": pa.int64(),
    "inactive_conns": pa.int64(),
}
OUTCOMES = ("ok", "timeout", "error", "rcode")
PROTOS = ("udp", "tcp")
EVENT_KINDS = ("fault", "rollback", "note", "detect")
# Large CSV blocks: fewer chunks, so far fewer per-chunk dictionaries to unify into one categorical.
BLOCK_BYTES = 64 << 20


@dataclass(frozen=True)
class Run:
    """One run directory, read: `queries` and `ipvs` are DataFrames, `events` is sorted by t_ns."""

    path: Path
    meta: dict[str, Any]
    queries: pd.DataFrame
    events: pd.DataFrame
    ipvs: pd.DataFrame

    @property
    def run_id(self) -> str:
        return str(self.meta.get("run_id") or self.path.name)


def load_run(path: str | Path) -> Run:
    """Read meta.json, queries.csv, events.jsonl and ipvs.csv from `path` and check them."""
    run_dir = Path(path)
    if not run_dir.is_dir():
        raise LabError(f"{run_dir}: not a run directory (expected meta.json and queries.csv inside)")
    if (run_dir / RUN_INCOMPLETE).exists():
        raise LabError(f"{run_dir}: incomplete run: its runner stopped before rolling back and saving "
                       "its data; `fab recover` finishes it")
    meta = read_meta(run_dir / "meta.json")
    if meta.get("incomplete"):
        raise LabError(f"{run_dir}: incomplete run: {meta['incomplete']}")
    queries = read_queries(run_dir / "queries.csv", meta.get("queries_rows"))
    events = read_events(run_dir / "events.jsonl")
    ipvs = read_ipvs(run_dir / "ipvs.csv")
    if not (ipvs.empty and meta.get("status") == RUN_INTERRUPTED):
        # an interrupted run may have stopped before its IPVS sampler's first row: nothing to check
        check_event_servers(run_dir, events, ipvs)
    return Run(run_dir, meta, queries, events, ipvs)


def read_meta(path: Path) -> dict[str, Any]:
    """meta.json as a dict; it must exist and hold a JSON object."""
    _regular(path)
    if not path.is_file():
        raise LabError(f"{path}: missing; the chaos runner writes it with every run")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise LabError(f"{path}: not valid JSON ({err})") from None
    except OSError as err:
        raise LabError(f"{path}: cannot read: {err.strerror}") from None
    if not isinstance(meta, dict):
        raise LabError(f"{path}: must hold a JSON object, got {type(meta).__name__}")
    return meta


def _regular(path: Path) -> None:
    """A LabError when `path` exists but is not a regular file (a directory, a socket, ...)."""
    if path.exists() and not path.is_file():
        raise LabError(f"{path}: not a regular file; move it away (a run keeps its records in files)")


def _header(path: Path) -> list[str]:
    with path.open("rb") as fh:
        line = fh.readline().decode("utf-8", "replace").strip()
    return [c.strip() for c in next(std_csv.reader([line]))] if line else []


def _read_csv(path: Path, columns: dict[str, pa.DataType], *, required: bool,
              optional: dict[str, pa.DataType] | None = None) -> pa.Table | None:
    """Read `path` with pyarrow's CSV reader and explicit types; None when optional and absent.

    `optional` columns are read when the header has them."""
    _regular(path)
    if not path.is_file():
        if required:
            raise LabError(f"{path}: missing; a run needs it (docs/run-directory.md)")
        return None
    header = _header(path)
    if not header:
        raise LabError(f"{path}: empty file, no header line; expected columns {', '.join(columns)}")
    for name in columns:
        if name not in header:
            close = difflib.get_close_matches(name, header, n=1)
            hint = f" (found {close[0]!r}: misspelled?)" if close else ""
            raise LabError(f"{path}: missing column {name!r}{hint}; expected columns {', '.join(columns)}")
    present = {name: kind for name, kind in (optional or {}).items() if name in header}
    options = csv.ConvertOptions(
        column_types={**columns, **present}, include_columns=[*columns, *present], strings_can_be_null=True
    )
    try:
        return csv.read_csv(
            path, read_options=csv.ReadOptions(block_size=BLOCK_BYTES), convert_options=options
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
        first = " ".join(str(err).split())
        raise LabError(f"{path}: corrupt CSV: {first}") from None


def _no_nulls(path: Path, table: pa.Table, names: tuple[str, ...]) -> None:
    for name in names:
        nulls = table.column(name).null_count
        if nulls:
            raise LabError(f"{path}: column {name!r} is empty in {nulls} row(s); every row needs it")


def _allowed(path: Path, table: pa.Table, name: str, allowed: tuple[str, ...]) -> None:
    values = pc.unique(table.column(name)).to_pylist()  # dictionary-encoded: no string copies
    bad = sorted(str(v) for v in values if v is not None and v not in allowed)
    if bad:
        raise LabError(
            f"{path}: column {name!r} has {', '.join(map(repr, bad))}; allowed: {', '.join(allowed)}"
        )


def read_queries(path: Path, expected_rows: Any = None) -> pd.DataFrame:
    """queries.csv as a DataFrame: int64 times, float latency, categorical strings.

    `expected_rows` is the row count the runner recorded in meta.json (`queries_rows`): a file cut
    short, even at a row boundary, is an error. Runs without it are read as they are."""
    table = _read_csv(path, QUERY_COLUMNS, required=True, optional=LOOKUP_COLUMNS)
    assert table is not None
    if isinstance(expected_rows, int) and not isinstance(expected_rows, bool) \
            and table.num_rows != expected_rows:
        raise LabError(f"{path}: {table.num_rows} rows, but meta.json records {expected_rows} "
                       "(the file was cut or changed); merge the records again: python -m loadtest.merge")
    if table.num_rows == 0:
        raise LabError(f"{path}: no queries recorded (empty run); run the load again")
    _no_nulls(path, table, ("t_send_ns", "outcome", "proto", "worker"))
    lookups = [name for name in LOOKUP_COLUMNS if name in table.column_names]
    if len(lookups) == 1:
        other = next(name for name in LOOKUP_COLUMNS if name not in lookups)
        raise LabError(f"{path}: has column {lookups[0]!r} but not {other!r}; a lookup needs both")
    if lookups:
        _no_nulls(path, table, tuple(lookups))
        for name in lookups:
            negative = pc.sum(pc.less(table.column(name), 0)).as_py() or 0
            if negative:
                raise LabError(f"{path}: column {name!r} is negative in {negative} row(s); it counts from 0")
    _allowed(path, table, "outcome", OUTCOMES)
    _allowed(path, table, "proto", PROTOS)
    frame = table.to_pandas()
    ok_without_latency = int(((frame["outcome"] == "ok") & frame["latency_ms"].isna()).sum())
    if ok_without_latency:
        raise LabError(f"{path}: {ok_without_latency} row(s) with outcome 'ok' have no latency_ms")
    frame["src_port"] = frame["src_port"].fillna(-1).astype("int32")
    if not lookups:  # every query its own lookup
        frame["lookup_id"] = np.arange(len(frame), dtype=np.int64)
        frame["attempt"] = np.zeros(len(frame), dtype=np.int32)
    return frame


def read_ipvs(path: Path) -> pd.DataFrame:
    """ipvs.csv as a DataFrame (empty with the right columns when the run has none)."""
    table = _read_csv(path, IPVS_COLUMNS, required=False)
    if table is None:
        return pd.DataFrame(
            {
                name: pd.Series(dtype="int64" if t == pa.int64() else "object")
                for name, t in IPVS_COLUMNS.items()
            }
        )
    _no_nulls(path, table, ("t_ns", "weight"))  # real_server is empty for a service with none left
    frame = table.to_pandas()
    frame["real_server"] = frame["real_server"].astype(object).fillna("").astype("category")
    return frame


def _event(path: Path, lineno: int, obj: Any) -> dict[str, Any]:
    where = f"{path}: line {lineno}"
    if not isinstance(obj, dict):
        raise LabError(f"{where}: must be a JSON object")
    for key, kind in (("t_ns", int), ("kind", str), ("action", str), ("target", str)):
        if not isinstance(obj.get(key), kind) or isinstance(obj.get(key), bool):
            raise LabError(f"{where}: key {key!r} must be {kind.__name__}, got {obj.get(key)!r}")
    if not 0 <= obj["t_ns"] < 2**63:
        raise LabError(f"{where}: t_ns {obj['t_ns']} is outside 0 .. 2^63-1 (nanoseconds since 1970)")
    if obj["kind"] not in EVENT_KINDS:
        raise LabError(f"{where}: kind {obj['kind']!r} is not one of {', '.join(EVENT_KINDS)}")
    detail = obj.get("detail", {})
    if not isinstance(detail, dict):
        raise LabError(f"{where}: key 'detail' must be an object, got {detail!r}")
    real_server = detail.get("real_server")
    if real_server is not None and not isinstance(real_server, str):
        raise LabError(f"{where}: detail.real_server must be 'IP:PORT', got {real_server!r}")
    return {
        "t_ns": obj["t_ns"],
        "kind": obj["kind"],
        "action": obj["action"],
        "target": obj["target"],
        "real_server": real_server,
        "line": lineno,
        "detail": detail,
    }


def read_events(path: Path) -> pd.DataFrame:
    """events.jsonl as a DataFrame sorted by t_ns (empty when the run has no events file)."""
    rows: list[dict[str, Any]] = []
    _regular(path)
    if path.is_file():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            line = path.read_bytes()[: err.start].count(b"\n") + 1
            raise LabError(f"{path}: line {line}: not UTF-8 text (byte {err.start})") from None
        except OSError as err:
            raise LabError(f"{path}: cannot read: {err.strerror}") from None
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise LabError(f"{path}: line {lineno}: not valid JSON ({err.msg})") from None
            rows.append(_event(path, lineno, obj))
    columns = ["t_ns", "kind", "action", "target", "real_server", "line", "detail"]
    frame = pd.DataFrame(rows, columns=columns)
    frame["t_ns"] = frame["t_ns"].astype("int64")
    return frame.sort_values("t_ns", kind="stable").reset_index(drop=True)


def check_event_servers(run_dir: Path, events: pd.DataFrame, ipvs: pd.DataFrame) -> None:
    """Every real_server an event names must appear in ipvs.csv, spelled the same."""
    named = events.dropna(subset=["real_server"])
    if named.empty:
        return
    known = set(ipvs["real_server"].astype(str).unique())
    for row in named.itertuples():
        if row.real_server not in known:
            if not known:
                raise LabError(
                    f"{run_dir / 'events.jsonl'}: line {row.line}: names real_server "
                    f"{row.real_server!r} but {run_dir / 'ipvs.csv'} is missing or empty"
                )
            raise LabError(
                f"{run_dir / 'events.jsonl'}: line {row.line}: real_server {row.real_server!r} "
                f"never appears in ipvs.csv (known: {', '.join(sorted(known))})"
            )
