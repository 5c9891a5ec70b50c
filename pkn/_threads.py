"""How many torch threads ``pkn`` uses: :func:`n_threads` and :func:`thread_policy`.

The rule: ``PKN_THREADS`` (an integer >= 1) if set; otherwise the CPUs this process may
run on (``os.sched_getaffinity``) divided by the concurrency hint (``PKN_CONCURRENCY``,
or the ``concurrency`` argument: how many pkn processes or dask workers share the
machine), at least 1, and never more than the torch thread count already in force (a
``torch.set_num_threads`` of the user's that is lower wins; ``PKN_THREADS`` wins over
it). The count is applied only while pkn runs and restored afterwards.

The classical filters (NLM, bilateral, ...) issue thousands of small operations, and each
one wakes the other OpenMP threads; when another process holds the cores those threads
wait for their turn. So, unless ``PKN_THREADS`` is set, pkn runs with one thread when the
other CPUs are busy (:func:`busy_elsewhere`: other processes used at least half a core
over 50 ms, sampled at most once a second), and a filter also when the image is small
(under a megapixel); with the policy's count otherwise (an idle machine: 2048 x 2048
NLM 0.25 s on two threads, 0.4 s on one).
Measured on 2 busy cores, 2048 x 2048 NLM filter: 0.5 s with one thread against 16-24 s
with two (on an idle machine two threads gain ~40%: 0.25 s against 0.4 s).
"""

from __future__ import annotations

import os
from contextlib import contextmanager

__all__ = ["busy_elsewhere", "cpus", "n_threads", "thread_policy"]

_SAMPLE = 0.05  # seconds over which busy_elsewhere samples the machine's CPU use


def cpus() -> int:
    """CPUs this process may run on (its affinity mask; ``os.cpu_count()`` elsewhere)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _env_int(name: str, env) -> int | None:
    v = env.get(name)
    if v is None or v.strip() == "" or v.strip().lower() == "auto":
        return None
    try:
        n = int(v.strip())
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"{name} must be an integer >= 1 or 'auto', got {v!r}.")
    return n


def n_threads(concurrency: int | None = None, *, current: int | None = None, env=None) -> int:
    """The torch thread count pkn uses (see the module docstring for the rule).

    ``concurrency``: processes sharing this process's CPUs (default ``PKN_CONCURRENCY``
    or 1); ``current``: the torch thread count in force (default
    ``torch.get_num_threads()``); ``env``: a mapping for the variables (default
    ``os.environ``).
    """
    env = os.environ if env is None else env
    forced = _env_int("PKN_THREADS", env)
    if forced is not None:
        return forced
    if concurrency is None:
        concurrency = _env_int("PKN_CONCURRENCY", env) or 1
    elif isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"concurrency must be an integer >= 1, got {concurrency!r}.")
    n = max(1, cpus() // concurrency)
    if current is None:
        import torch

        current = torch.get_num_threads()
    return max(1, min(n, current))


def _cpu_ticks() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs from /proc/stat, or None where it is missing."""
    try:
        with open("/proc/stat") as f:
            v = [int(t) for t in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = v[3] + (v[4] if len(v) > 4 else 0)  # idle + iowait
    return sum(v) - idle, sum(v)


_LAST: list = [float("-inf"), False]  # (perf_counter of the last sample, its answer)


def busy_elsewhere(sample: float = _SAMPLE, *, reuse: float = 1.0) -> bool:
    """Whether other processes kept at least half a CPU busy over ``sample`` seconds (this
    process's own CPU time is subtracted); an answer younger than ``reuse`` seconds is
    reused (planes of a stack). False where /proc is missing."""
    import time

    if time.perf_counter() - _LAST[0] < reuse:
        return _LAST[1]
    a = _cpu_ticks()
    if a is None:
        return False
    t0, c0 = time.perf_counter(), time.process_time()
    time.sleep(sample)
    b = _cpu_ticks()
    wall, own = time.perf_counter() - t0, time.process_time() - c0
    if b is None or b[1] <= a[1]:
        return False
    ncpu = os.cpu_count() or 1
    busy_cpus = (b[0] - a[0]) / (b[1] - a[1]) * ncpu  # CPUs busy on average, all processes
    _LAST[:] = [time.perf_counter(), busy_cpus - own / max(wall, 1e-9) >= 0.5]
    return _LAST[1]


@contextmanager
def thread_policy(concurrency: int | None = None, *, filter: bool = False, pixels: int = 0):
    """Run the block with :func:`n_threads` torch threads, then restore the count.

    Unless ``PKN_THREADS`` is set, the block gets one thread when :func:`busy_elsewhere`
    says other processes hold CPUs, or when it is a classical filter (``filter``) over
    fewer than a megapixel (``pixels``)."""
    import torch

    before = torch.get_num_threads()
    n = n_threads(concurrency, current=before)
    if n > 1 and _env_int("PKN_THREADS", os.environ) is None:
        if (filter and pixels < (1 << 20)) or busy_elsewhere():
            n = 1
    if n == before:
        yield n
        return
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(before)
