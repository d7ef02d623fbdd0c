"""Run manifests: one JSON file per output directory, saying which run made each file, from what.

``<dir>/.flowcache-manifest.json``::

    {"format": 1,
     "workflows": {"pipeline": {"report.csv": {
         "task": "summarize", "run": "<flow run id>", "config": {"threshold": 0.5},
         "result": {"key": "ab12...", "type": "dict", "bytes": 812},
         "started": "2026-11-03T10:15:02.123456+00:00", "finished": "...",
         "inputs": {"/data/raw.csv": ["file", "/data/raw.csv", 1024, 1730628...]},
         "output": ["file", "/out/report.csv", 2048, 1730628...]}}}}

Many processes may finish in one directory at once, so an update is a read-modify-write under
an exclusive ``flock`` on a lock file beside the manifest (not on the manifest itself, whose
inode each update replaces), and the new version is written to a temporary file, fsynced and
renamed over the old one: no update is lost, and a reader (who takes no lock) sees the old
version or the new one, never a torn file.

Every update also writes ``<dir>/.flowcache-manifest.json.bak``, the same last good version.
A manifest damaged outside flowcache (a bad edit, a full disk, a copy cut short) is therefore
never a reason to lose records: readers fall back to the backup, the next writer puts the
damaged file aside (``.corrupt-<time>``) and continues from the backup, and
``flowcache runs DIR --repair`` does the same on demand.

An entry is *stale* when an input's fingerprint (:mod:`flowcache.keys.fingerprints`) differs from
the one recorded before the task ran: the file was produced from inputs that have changed since.
Only local directories have manifests (``flock`` and rename are local-filesystem guarantees).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowcache.errors import ManifestError
from flowcache.keys.fingerprints import FileRef, Fingerprinter, split_protocol
from flowcache.keys.recipe import RETURN, KeyRecipe, as_file_refs, file_refs

log = logging.getLogger("flowcache.manifest")

MANIFEST_NAME = ".flowcache-manifest.json"
BACKUP_SUFFIX = ".bak"
LOCK_NAME = ".flowcache-manifest.lock"
FORMAT = 1
_CONFIG_REPR = 200


def manifest_path(directory: str | os.PathLike[str]) -> Path:
    return Path(directory) / MANIFEST_NAME


def backup_path(directory: str | os.PathLike[str]) -> Path:
    return Path(directory) / (MANIFEST_NAME + BACKUP_SUFFIX)


def read(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """The directory's manifest (an empty one if there is none), or its backup if the
    manifest is damaged; takes no lock."""
    try:
        return _load(manifest_path(directory))
    except ManifestError as damaged:
        try:
            data = _load(backup_path(directory))
        except ManifestError:
            raise damaged from None
        log.warning("%s; reading its backup (run `flowcache runs %s --repair`)", damaged,
                    directory)
        return data


def _load(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {"format": FORMAT, "workflows": {}}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("workflows"), dict):
        raise ManifestError(f"{path} is not a flowcache manifest (no 'workflows' table)")
    return data


def repair(directory: str | os.PathLike[str]) -> str:
    """Put a damaged manifest aside and restore the last good version from its backup;
    returns what was done. Nothing is deleted: the damaged file is kept, renamed."""
    with locked(directory) as path:
        data, note = _recovered(Path(directory), path)
        if note:
            _write_both(path, data)
        return note or f"{path} is readable: nothing to repair"


def _recovered(directory: Path, path: Path) -> tuple[dict[str, Any], str]:
    """The manifest to update (held under the lock): the file, or its backup when the file is
    damaged (the damaged file then moved aside); and a note of what was recovered."""
    try:
        return _load(path), ""
    except ManifestError as damaged:
        try:
            data = _load(backup_path(directory))
        except ManifestError as lost:
            raise ManifestError(f"{damaged}, and its backup too ({lost}); both are kept as "
                                "they are: mend one by hand") from None
        aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}-{uuid.uuid4().hex[:6]}")
        os.replace(path, aside)
        records = sum(len(files) for files in data["workflows"].values())
        if backup_path(directory).exists():
            note = (f"{damaged}: moved it to {aside.name} and restored the last good version "
                    f"({records} records) from {backup_path(directory).name}")
        else:
            note = (f"{damaged}: moved it to {aside.name} (no backup to restore from: its "
                    "records are kept there for a repair by hand) and started a new one")
        log.warning(note)
        return data, note


@contextlib.contextmanager
def locked(directory: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold the directory's manifest lock (released by the kernel if the holder dies)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield manifest_path(directory)
    finally:
        os.close(fd)  # closing releases the flock


def update(directory: str | os.PathLike[str], workflow: str,
           files: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Record ``files`` (name relative to ``directory`` -> entry) under ``workflow``."""
    if not workflow:
        raise ValueError("a manifest entry needs a workflow name")
    with locked(directory) as path:
        data, _ = _recovered(Path(directory), path)
        data["format"] = FORMAT
        data["workflows"].setdefault(workflow, {}).update(
            {name: dict(entry) for name, entry in files.items()})
        _write_both(path, data)
    return data


def _write_both(path: Path, data: Mapping[str, Any]) -> None:
    """The manifest, then its backup: a crash between them leaves the older backup, never
    a record lost from both."""
    _replace(path, data)
    _replace(path.with_name(path.name + BACKUP_SUFFIX), data)


