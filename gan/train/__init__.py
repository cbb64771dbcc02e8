"""Training: engines (DeepSpeed / plain torch), the trainers and their one builder (``builder``), the
teacher kinds (``kinds``), pickle-free checkpoints."""
from gan.train.checkpoint import CheckpointError  # noqa: F401
from gan.train.engine import TorchEngine, make_engine  # noqa: F401
from gan.train.pix2pix import NonFiniteLossError, Pix2PixTrainer, TrainConfig  # noqa: F401
