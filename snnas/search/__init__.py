"""The architecture search: objective, dedupe, funnel, leaderboard, report and export.

It runs on the study plumbing of :mod:`snnas.study` (storage, locks, workers, failures). Import
the submodules directly; this package imports nothing at import time.
"""