def _replace(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_name(f"{path.name}.tmp-{uuid.uuid4().hex}")
    try:
        with open(tmp, "w") as handle:
            json.dump(data, handle, indent=1, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)  # the rename itself survives a crash
    finally:
        os.close(fd)


# -- checking -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ManifestRow:
    workflow: str
    file: str
    entry: Mapping[str, Any]
    status: str  # ok | stale | missing (the output is gone) | modified (output changed since)
    reasons: tuple[str, ...] = ()


def check(directory: str | os.PathLike[str], fingerprinter: Fingerprinter | None = None
          ) -> list[ManifestRow]:
    """Every entry of the directory's manifest, with its status against the files now."""
    fingerprinter = fingerprinter or Fingerprinter()
    rows = []
    for workflow, files in sorted(read(directory)["workflows"].items()):
        for name, entry in sorted(files.items()):
            status, reasons = _status(Path(directory), name, entry, fingerprinter)
            rows.append(ManifestRow(workflow, name, entry, status, tuple(reasons)))
    return rows


def _status(directory: Path, name: str, entry: Mapping[str, Any],
            fingerprinter: Fingerprinter) -> tuple[str, list[str]]:
    changed = [f"input {ref} changed" for ref, recorded in sorted(entry.get("inputs", {}).items())
               if _jsonable(fingerprinter.fingerprint(_ref(ref))) != recorded]
    if changed:
        return "stale", changed
    output = directory / name
    if not output.exists():
        return "missing", [f"{name} no longer exists"]
    recorded = entry.get("output")
    if recorded is not None and _jsonable(fingerprinter.fingerprint(output)) != recorded:
        return "modified", [f"{name} changed after the run finished"]
    return "ok", []


def _ref(text: str) -> Path | FileRef:
    return FileRef(text) if "://" in text else Path(text)


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


# -- recording a cached call ----------------------------------------------------------------------
@dataclass
class OutputCall:
    """One call of a task with declared outputs: what to write to manifests when it finishes.

    Made before the task runs (so input fingerprints are those the result was computed from)
    and finished after a miss (a hit ran nothing, so the files it names were not rewritten).
    """

    outputs: frozenset[str]
    arguments: Mapping[str, Any]
    inputs: dict[str, Any]
    config: dict[str, Any]
    fingerprinter: Fingerprinter
    started: float | None = None
    finished: float | None = None
    written: list[Path] = field(default_factory=list)

    @classmethod
    def begin(cls, recipe: KeyRecipe, arguments: Mapping[str, Any], *,
              fingerprinter: Fingerprinter) -> OutputCall:
        """The record of a call, classified by its key recipe (input files, configuration,
        outputs), with the input files' fingerprints now."""
        found, settings = recipe.file_inputs(arguments)
        inputs = {_ref_text(ref): _jsonable(fingerprinter.fingerprint(ref))
                  for refs in found.values() for ref in refs}
        config = {name: _config_value(value) for name, value in settings.items()}
        return cls(recipe.outputs, arguments, inputs, config, fingerprinter)

    def timed(self, compute: Callable[[], Any]) -> Callable[[], Any]:
        """``compute``, noting when it started and finished (wall clock, for the manifest)."""
        def run() -> Any:
            self.started = _now()
            try:
                return compute()
            finally:
                self.finished = _now()
        return run

    def finish(self, value: Any, *, key: str, nbytes: int, workflow: str, task: str,
               run_id: str | None) -> list[Path]:
        """Update the manifest of every directory an output landed in; return them."""
        paths = []
        for name in sorted(self.outputs):
            source = value if name == RETURN else self.arguments.get(name)
            for ref in file_refs(as_file_refs(source)):
                protocol, local = split_protocol(ref.url if isinstance(ref, FileRef)
                                                 else os.fspath(ref))
                if protocol != "file":
                    log.info("no manifest for %s: only local directories keep one", ref)
                    continue
                paths.append(Path(local))
        by_directory: dict[Path, dict[str, dict[str, Any]]] = {}
        result = {"key": key, "type": type(value).__name__, "bytes": nbytes}
        for path in paths:
            path = path.absolute()
            entry = {"task": task, "run": run_id, "config": self.config, "result": result,
                     "started": _iso(self.started), "finished": _iso(self.finished),
                     "inputs": self.inputs,
                     "output": _jsonable(self.fingerprinter.fingerprint(path))}
            by_directory.setdefault(path.parent, {})[path.name] = entry
        for directory, files in sorted(by_directory.items()):
            try:
                update(directory, workflow, files)
            except (OSError, ManifestError) as exc:  # the result is stored: do not fail it
                log.error("could not update the run manifest of %s: %s", directory, exc)
                continue
            self.written.append(directory)
        return self.written


def _ref_text(ref: Any) -> str:
    """How a manifest names an input: its URL, or a local file's absolute path."""
    protocol, path = split_protocol(ref.url if isinstance(ref, FileRef) else os.fspath(ref))
    return str(Path(path).absolute()) if protocol == "file" else ref.url


def _config_value(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    text = repr(value)
    return text if len(text) <= _CONFIG_REPR else text[:_CONFIG_REPR - 3] + "..."


def _now() -> float:
    return dt.datetime.now(dt.UTC).timestamp()


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).isoformat()
