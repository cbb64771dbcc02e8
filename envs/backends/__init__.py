"""Backends score a candidate (G spec, D spec) pair; the envs never know which one runs."""
from envs.backends.base import Backend, Scores, spec_key
from envs.backends.local import LocalBackend, LocalConfig
from envs.backends.supernet import SupernetBackend
from envs.backends.synthetic import SyntheticBackend

BACKENDS = {"local": LocalBackend, "supernet": SupernetBackend, "synthetic": SyntheticBackend}

__all__ = ["Backend", "Scores", "spec_key", "LocalBackend", "LocalConfig", "BACKENDS"]
