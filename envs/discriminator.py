"""``ganprune/DiscriminatorPruning-v0``: choose the discriminator's per-group keep ratios (G fixed)."""
from envs.pruning_env import ChannelPruningEnv


class DiscriminatorPruningEnv(ChannelPruningEnv):
    role = "discriminator"
