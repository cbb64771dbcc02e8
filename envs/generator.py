"""``ganprune/GeneratorPruning-v0``: choose the generator's per-group keep ratios (D fixed as the peer)."""
from envs.pruning_env import ChannelPruningEnv


class GeneratorPruningEnv(ChannelPruningEnv):
    role = "generator"
