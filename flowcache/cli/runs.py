"""``flowcache runs DIR``: which run wrote each file of a directory, from what; and repairs."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from flowcache import manifest
from flowcache.cli import output
from flowcache.config import StoreConfig


def runs_command(
    directory: Annotated[str, typer.Argument(help="an output directory with a run manifest")],
    repair: Annotated[bool, typer.Option("--repair", help="restore a damaged manifest from its "
                                         "backup (the damaged file is kept aside)")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]
    = False,
) -> None:
    """Which run wrote each file of DIRECTORY, from what; stale entries are marked."""
    if not manifest.manifest_path(directory).exists() and \
            not manifest.backup_path(directory).exists():
        output.fail(f"no run manifest in {directory} ({manifest.MANIFEST_NAME})", output.USAGE)
    if repair:
        output.note(manifest.repair(directory))
    rows = manifest.check(directory, StoreConfig.from_env().fingerprinter())
    if as_json:
        output.emit_json([{"workflow": r.workflow, "file": r.file, "status": r.status,
                           "reasons": list(r.reasons), **r.entry} for r in rows])
        return
    table = Table("workflow", "file", "task", "finished", "status")
    for row in rows:
        status = row.status if row.status == "ok" else f"[red]{row.status.upper()}[/red]: " + \
            "; ".join(row.reasons)
        table.add_row(row.workflow, row.file, str(row.entry.get("task", "")),
                      str(row.entry.get("finished", ""))[:19], status)
    output.console.print(table)
    stale = sum(row.status != "ok" for row in rows)
    output.note(f"{len(rows)} files, {stale} not up to date")
