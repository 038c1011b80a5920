# SPDX-License-Identifier: MIT
"""The daemon's memory: glibc's allocator (DESIGN §7: RSS ≤ 80 MB after 100,000 sales) and
the cyclic garbage collector's pauses (the scan and /v1/health tails).

glibc gives each thread that allocates its own arena (up to eight per core), and frees
into them without giving pages back; posd's threads (sale and refund workers, the API's
thread pool, the print and sync workers, the scheduler) each leave a few hundred kB of
free but resident memory in their arena. Two calls, both no-ops where the C library is not
glibc (musl, macOS) or does not have them:

- :func:`limit_arenas`, before the first thread starts: at most two arenas (the main one
  and one the threads share). Python allocates small objects in its own pools and holds
  the GIL when it calls ``malloc``, so the threads rarely contend for the shared arena.
- :func:`trim`, from the housekeeping job: ``malloc_trim(0)``, which returns whole free
  pages inside every arena to the kernel, not only the top of the heap.

Measured by ``bench/rss_sales.py`` (docs/benchmarks.md § RSS over 100,000 sales).

And :func:`freeze_startup`, once the daemon has started: what start-up made and the daemon
keeps for its life (modules, classes, FastAPI's routes and pydantic's validators, ~92,000
objects) leaves the cyclic collector's generations. A full collection walked all of them:
65-74 ms with every thread stopped, at a random moment every minute or so of selling (a
sale, a health request or a scan waiting behind it). After the freeze it walks only what
was made since. The frozen objects are still freed by reference counting; only a cycle
among them would stay (start-up's objects live as long as the daemon anyway).
"""

from __future__ import annotations

import ctypes
import gc
import logging
import platform
from functools import cache

log = logging.getLogger(__name__)

#: mallopt's parameter number for the arena limit (glibc's malloc.h).
M_ARENA_MAX = -8
#: the main arena and one for every other thread.
ARENAS = 2


@cache
def _glibc() -> ctypes.CDLL | None:
    if platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
        libc.malloc_trim.argtypes = (ctypes.c_size_t,)
    except (OSError, AttributeError):
        return None
    return libc


def limit_arenas(arenas: int = ARENAS) -> bool:
    """At most ``arenas`` malloc arenas from now on. True when glibc took it."""
    libc = _glibc()
    if libc is None:
        return False
    done = bool(libc.mallopt(M_ARENA_MAX, arenas))
    if not done:
        log.debug("mallopt(M_ARENA_MAX, %d) refused", arenas)
    return done


def trim() -> bool:
    """Give free heap pages back to the kernel. True when some were released."""
    libc = _glibc()
    return libc is not None and bool(libc.malloc_trim(0))


def freeze_startup() -> int:
    """Collect start-up's garbage, then move every object alive out of the collector's
    generations (``gc.freeze``). Returns how many objects are frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
