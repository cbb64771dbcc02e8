"""A Ray actor that collects finished episodes from every env runner for the driver.

Why an actor: env runners live in other processes (other machines on a cluster); the driver needs
each episode's specs and scores to keep the best pair and log the pruning dynamics, and RLlib's
result dict only carries reduced numbers.  The env pushes one small dict per episode; the driver
drains the actor after each training iteration.
"""
from __future__ import annotations

import ray


@ray.remote(num_cpus=0)
class EpisodeLog:
    def __init__(self):
        self.records: list[dict] = []

    def add(self, record: dict) -> None:
        self.records.append(record)

    def drain(self) -> list[dict]:
        out, self.records = self.records, []
        return out


def start(name: str):
    """Create (or find) the named log actor."""
    return EpisodeLog.options(name=name, get_if_exists=True, lifetime=None).remote()
