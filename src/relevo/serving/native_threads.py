"""One native thread per model call in a server's worker threads.

A tree ensemble or a BLAS routine runs its own thread pool (OpenMP, OpenBLAS, MKL) sized to the
machine's cores. In a server those cores are already taken by the event loop, the other worker
threads, the log writer and the neighbours; OpenMP's threads then wait for each other at every
parallel region, and a call that takes 20 ms alone takes seconds. Measured on a 2-core machine
with two busy processes beside it, HistGradientBoostingClassifier.predict_proba on 250 rows:
p50 67 ms and p99 2,265 ms with the default threads, p50 22 ms and p99 62 ms with one. A server
gets its parallelism from concurrent requests, micro-batches and workers (`--workers`), not
from inside one call.

`one_native_thread()` limits the calling thread's pools to one thread (threadpoolctl): the
thread that runs a server's model call, the event loop for a lone request and a worker thread
for a batch. Once per thread, and again after a model was loaded (a model may bring a library
of its own: a library loaded after the limit is not limited). OpenMP's limit is the calling
thread's own; batch scoring (`relevo predict`) scores in threads of its own and keeps every
core.
"""

from __future__ import annotations

import threading

from threadpoolctl import threadpool_limits

_local = threading.local()
#: bumped whenever a model is loaded: worker threads limit the new libraries on their next call
_generation = 0


def model_loaded() -> None:
    """A model was loaded: every worker thread limits its native pools again on its next call."""
    global _generation
    _generation += 1


def one_native_thread() -> None:
    """Limit this thread's native pools (OpenMP, BLAS) to one thread, unless already done
    since the last model was loaded (a thread-local check otherwise)."""
    if getattr(_local, "generation", -1) == _generation:
        return
    threadpool_limits(limits=1)
    _local.generation = _generation
