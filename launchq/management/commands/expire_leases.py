"""`python manage.py expire_leases`: send runs whose agent stopped heartbeating back to the queue.

The server does this lazily whenever an agent pops or heartbeats; run this from
cron when no agent may be around to trigger it (say, every agent died).
"""

from __future__ import annotations

from django.core.management.base import BaseCommand

from launchq.queueing import expire_leases, lease_seconds, max_attempts


class Command(BaseCommand):
    help = "Return runs whose lease ran out to pending (or fail them after the last attempt)."

    def handle(self, *args, **options) -> None:
        total = {"pending": 0, "failed": 0, "cancelled": 0}
        while True:  # a sweep handles a batch at a time; stop when a sweep finds nothing
            counts = expire_leases()
            for key, value in counts.items():
                total[key] += value
            if not any(counts.values()):
                break
        self.stdout.write(
            f"Leases of {lease_seconds()}s, {max_attempts()} attempts: {total['pending']} run(s) back to pending, "
            f"{total['failed']} failed, {total['cancelled']} cancelled."
        )
