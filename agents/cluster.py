"""Attaching to a Ray cluster named by ``--address``: fail in seconds when nothing is there.

Why: ``ray.init(address="host:port")`` with no cluster behind it retries the GCS forever (measured:
still retrying after 10 minutes), so a typo'd address looked like a hung search.  A TCP connect to
the address first turns that into one line naming the address and the fix.  Kept free of Ray and
RLlib imports so the CLI can check before any work and map the error to exit 2 cheaply.
"""
from __future__ import annotations

import socket

FIX = "start one with `ray start --head` (then --address auto) or drop --address to run a local Ray"


class RayClusterError(ValueError):
    """``--address`` names no reachable Ray cluster (one line naming the address and the fix)."""


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
