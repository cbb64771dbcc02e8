"""Attaching to a Ray cluster named by ``--address``: fail in seconds when nothing is there.

Why: ``ray.init(address="host:port")`` with no cluster behind it retries the GCS forever (measured:
still retrying after 10 minutes), so a typo'd address looked like a hung search.  A TCP connect to
the address first turns that into one line naming the address and the fix.  Kept free of module-level
Ray and RLlib imports so the CLI can check before any work and map the error to exit 2 cheaply;
``init_ray`` is the one place commands attach to (or start) Ray.
"""
from __future__ import annotations

import logging
import os
import socket

FIX = "start one with `ray start --head` (then --address auto) or drop --address to run a local Ray"


class RayClusterError(ValueError):
    """``--address`` names no reachable Ray cluster, or the cluster cannot host what was asked (one
    line naming the problem and the fix)."""


def check_ray_address(address: str | None, timeout: float = 5.0) -> None:
    """Raise ``RayClusterError`` unless ``host:port`` / ``ray://host:port`` accepts a TCP connection.

    ``None``, ``"local"`` and ``"auto"`` are left to ``ray.init`` (``auto`` fails fast by itself
    when no cluster runs on this node; ``connect_error`` words it)."""
    if not address or address in ("auto", "local"):
        return
    host, sep, port = address.split("://", 1)[-1].rstrip("/").rpartition(":")
    if not sep or not host or not port.isdigit():
        raise RayClusterError(f"--address {address!r} is not host:port or ray://host:port (e.g. "
                              "ray://head:10001 or auto); fix it or drop --address to run a local Ray")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        why = e.strerror or type(e).__name__
        raise RayClusterError(f"no Ray cluster at --address {address} ({why}); {FIX}") from None


def connect_error(address: str | None, e: BaseException) -> RayClusterError:
    """``ray.init``'s ConnectionError / TimeoutError as one line (``str(e)`` spans several)."""
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return RayClusterError(f"cannot attach to a Ray cluster at --address {address}: {first}; {FIX}")


def init_ray(address: str | None, **init_kwargs) -> bool:
    """Attach to the cluster at ``address`` (None: start a local Ray) unless this process already has
    Ray; True when this call initialised it.  Workers' output stays in Ray's log files
    (``log_to_driver=False``): their tracebacks would break the one-line errors and the ``--json``
    last line.  ``init_kwargs`` go to ``ray.init`` (e.g. ``num_cpus`` for a local instance)."""
    import ray

    if ray.is_initialized():
        return False
    # no --address: a new local instance ("local"), not Ray's default of attaching to whatever
    # `ray start` cluster /tmp/ray/ray_current_cluster names (retried forever when that one died)
    address = address or os.environ.get("RAY_ADDRESS") or None
    check_ray_address(address)  # Ray itself retries a dead address forever
    if address and address != "local":
        use_cluster_token()
    kwargs = {"include_dashboard": False, "logging_level": logging.ERROR, "log_to_driver": False,
              "runtime_env": {"env_vars": {"PYTHONWARNINGS": "ignore"}}, **init_kwargs}
    attempts = CLIENT_ATTEMPTS if address and address.startswith("ray://") else 1
    for attempt in range(1, attempts + 1):
        try:
            ray.init(address=address or "local", **kwargs)
            return True
        except (ConnectionError, TimeoutError) as e:
            if not address:
                raise
            if attempt < attempts and CLIENT_INIT_FAILURE in str(e):
                ray.shutdown()  # Ray Client's per-client server died at start: ask the proxy for a new one
                continue
            raise connect_error(address, e) from None


#: Ray Client's proxy starts one server per client; on a loaded machine that server has died at start
#: (its log: "epoll_wait error: Bad file descriptor" after "Other threads are currently calling into
#: gRPC, skipping fork() handlers"), which the driver sees as this message; a second try gets a new one
CLIENT_INIT_FAILURE = "Initialization failure from server"
CLIENT_ATTEMPTS = 2


def use_cluster_token() -> None:
    """Attach with the cluster's auth token when one is on this machine and RAY_AUTH_MODE is unset.

    Why: with Ray 2.60, ``ray start --head`` turns token auth on whenever ``~/.ray/auth_token``
    exists (any earlier local ``ray.init`` writes one), but a driver attaching by address does not
    read it and fails with "Failed to connect" (measured).  A token-mode client also attaches to a
    cluster that runs without auth (measured), so using an available token is safe."""
    try:
        from ray._private.authentication import authentication_token_setup as auth
    except ImportError:  # a Ray without token auth
        return
    level = logging.getLogger(auth.__name__).level
    logging.getLogger(auth.__name__).setLevel(logging.ERROR)  # its notice is not the user's concern
    try:
        auth.maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    finally:
        logging.getLogger(auth.__name__).setLevel(level)


def check_resources(needed: float, address: str | None, asked: str, fix: str, kind: str = "CPU") -> None:
    """Refuse, before any actor is created, a local Ray instance with fewer ``kind`` than ``asked``
    needs (Ray would leave the actors pending forever); a cluster (``address``) may autoscale, so
    there it is left to Ray.  Call after ``ray.init``."""
    import ray

    have = ray.cluster_resources().get(kind, 0.0)
    if address or needed <= have:
        return
    raise RayClusterError(f"{asked} need {needed:g} {kind}s but the local Ray instance has {have:g}; {fix} or pass "
                          "--address of a bigger cluster")


def check_cpus(needed: float, address: str | None) -> None:
    """``check_resources`` for the env runners and backend workers of a search."""
    check_resources(needed, address, "--num-env-runners × --cpus-per-env-runner + --backend-workers × "
                    "--cpus-per-backend-worker", "lower them (fractions such as --cpus-per-env-runner 0.5 are fine)")
