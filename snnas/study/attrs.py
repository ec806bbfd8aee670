"""The trial attributes the plumbing itself reads and writes, named once.

Optuna's own system attributes for retries are named here too, so that code reading a retry chain
does not spell Optuna's strings again.
"""
from __future__ import annotations

REASON_ATTR = "fail_reason"  # user attr: why a trial failed or was pruned (one line, no secrets)
DETAIL_ATTR = "fail_detail"  # user attr: the longer message behind fail_reason, when there is one
WORKER_ATTR = "snnas_worker"  # system attr: the process running a trial (host, pid, its start time)

# Written by optuna.storages.RetryHeartbeatStaleTrialCallback on the re-queued trial.
FAILED_TRIAL_SYSTEM_ATTR = "failed_trial"  # the first trial of the retry chain
RETRY_HISTORY_SYSTEM_ATTR = "retry_history"  # every earlier trial of the chain, oldest first
