"""Gymnasium envs for channel selection, the RLlib two-agent env and the scoring backends."""
import gymnasium

GENERATOR_ENV_ID = "ganprune/GeneratorPruning-v0"
DISCRIMINATOR_ENV_ID = "ganprune/DiscriminatorPruning-v0"

for _id, _entry in ((GENERATOR_ENV_ID, "envs.generator:GeneratorPruningEnv"),
                    (DISCRIMINATOR_ENV_ID, "envs.discriminator:DiscriminatorPruningEnv")):
    if _id not in gymnasium.registry:
        gymnasium.register(id=_id, entry_point=_entry)
