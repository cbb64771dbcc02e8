"""Progress of long work: a live bar in a terminal, a plain line every ``LOG_INTERVAL`` seconds in a log.

Why: teachers, fine-tunes and searches run for minutes under nohup, Ray, CI and ``--json`` pipes. There a
tqdm bar's carriage returns pile up into one unreadable line, and a bar disabled off a terminal is silence:
a user cannot tell a slow run from a stuck one. Off a terminal every refresh is its own line, at most one
per ``LOG_INTERVAL`` seconds, plus the last one (docs/development.md, "Progress").
"""
from __future__ import annotations

import sys

LOG_INTERVAL = 30.0  # seconds between progress lines in a log (a terminal's bar refreshes continuously)


class _Lines:
    """A stream for tqdm off a terminal: each refresh becomes one line, without the carriage returns."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, s: str) -> None:
        s = s.replace("\r", "").strip()
        if s:
            self.stream.write(s + "\n")

    def flush(self) -> None:
        self.stream.flush()


def _log_bar():
    """tqdm whose postfix and description changes wait for the next refresh instead of forcing one (they
    refresh at once by default, which in a log is a line per call)."""
    from tqdm.auto import tqdm

    class LogBar(tqdm):
        def set_postfix(self, ordered_dict=None, refresh=True, **kwargs):
            super().set_postfix(ordered_dict, refresh=False, **kwargs)

        def set_postfix_str(self, s="", refresh=True):
            super().set_postfix_str(s, refresh=False)

        def set_description(self, desc=None, refresh=True):
            super().set_description(desc, refresh=False)

    return LogBar


def progress(iterable=None, *, desc: str, total: int | None = None, quiet: bool = False, **kw):
    """A tqdm bar over ``iterable`` (or ``total`` steps, updated by hand) that suits where stderr goes."""
    from tqdm.auto import tqdm

    if sys.stderr.isatty():
        return tqdm(iterable, desc=desc, total=total, disable=quiet, dynamic_ncols=True, mininterval=0.1, **kw)
    return _log_bar()(iterable, desc=desc, total=total, disable=quiet, mininterval=LOG_INTERVAL,
                      file=_Lines(sys.stderr), ascii=True, **kw)
