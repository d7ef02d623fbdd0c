"""Putting what a Prefect user must see into the run's own logs (the UI, the API, the console).

flowcache's core logs to ``flowcache.*`` loggers, which Prefect does not send to its API: a
warning such as "the Redis tier is unavailable" would reach the terminal of the process that ran
the task and nobody else. Importing ``prefect_cache`` attaches :class:`RunLogForwarder` to the
``flowcache`` logger: a warning (or worse) logged while a flow or task run is active is also
sent to the API as a log of that run, so it shows in the run's logs in the UI. Everything else
(info and debug lines, records outside runs) stays where it was; to send all of it, set
``PREFECT_LOGGING_EXTRA_LOGGERS=flowcache`` (Prefect then attaches its own handlers, and the
forwarder stands aside so nothing is sent twice).

Prefect's console draws messages with Rich, which turns ``:name:`` into an emoji wherever
``name`` is one of Rich's emoji codes: ``flowcache:ledger:{alice}`` would print as
``flowcache📒{alice}``. The forwarder runs before the console handlers and makes such codes
inert with a zero-width space after the first colon (:func:`rich_safe`); text without an emoji
code is left exactly as it was.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from prefect.logging.handlers import APILogHandler

#: Rich's emoji pattern (``rich._emoji_replace``): a colon, a name without spaces, a colon
_EMOJI_CODE = re.compile(r":(\S*?)(?:-(?:emoji|text))?:")
_INERT = "\u200b"  # zero-width space: breaks the code, invisible when printed


def rich_safe(text: str) -> str:
    """``text`` with every Rich emoji code broken by a zero-width space after its first colon
    (``"a:ledger:b"`` -> ``"a:\\u200bledger:b"``); other colons are untouched."""
    from rich.emoji import Emoji, NoEmoji

    def inert(match: re.Match[str]) -> str:
        try:
            Emoji(match.group(1).lower())
        except NoEmoji:
            return match.group(0)
        return ":" + _INERT + match.group(0)[1:]

    return _EMOJI_CODE.sub(inert, text) if ":" in text else text


class RunLogForwarder(APILogHandler):
    """Sends ``flowcache.*`` warnings logged inside a Prefect run to that run's API logs."""

    #: what is forwarded; the handler itself takes every level, so that every record gets
    #: its text made Rich-safe on the way to the console handlers after it
    forward_level = logging.WARNING

    def handle(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        safe = rich_safe(message)
        if safe != message:
            record.msg, record.args = safe, None
        return super().handle(record)

    def emit(self, record: logging.LogRecord) -> None:
        if (record.levelno < self.forward_level or _prefect_sends("flowcache")
                or not _in_run()):
            return
        super().emit(record)


def _in_run() -> bool:
    from prefect.context import FlowRunContext, TaskRunContext

    return TaskRunContext.get() is not None or FlowRunContext.get() is not None


def _prefect_sends(name: str) -> bool:
    """Whether Prefect already attached its API handler to logger ``name`` (it does for
    ``PREFECT_LOGGING_EXTRA_LOGGERS``)."""
    return any(type(handler) is APILogHandler for handler in logging.getLogger(name).handlers)


def install() -> RunLogForwarder:
    """Attach the forwarder to the ``flowcache`` logger, first in line, once per process."""
    logger = logging.getLogger("flowcache")
    for handler in logger.handlers:
        if isinstance(handler, RunLogForwarder):
            return handler
    forwarder = RunLogForwarder()
    logger.handlers.insert(0, forwarder)
    return forwarder


def flow_run_log(flow_run: Any, flow: Any = None) -> logging.LoggerAdapter:
    """The logger of ``flow_run``, usable where the run's context is gone (a hook run after a
    crash): its records carry the run id, so they reach the run's logs in the API."""
    from prefect.logging.loggers import flow_run_logger

    return flow_run_logger(flow_run=flow_run, flow=flow)
