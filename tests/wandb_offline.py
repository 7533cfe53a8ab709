"""Read what an offline W&B run logged, so tests can check it without a W&B server.

wandb 0.31 writes an offline run as `offline-run-<time>-<id>/run-<id>.wandb` and ships no reader.
The file is a LevelDB-style log: a 7-byte header (b":W&B", magic 0xBEE1, version 0), then 32 KiB
blocks of chunks, each `<crc32:u32><length:u16><type:u8><payload>` (little endian; the CRC is
zlib's crc32 of the payload seeded with the crc32 of the type byte). Types FULL=1, FIRST=2,
MIDDLE=3, LAST=4 reassemble into `wandb_internal_pb2.Record` protobufs; a block's tail shorter
than a chunk header is zero padding. Values in config, history and summary items are JSON.

wandb-core writes the file in the background: `run.finish()` can return while the file still
holds only its header, so the reader waits (briefly) for the run's exit record.
"""

from __future__ import annotations

import json
import struct
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2 as pb

_FILE_HEADER = struct.Struct("<4sHB")
_CHUNK_HEADER = struct.Struct("<IHB")
_BLOCK = 32 * 1024
_FULL, _FIRST, _LAST = 1, 2, 4  # a MIDDLE (3) chunk only extends the pending record


def offline_runs(wandb_parent: Path) -> list[Path]:
    """The offline run folders under `wandb_parent/wandb`, by name (start second, then id)."""
    return sorted((Path(wandb_parent) / "wandb").glob("offline-run-*"))


def records(path: Path) -> Iterator[pb.Record]:
    """Every record of a `.wandb` file, in order; raises ValueError on a corrupt file."""
    data = Path(path).read_bytes()
    if data[:_FILE_HEADER.size] != _FILE_HEADER.pack(b":W&B", 0xBEE1, 0):
        raise ValueError(f"{path}: not a W&B transaction log (or not written yet)")
    pos, pending = _FILE_HEADER.size, b""
    while pos < len(data):
        room = _BLOCK - pos % _BLOCK
        if room < _CHUNK_HEADER.size:
            pos += room
            continue
        if pos + _CHUNK_HEADER.size > len(data):
            raise ValueError(f"{path}: truncated at byte {pos}")
        crc, length, kind = _CHUNK_HEADER.unpack_from(data, pos)
        payload = data[pos + _CHUNK_HEADER.size:pos + _CHUNK_HEADER.size + length]
        if crc != zlib.crc32(payload, zlib.crc32(bytes([kind]))):
            raise ValueError(f"{path}: bad checksum in the chunk at byte {pos}")
        pos += _CHUNK_HEADER.size + length
        pending = payload if kind in (_FULL, _FIRST) else pending + payload
        if kind in (_FULL, _LAST):
            yield pb.Record.FromString(pending)


def finished_records(path: Path, timeout: float = 10.0) -> list[pb.Record]:
    """The records of a finished run, waiting until wandb-core has written its exit record."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = list(records(path))
            if any(record.WhichOneof("record_type") == "exit" for record in found):
                return found
            problem = "no exit record"
        except ValueError as exc:  # not (fully) written yet
            problem = str(exc)
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path}: run not finished after {timeout} s ({problem})")
        time.sleep(0.005)


def _apply(target: dict, item: Any) -> None:
    """Set a config/summary/history item (a flat key or a nested key path) in `target`."""
    *parents, leaf = list(item.nested_key) or [item.key]
    for key in parents:
        target = target.setdefault(key, {})
    target[leaf] = json.loads(item.value_json)


def _public(values: dict) -> dict:
    """Drop wandb's own entries (_wandb, _runtime, _timestamp, _step)."""
    return {k: v for k, v in values.items() if not k.startswith("_")}


def read_offline_run(path: Path, timeout: float = 10.0) -> dict[str, Any]:
    """What one offline run logged: its identity, config, history and final summary.

    `path` is the run folder or its `.wandb` file; waits up to `timeout` s for the run to be
    fully written. History rows look like the harness's
    steps.jsonl lines: {"step": ..., **values}. `tables` maps each summary key that holds a
    wandb.Table to its rows as dicts (read from the run's files/ folder).
    """
    path = Path(path)
    file = path if path.is_file() else next(path.glob("run-*.wandb"))
    run: dict[str, Any] = {}
    config: dict[str, Any] = {}
    summary: dict[str, Any] = {}
    history: list[dict[str, Any]] = []
    for record in finished_records(file, timeout):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            run = {"project": r.project, "group": r.run_group, "name": r.display_name,
                   "job_type": r.job_type}
            for item in r.config.update:
                _apply(config, item)
        elif kind == "config":
            for item in record.config.update:
                _apply(config, item)
            for item in record.config.remove:
                config.pop(item.key, None)
        elif kind == "summary":
            for item in record.summary.update:
                _apply(summary, item)
            for item in record.summary.remove:
                summary.pop(item.key, None)
        elif kind == "history":
            row: dict[str, Any] = {}
            for item in record.history.item:
                _apply(row, item)
            history.append({"step": row["_step"], **_public(row)})
    tables = {
        key: _table_rows(file.parent / "files" / value["path"])
        for key, value in summary.items()
        if isinstance(value, dict) and value.get("_type") == "table-file"
    }
    return {**run, "config": _public(config), "history": history, "summary": _public(summary),
            "tables": tables}


def _table_rows(path: Path) -> list[dict[str, Any]]:
    table = json.loads(path.read_text())
    return [dict(zip(table["columns"], row, strict=True)) for row in table["data"]]
