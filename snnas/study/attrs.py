"""The trial attributes the plumbing itself reads and writes, named once (Optuna's own are named
in :mod:`snnas.study.adapter`)."""
from __future__ import annotations

REASON_ATTR = "fail_reason"  # user attr: why a trial failed or was pruned (one line, no secrets)
DETAIL_ATTR = "fail_detail"  # user attr: the longer message behind fail_reason, when there is one
WORKER_ATTR = "snnas_worker"  # system attr: the process running a trial (host, pid, its start time)
