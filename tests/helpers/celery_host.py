"""The host name a Celery worker of the topology test reports for its task instances.

Both test workers run on one machine, so Airflow's default (the machine's FQDN) would not tell them
apart; each worker's environment names it, as each machine's own name would in a deployment."""

from __future__ import annotations

import os

ENV = "TOPOLOGY_WORKER_HOSTNAME"


def hostname() -> str:
    return os.environ[ENV]
