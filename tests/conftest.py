"""Shared fixtures. One Ray instance for the whole session (Ray start costs seconds)."""

from __future__ import annotations

import os

# Set before anything imports Ray or the Hugging Face stack.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")

import pytest

#: Test modules that never start Ray: planning, fitting, the model, data, report and config
#: code. The suite runs on two pytest-xdist workers (pyproject.toml: ``-n 2``): these on one,
#: every other test, in file order, on the other (``pytest_xdist_make_scheduler`` below). The
#: session keeps its one Ray instance, and the fits' CPU minutes overlap the engine tests'
#: waiting on Ray and on the processes they start (the engine half used a third of two cores).
NO_RAY_MODULES = frozenset({
    "test_fit.py", "test_fit_reports_what_it_knows.py", "test_envelope.py", "test_gpt.py", "test_sample.py", "test_tinystories.py", "test_train.py",
    "test_undertrained.py", "test_bad_sources.py", "test_cluster_files.py", "test_plan.py", "test_report.py",
    "test_shareable.py", "test_structure.py", "test_cache_corruption.py", "test_schedule.py", "test_distributed.py",
})


def _group(nodeid: str) -> str:
    return "no_ray" if nodeid.split("::", 1)[0].rsplit("/", 1)[-1] in NO_RAY_MODULES else "ray"


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _group(item.nodeid) == "no_ray" and "ray_session" in getattr(item, "fixturenames", ()):
            raise pytest.UsageError(f"{item.nodeid} uses Ray: take its module out of NO_RAY_MODULES (conftest.py)")


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config, log):
    """Two work units, one per worker: the modules that never start Ray, and the rest in file
    order (xdist's ``loadgroup`` would do it from marks, but under pytest 9 it ignores them)."""
    from xdist.scheduler import LoadScopeScheduling

    class TwoGroups(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _group(nodeid)

    return TwoGroups(config, log)


@pytest.fixture(scope="session")
def ray_session():
    """A real local Ray runtime shared by every integration test."""
    import ray

    from flops_fit.ray.backend import start_private_ray

    if not ray.is_initialized():
        # loopback only, as sweep() starts it; one logical GPU (Ray counts it, nothing uses
        # CUDA) so fractional-GPU scheduling runs for real (tests/test_gpu_path.py)
        start_private_ray(num_cpus=2, num_gpus=1)
    yield ray
    ray.shutdown()


# --- TinyStories data fixtures (flops_fit/data/tinystories.py) ------------------------
# One small tokenizer and one prepared offline-sample cache for the whole session, so every
# test that needs tokens reuses them instead of training/tokenizing again. Use as
#   TinyStoriesDataset(source="sample", seq_len=..., num_tokens=..., **sample_data)
# (keys match the constructor). Train shards for the first ~200k tokens and the validation
# split's first ~40k tokens are already in the cache.
from types import MappingProxyType  # noqa: E402

SAMPLE_TEST_VOCAB = 512
SAMPLE_TEST_STORIES_PER_SHARD = 64


@pytest.fixture(scope="session")
def sample_tokenizer_json() -> str:
    """Canonical tokenizer.json of a 512-token byte-level BPE trained on 256 sample stories."""
    from flops_fit.data import sample
    from flops_fit.data.tokenizer import EOS_TOKEN, DataTokenizer, train_bpe

    bpe = train_bpe(sample.generate_stories("train", 0, 256), SAMPLE_TEST_VOCAB)
    return DataTokenizer.from_json(bpe.to_str(), EOS_TOKEN).json


@pytest.fixture(scope="session")
def sample_data(tmp_path_factory, sample_tokenizer_json) -> MappingProxyType:
    """Constructor kwargs for a prepared sample cache: cache_dir, tokenizer, stories_per_shard."""
    from flops_fit.data.tinystories import TinyStoriesDataset

    kwargs = {"cache_dir": tmp_path_factory.mktemp("flops_fit_cache"), "tokenizer": sample_tokenizer_json,
              "stories_per_shard": SAMPLE_TEST_STORIES_PER_SHARD}
    TinyStoriesDataset("train", 64, source="sample", num_tokens=200_000, **kwargs).prepare_data()
    TinyStoriesDataset("validation", 64, source="sample", num_tokens=40_000, **kwargs).prepare_data()
    return MappingProxyType(kwargs)  # read-only: shared by every test
