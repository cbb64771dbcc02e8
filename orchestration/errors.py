"""Which exceptions are the user's input (exit 2, one line) rather than our bug (exit 1)."""
from __future__ import annotations


class UsageError(ValueError):
    """Bad command-line input; the message names the problem and the fix."""


def input_error_types() -> tuple[type[BaseException], ...]:
    """Exception classes raised for bad input anywhere in the library.

    A corrupt or pickled checkpoint, a weights file to import that does not fit its --arch or would
    run code, a loss that went NaN/inf (the message names the step and the
    last good checkpoint), an ``--address`` with no Ray cluster and a killed build's stale lock are the
    user's to fix, too."""
    from agents.cluster import RayClusterError
    from gan.data import DatasetError
    from gan.export import ExportError
    from gan.metrics import MetricUnavailable
    from gan.models.reference_layout import ReferenceLayoutError
    from gan.pruning.pair import SpecError
    from gan.pruning.targets import TargetError
    from gan.teacher_run import TeacherRunError
    from gan.train.checkpoint import CheckpointError
    from gan.train.engine import StaleBuildLockError
    from gan.train.kinds import TeacherConfigError
    from gan.train.pix2pix import NonFiniteLossError
    from gan.weights_file import WeightsFileError

    return (UsageError, DatasetError, ExportError, SpecError, TargetError, MetricUnavailable, TeacherRunError,
            TeacherConfigError, CheckpointError, NonFiniteLossError, RayClusterError, StaleBuildLockError,
            ReferenceLayoutError, WeightsFileError, FileNotFoundError)
