"""The cost of a run over all its attempts: a run killed and resumed (``--resume``) reports the CPU and
wall seconds of every attempt, not only of the last one (issue #13 item 6: the search cost in every
table).

Why a ledger on disk: a killed process cannot say what it spent when it dies, so each attempt rewrites
its running totals to ``<out>/attempts.json`` every ``every`` seconds (a daemon thread) and once when it
ends; a resumed attempt starts from the entries the earlier ones left. At most ``every`` seconds of a
killed attempt go unrecorded. CPU seconds are this process's (``time.process_time``), as everywhere in a
run's cost: worker processes it starts (Ray, DeepSpeed ranks) are not in them.
"""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from orchestration.rundir import write_json

FILE = "attempts.json"


class AttemptLedger:
    """``ledger = AttemptLedger(out, resumed).start()``; ``ledger.totals()``: cpu_s and total_s over all
    attempts and how many there were; ``ledger.stop()`` when the run ends, however it ends."""

    def __init__(self, out, resumed: bool, every: float = 30.0, cpu0: float | None = None,
                 t0: float | None = None):
        """``cpu0``/``t0``: when this attempt started (``time.process_time``/``perf_counter``; default now)."""
        self.path = Path(out) / FILE
        self.earlier: list[dict] = []
        if resumed and self.path.is_file():
            try:
                self.earlier = list(json.loads(self.path.read_text())["attempts"])
            except (ValueError, KeyError, TypeError):
                self.earlier = []  # an unreadable ledger costs the earlier attempts' numbers, not the run
        self.every = float(every)
        self.cpu0 = time.process_time() if cpu0 is None else cpu0
        self.t0 = time.perf_counter() if t0 is None else t0
        self._final: dict | None = None  # set by totals(): the numbers the run reports
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="attempt-ledger", daemon=True)

    def this_attempt(self) -> dict:
        return {"pid": os.getpid(), "cpu_s": round(time.process_time() - self.cpu0, 2),
                "wall_s": round(time.perf_counter() - self.t0, 1)}

    def write(self) -> None:
        with self._lock:  # the thread and the run write the same file (write_json's temp name is per process)
            write_json(self.path, {"attempts": [*self.earlier, self._final or self.this_attempt()]})

    def totals(self) -> dict:
        """This attempt's cost plus every earlier attempt's last record; the ledger keeps these same
        numbers (``stop`` does not write a later snapshot), so the run's record and it agree."""
        self._final = self.this_attempt()
        self.write()
        every = [*self.earlier, self._final]
        return {"cpu_s": round(sum(a["cpu_s"] for a in every), 2),
                "total_s": round(sum(a["wall_s"] for a in every), 1), "attempts": len(every)}

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.write()
            except OSError:  # the folder went away (an overwrite): the run itself reports that
                return

    def start(self) -> "AttemptLedger":
        self.write()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        if self.path.parent.is_dir():
            self.write()
