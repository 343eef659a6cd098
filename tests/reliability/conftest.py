"""Helpers for the reliability group: real processes, real Ray, real training, faults injected.

Every test here proves one row of the README's "What survives what" table. Subprocess
drivers get their own short ``RAY_TMPDIR``: ``ray.init(address="auto")`` (what ``sweep()``
tries first) must not find another engineer's or another test's cluster, and Ray's Unix
sockets live under that directory (108-byte path limit).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

# Fault drills checkpoint every fraction of a second on purpose; Tune's warning about the
# resulting experiment-state syncs would bury the output (in-process and subprocess sweeps).
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


@pytest.fixture
def ray_tmp():
    d = Path(tempfile.mkdtemp(prefix="ffr", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def smoke_cache(tmp_path_factory) -> Path:
    """A token cache holding the smoke preset's tokenizer, trained once for the group."""
    from flops_fit.config import preset
    from flops_fit.workloads.gpt import ReferenceGPT

    cache = tmp_path_factory.mktemp("rel_cache")
    cfg = preset("smoke").replace(cache_dir=str(cache))
    ReferenceGPT.on(cfg.data).prepare(cfg.plan)
    return cache
