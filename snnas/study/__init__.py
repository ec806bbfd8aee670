"""Study plumbing: where a study lives, its locks, its workers, their heartbeats and failures.

Nothing here knows about spiking networks: no torch, no genotypes. Any objective with Optuna's
signature runs on it, which is how ``snnas.search.synthetic`` checks a storage without a GPU.
Import the submodules directly; this package imports nothing at import time.
"""
