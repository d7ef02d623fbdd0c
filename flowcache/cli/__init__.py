"""The ``flowcache`` command: inspect, check and manage the store the environment configures.

Users' commands (``info``, ``doctor``, ``ls``, ``clear``, ``gc``, ``billing``, ``runs``,
``carbon ...``) act as the configured user; operators' (``admin ...``, ``clear --user``,
``ledger ...``) need a configuration whose credentials reach every namespace. Every command
that prints data takes ``--json``; errors are one line on stderr (``--debug`` adds the
traceback); exit codes: 0 done, 1 failed at run time, 2 bad command line or configuration.
"""

from __future__ import annotations

from typing import Annotated

import typer

from flowcache.cli import accounts, carbon, metrics, operators, output, runs, store

app = typer.Typer(cls=output.OneLineErrors, no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False,
                  help="flowcache: tiered content-addressed cache and carbon-aware scheduling.")


def _version(value: bool) -> None:
    if value:
        from flowcache import __version__

        typer.echo(f"flowcache {__version__}")
        raise typer.Exit()


@app.callback()
def root(debug: Annotated[bool, typer.Option("--debug", help="print a traceback with an "
                                             "error")] = False,
         version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                               help="print the version and stop")] = False,
         ) -> None:
    """flowcache: tiered content-addressed cache and carbon-aware scheduling."""
    output.DEBUG["on"] = debug


app.command()(store.info)
app.command()(store.doctor)
app.command("ls")(store.list_entries)
app.command("clear")(store.clear_command)
app.command("gc")(store.gc_command)
app.command("billing")(accounts.billing_command)
app.command("runs")(runs.runs_command)
app.command("metrics")(metrics.metrics_command)
app.add_typer(carbon.carbon_app, name="carbon", help="Carbon intensity forecasts and plans.")
app.add_typer(operators.admin_app, name="admin")
app.add_typer(accounts.ledger_app, name="ledger")
parse_when = accounts.parse_when  # kept where the tests and users found it


def main() -> None:
    app()


__all__ = ["app", "main", "parse_when"]
