"""The no-op Django tasks bench_peers.py's ``automate-tasks`` and ``automate-atasks`` drain.

Imported only by the automate worker (Django is set up there): each records its start time, like every
other system's job function, and returns nothing.
"""

from peers_automate import record_start

from automate.tasks import task


@task
def noop(i: int) -> None:
    record_start(i)


@task
async def anoop(i: int) -> None:
    record_start(i)
