"""``finetune --ray-workers N`` / ``prune --finetune-workers N``: the same ``finetune`` in N Ray Train workers.

Why Ray Train: on a cluster the fine-tune must run wherever Ray has room (one worker per GPU, across
nodes), which single-node torchrun (``--num-procs``) cannot.  ``TorchTrainer`` (Train v2, Ray 2.60's
default) gives each worker the torchrun environment (RANK, WORLD_SIZE, LOCAL_RANK, ..., MASTER_PORT)
and an open process group (gloo on CPU, nccl on GPU) that DeepSpeed reuses, so every worker runs
exactly ``orchestration.finetune.finetune`` as under torchrun (rank 0 prepares, evaluates, exports).

The driver checks what it can before any worker starts; an input error met inside a worker comes
back as the same exception (one line, exit 2), not a Ray traceback.  On several nodes the teacher,
the spec, ``out`` and Ray Train's storage (``<out>/../.ray_train``) must be on shared storage.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pickle
import shutil
import time
import warnings
from pathlib import Path

from orchestration.errors import UsageError
from agents.cluster import check_resources, init_ray
from orchestration import launch
from orchestration.errors import input_error_types
from orchestration.finetune import check_inputs, finetune

#: Ray Train's run storage (RunConfig.storage_path), beside ``out``: on the shared storage ``out`` needs
STORAGE = ".ray_train"
_PATHS = ("teacher_dir", "spec_path", "out", "init_generator", "init_discriminator")


def check_workers(workers: int, backend: str = "deepspeed", batch_size: int | None = None,
                  flag: str = "--ray-workers", backend_flag: str = "--backend") -> None:
    """UsageError where ``workers`` Ray workers cannot run the fine-tune (before Ray starts)."""
    if workers < 1:
        raise UsageError(f"{flag} must be ≥ 1, got {workers}")
    if backend != "deepspeed":
        raise UsageError(f"{flag} {workers} needs {backend_flag} deepspeed: the torch backend is single-process")
    if batch_size is not None and batch_size % workers:
        raise UsageError(f"--batch-size {batch_size} (the global batch) is not divisible by {flag} {workers}; "
                         f"pass a multiple of {workers}")


def finetune_on_ray(workers: int, request, address: str | None = None, use_gpu: bool | None = None) -> dict:
    """Run ``finetune(request)`` (an ``orchestration.requests.FinetuneRequest``) in ``workers`` Ray Train workers (one GPU each when
    ``use_gpu``; None: GPUs iff the Ray cluster has any) on the cluster at ``address`` (None: this
    process's Ray if it has one, else a local one).  Returns rank 0's result (``out/finetune.json``)
    with ``ray_workers`` and ``ray_fit_seconds`` (Ray Train's wall time, worker start included)."""
    request = _absolute(request)
    check_workers(int(workers), request.backend, request.batch_size)
    check_inputs(request)
    _check_train_v2()

    import ray

    started = init_ray(address)
    try:
        if use_gpu is None:
            use_gpu = ray.cluster_resources().get("GPU", 0) > 0
        _check_resources(int(workers), bool(use_gpu), address)
        if not request.quiet:
            print(f"fine-tuning on Ray Train: {workers} workers ({'GPU, nccl' if use_gpu else 'CPU, gloo'}), "
                  "DeepSpeed; worker logs: Ray's session logs", flush=True)
        t0 = time.perf_counter()
        _fit(int(workers), bool(use_gpu), request)
        fit_s = time.perf_counter() - t0
    finally:
        if started:
            ray.shutdown()
    path = Path(request.out) / "finetune.json"
    if not path.is_file():  # rank 0 wrote it on its own node
        raise UsageError(f"the fine-tune finished but {path} is not visible here: put --out on storage every "
                         "Ray node sees (docs/cluster.md)")
    result = {**json.loads(path.read_text()), "ray_workers": int(workers), "ray_fit_seconds": round(fit_s, 1)}
    path.write_text(json.dumps(result, indent=1, default=float))
    if not request.quiet:
        print(f"after {result['steps']} steps ({result['objective']}) on {workers} Ray workers: PSNR vs teacher "
              f"{result['before']['psnr_vs_teacher']:.2f} → {result['after']['psnr_vs_teacher']:.2f} dB "
              f"(training {result['train_seconds']:.1f} s, Ray Train {fit_s:.1f} s); wrote {request.out}",
              flush=True)
    return result


def _absolute(request):
    """The request with absolute paths: Ray Train workers run in a directory of Ray's session, not the
    caller's."""
    paths = {k: str(Path(v).expanduser().resolve()) for k in _PATHS if (v := getattr(request, k)) is not None}
    data = request.data
    if data is not None and Path(data).expanduser().exists():  # a folder; a built-in name stays a name
        paths["data"] = str(Path(data).expanduser().resolve())
    return dataclasses.replace(request, **paths)


def _check_train_v2() -> None:
    """Train v1 (``RAY_TRAIN_V2_ENABLED=0``) is refused: its trainer actor takes a CPU of its own (2
    workers on 2 CPUs then wait forever), it prints to stdout and it reports worker errors differently."""
    from ray.train.torch import TorchTrainer

    if not TorchTrainer.__module__.startswith("ray.train.v2."):
        raise UsageError("Ray Train v1 is active (RAY_TRAIN_V2_ENABLED=0); unset RAY_TRAIN_V2_ENABLED to "
                         "fine-tune with Ray Train v2, Ray's default")


def _check_resources(workers: int, use_gpu: bool, address: str | None) -> None:
    """Refuse what a local Ray instance can never place (Ray Train would wait for it forever); a
    cluster (``address``) may autoscale, so there it is left to Ray."""
    kind = "GPU" if use_gpu else "CPU"  # ScalingConfig's default per worker: 1 GPU, or else 1 CPU
    check_resources(workers, address, f"{workers} Ray workers (1 {kind} each)", "use fewer workers", kind)


def _fit(workers: int, use_gpu: bool, request) -> None:
    """``TorchTrainer.fit`` of ``_worker``; a worker's input error is raised as itself."""
    from ray.train import FailureConfig, RunConfig, ScalingConfig, TrainingFailedError
    from ray.train.torch import TorchConfig, TorchTrainer

    out = Path(request.out)
    storage = out.parent / STORAGE
    name = f"{out.name}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    # no restarts (preempted workers included, which Train v2 restarts by default): the fine-tune has
    # no Ray checkpoints, so a rerun is the command again
    failure = FailureConfig(max_failures=0, max_preemption_failures=0)
    trainer = TorchTrainer(
        _worker, train_loop_config={"request": request},
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu),
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        run_config=RunConfig(name=name, storage_path=str(storage), failure_config=failure))
    try:
        trainer.fit()
    except TrainingFailedError as e:  # WorkerGroupError (a worker raised) or ControllerError
        user = _input_error(e)
        if user is not None:
            raise user from None
        raise
    finally:
        shutil.rmtree(storage / name, ignore_errors=True)  # only Ray's storage marker: no checkpoints
        try:
            storage.rmdir()
        except OSError:
            pass


def _input_error(e: BaseException) -> BaseException | None:
    """The first input error (exit 2) a worker raised, lowest rank first, or None (our bug: exit 1)."""
    failures = getattr(e, "worker_failures", None) or {}  # rank → the worker's own exception, unpickled
    return next((failures[r] for r in sorted(failures) if isinstance(failures[r], input_error_types())), None)


def _worker(config: dict) -> None:
    """One Ray Train worker: ``finetune`` in Ray Train's process group (rank 0 writes the outputs)."""
    import torch.distributed as dist


    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError("Ray Train started this worker without a torch process group (TorchConfig backend)")
    group, rank = dist.group.WORLD, dist.get_rank()
    if rank != 0:  # as under torchrun: rank 0 speaks for all
        warnings.simplefilter("ignore")
    try:
        request = config["request"]
        finetune(dataclasses.replace(request, quiet=request.quiet or rank != 0))
    except launch.PeerFailed:
        return  # rank 0 stopped on bad input before letting this rank go: its error is the one reported
    except BaseException as e:
        user = isinstance(e, input_error_types())
        launch.release_pending(launch.USAGE_EXIT if user else 1)
        if _pickles(e):
            raise
        # Ray returns the error pickled; one that cannot be rebuilt reaches the driver as a garbled
        # health-check failure, so send its first line instead
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise (UsageError(first) if user else RuntimeError(f"{type(e).__name__}: {first}")) from None
    if dist.group.WORLD is not group:
        raise RuntimeError("DeepSpeed replaced Ray Train's process group instead of reusing it")


def _pickles(e: BaseException) -> bool:
    try:
        pickle.loads(pickle.dumps(e))
        return True
    except Exception:  # noqa: BLE001 - any failure means it cannot travel
        return False
