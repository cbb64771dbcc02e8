"""Same seed, same result, whatever ran before in the process (issue #18, gan/determinism.py).

The cause found: RLlib built the two policies in the iteration order of ``set(AGENTS)``, which follows
Python's per-process string-hash seed, so in about half of all processes the generator's policy
started from the weights the discriminator's got in the others; RLlib also iterates other sets of
agent ids (episodes' ``agent_ids``), so the ``ganprune`` entry point pins ``PYTHONHASHSEED``.  And RLlib's seeding turns torch's
deterministic algorithms on for good; the trainer flushes denormals; a test or a user may change the
thread count: each command now sets these for its own work and restores them afterwards.
"""
import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest
import torch

from gan.determinism import ProcessSettings, controlled
from tests.teachers import tiny_teacher
from orchestration.prune import prune
from orchestration.requests import FinetuneFlags, PruneRequest, SearchFlags


def _disturb() -> ProcessSettings:
    """What earlier work in a process may leave behind: moved generators, other process settings."""
    torch.manual_seed(1234), np.random.seed(99), random.seed(7)
    torch.rand(17), np.random.rand(3), random.random()
    ProcessSettings(threads=1, flush_denormal=not ProcessSettings.default().flush_denormal,
                    deterministic_algorithms=True, cudnn_benchmark=False, cudnn_deterministic=True).apply()
    return ProcessSettings.current()


def test_controlled_restores_settings_and_generators():
    before = _disturb()
    state = torch.get_rng_state()
    with controlled(3) as record:
        assert record["seed"] == 3 and record["threads"] == ProcessSettings.default().threads
        assert ProcessSettings.current() == ProcessSettings.default()
        first = torch.rand(2), np.random.rand(), random.random()
    with controlled(3):
        again = torch.rand(2), np.random.rand(), random.random()
    assert torch.equal(first[0], again[0]) and first[1:] == again[1:]
    assert ProcessSettings.current() == before and torch.equal(torch.get_rng_state(), state)
    ProcessSettings.default().apply()


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("det")
    return tiny_teacher(tmp / "teacher", data_root=tmp / "data", size=32, steps=20)


def _run(teacher, out) -> dict:
    s = prune(PruneRequest(method="marl", teacher=str(teacher), macs_target=0.3, out=str(out), seed=5,
                           search=SearchFlags(iterations=2, episodes=3, backend_steps=1),
                           finetune=FinetuneFlags(steps=3, backend="torch", export_onnx=False), quiet=True,
                           track=False))
    best = json.loads((out / "best_spec.json").read_text())
    return {"generator": best["generator"], "discriminator": best["discriminator"],
            "history": [h["generator_own"] for h in json.loads((out / "history.json").read_text())],
            "after": s["fidelity"]["psnr_vs_teacher"], "process": s["process"]}


def test_same_command_twice_in_one_process_after_disturbing_it(teacher, tmp_path):
    """A teacher was just trained in this process (the fixture), then the global generators and the
    process settings are moved on purpose: the search and fine-tune give the same pair and numbers."""
    disturbed = _disturb()
    first = _run(teacher, tmp_path / "a")
    assert ProcessSettings.current() == disturbed  # the command put back what it found
    ProcessSettings.default().apply()
    torch.manual_seed(0)
    second = _run(teacher, tmp_path / "b")
    assert first == second
    assert first["process"]["seed"] == 5 and first["process"]["threads"] == ProcessSettings.default().threads


PROBE = "from gan.determinism import pin_hash_seed; pin_hash_seed(); import os; " \
        "print(os.environ['PYTHONHASHSEED'], list({'generator', 'discriminator'}), hash('ganprune'))"


def test_the_entry_point_pins_the_string_hash_seed():
    """RLlib iterates sets of agent/module ids: their order follows PYTHONHASHSEED, so ``ganprune``
    (``orchestration.cli.entry``) re-runs itself with a fixed one when none is set; a user's own stays."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONHASHSEED"}
    runs = [subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
                           check=True).stdout for _ in range(3)]
    assert runs[0].startswith("0 ") and runs[0] == runs[1] == runs[2]
    mine = subprocess.run([sys.executable, "-c", PROBE], env={**env, "PYTHONHASHSEED": "7"}, capture_output=True,
                          text=True, check=True).stdout
    assert mine.startswith("7 ")


def test_policies_are_built_in_a_fixed_order(tmp_path):
    """The two RLModules are built (and draw their initial weights) in AGENTS order, not set order."""
    from agents.marl import AGENTS, MarlConfig, MarlSearch
    from envs.multi_agent import MultiAgentPruningEnv

    search = MarlSearch({"teacher": None, "macs_target": 0.3}, MarlConfig(), tmp_path)
    search.driver_env = MultiAgentPruningEnv({"teacher": None, "macs_target": 0.3})
    assert list(search.algorithm_config().policies) == list(AGENTS)
