"""Security basics: the embedded Ray runtime listens on loopback only, no dashboard;
``trust_remote_code`` is never enabled; hostile names cannot escape the cache.

(Cluster files: tests/test_cluster_files.py checks the dashboard is bound to localhost,
nothing is opened to the world beyond SSH, and no secrets; hostile source and tokenizer
names: tests/test_tinystories.py::test_hostile_names_are_contained.)
"""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
import sys
import textwrap

import pytest
from rel_helpers import REPO, subprocess_env

PROBE = textwrap.dedent(
    """
    import json, os
    from flops_fit.config import SweepConfig
    from flops_fit.ray.backend import _ensure_ray
    import ray, psutil
    assert _ensure_ray(SweepConfig()) == "private"  # started the embedded runtime

    @ray.remote
    def pid():
        return os.getpid()

    ray.get([pid.remote() for _ in range(2)])  # worker processes are up and listening too
    me = psutil.Process()
    found = []
    for p in [me] + me.children(recursive=True):
        try:
            found += [[p.name(), c.laddr.ip, c.laddr.port] for c in p.net_connections(kind="inet")
                      if c.status == psutil.CONN_LISTEN]
        except psutil.NoSuchProcess:
            pass
    node = ray._private.worker._global_node
    print(json.dumps({"listen": found, "node_ip": node.node_ip_address, "webui": node.webui_url}))
    ray.shutdown()
    """
)


def _loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip)
    mapped = getattr(addr, "ipv4_mapped", None)
    return (mapped or addr).is_loopback


@pytest.mark.slow
def test_embedded_ray_listens_on_loopback_only_without_dashboard(ray_tmp):
    done = subprocess.run([sys.executable, "-c", PROBE], env=subprocess_env(ray_tmp), capture_output=True,
                          text=True, timeout=180, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    info = json.loads(done.stdout.strip().splitlines()[-1])
    assert info["node_ip"] == "127.0.0.1"
    assert len(info["listen"]) >= 4  # GCS, raylet, driver, workers (the probe saw them)
    exposed = [s for s in info["listen"] if not _loopback(s[1])]
    assert not exposed, f"listening beyond loopback: {exposed}"
    assert not info["webui"]  # no dashboard web UI
    assert not any(port == 8265 for _, _, port in info["listen"])


def test_trust_remote_code_is_never_enabled():
    pattern = re.compile(r"trust_remote_code\s*=\s*(?!False)")
    offenders = [f"{p.relative_to(REPO)}:{i}" for p in (REPO / "flops_fit").rglob("*.py")
                 for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert not offenders, offenders
    # and the named-tokenizer path passes False explicitly (hub code would run otherwise)
    assert "trust_remote_code=False" in (REPO / "flops_fit" / "data" / "tokenizer.py").read_text()


def test_hostile_names_cannot_write_outside_the_cache_through_sweep(tmp_path, monkeypatch, smoke_cache):
    """sweep(source="../../x", tokenizer_name="../../x") refuses before any trial, and
    writes nothing outside storage_path/name and the cache directory."""
    from flops_fit.config import preset
    from flops_fit.errors import PlanError
    from flops_fit.ray import sweep

    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    before = {p for p in tmp_path.rglob("*")}
    cfg = preset("smoke").replace(storage_path=str(work / "runs"), cache_dir=str(smoke_cache), name="hostile")
    for change in (dict(source="../../x"), dict(tokenizer_name="../../x")):
        with pytest.raises((PlanError, OSError)) as err:
            sweep(cfg.replace(**change), progress=False)
        assert "\n" not in str(err.value)
    new = {p for p in tmp_path.rglob("*")} - before
    allowed = work / "runs" / "hostile"
    assert all(p == allowed or allowed in p.parents or p == work / "runs" for p in new), sorted(map(str, new))
    assert not (tmp_path / "x").exists()
