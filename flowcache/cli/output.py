"""How every ``flowcache`` command speaks: tables on stdout, one-line errors on stderr, JSON on
request, human sizes, progress bars on long work.

Errors are a line on stderr (``flowcache: error: ...``), never a traceback, unless ``--debug``
asks for one; the exit code says what kind: 2 for a bad command line or configuration (fix the
input), 1 for a failure at run time (a backend refused, a check failed).
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn, TypeVar

import click
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from typer.core import TyperGroup

from flowcache.units import format_size

T = TypeVar("T")
console = Console(highlight=False)
errors = Console(stderr=True, highlight=False)
#: set by ``flowcache --debug``: failures print their traceback too
DEBUG = {"on": False}
USAGE, FAILURE = 2, 1

size = format_size


class OneLineErrors(TyperGroup):
    """Any error a command raises becomes one line on stderr and an exit code (2 for a bad
    configuration, 1 for anything else): the class of every ``flowcache`` Typer app."""

    def invoke(self, ctx: click.Context) -> Any:
        from flowcache.errors import ConfigError

        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort, typer.Exit,
                typer.Abort):
            raise
        except ConfigError as exc:
            report(exc, USAGE)
        except Exception as exc:
            report(exc, FAILURE)


def fail(message: str, code: int = FAILURE) -> NoReturn:
    """Say what went wrong in one line on stderr, and stop with ``code``."""
    errors.print(f"flowcache: error: {message}", markup=False, soft_wrap=True)
    raise typer.Exit(code)


def report(exc: BaseException, code: int) -> NoReturn:
    """An exception as :func:`fail` says it (with ``--debug``, its traceback first)."""
    if DEBUG["on"]:
        errors.print("".join(traceback.format_exception(exc)), markup=False)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    fail(f"{type(exc).__name__}: {text}" if not _is_ours(exc) else text or type(exc).__name__,
         code)


def _is_ours(exc: BaseException) -> bool:
    from flowcache.errors import FlowcacheError

    return isinstance(exc, FlowcacheError)


def emit_json(data: Any) -> None:
    """Data for programs: one JSON document on stdout."""
    click.echo(json.dumps(data, indent=1, default=str))


def note(message: str) -> None:
    """A human line on stdout (nothing for programs)."""
    console.print(message, markup=True, soft_wrap=True)


@contextmanager
def progress(label: str, total: int | None = None) -> Iterator[Any]:
    """A progress bar on stderr for long work (only on a terminal); yields ``advance(n)``."""
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), console=errors, transient=True,
                   disable=not errors.is_terminal)
    with bar:
        task = bar.add_task(label, total=total)
        yield lambda n=1: bar.advance(task, n)


def tracked(items: Iterable[T], label: str, total: int | None = None) -> Iterator[T]:
    """``items``, advancing a progress bar."""
    with progress(label, total) as advance:
        for item in items:
            yield item
            advance(1)


def is_interactive() -> bool:
    return sys.stdin.isatty()
