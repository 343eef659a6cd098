"""Static checks of the Ray cluster-launcher configs in cluster/ (nothing is launched, Ray is not started).

What a broken config would otherwise only reveal at `ray up` time, minutes and dollars later:
YAML that does not parse, keys the launcher needs, Ray's own JSON schema (ray/autoscaler/ray-schema.json)
and config preparation, plus our own rules: dashboard bound to 127.0.0.1, no secrets, nothing opened
to the world but SSH, shared results storage, every key commented, every placeholder documented.
"""

from __future__ import annotations

import copy
import importlib.metadata
import importlib.util
import json
import re
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML is needed to read the cluster configs")

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "cluster"
README = CLUSTER / "README.md"
PROVIDER_OF = {"aws": "aws", "gcp": "gcp", "onprem": "local"}
NAMES = sorted(PROVIDER_OF)
SHARED = "/mnt/shared/flops_fit"


def _path(name: str) -> Path:
    return CLUSTER / f"{name}.yaml"


def _load(name: str) -> dict:
    return yaml.safe_load(_path(name).read_text())


def _strings(node):
    """Every string value (and mapping key) anywhere in a parsed YAML document."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for k, v in node.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from _strings(v)


def _node_types(cfg: dict) -> dict:
    return cfg.get("available_node_types") or {}


def _gpu_types(cfg: dict) -> dict:
    return {k: v for k, v in _node_types(cfg).items() if (v.get("resources") or {}).get("GPU", 0) >= 1}


# ---------------------------------------------------------------- comment checker (raw text)

_KEY = re.compile(r"""^(?P<indent>\s*)(?:-\s+)?(?P<key>[A-Za-z_][\w.\-]*|"[^"]+"|'[^']+')\s*:(?:\s|$)""")
_BLOCK_SCALAR = re.compile(r"(?:^-|:)\s*[|>][+-]?\d*\s*(?:#.*)?$")


def uncommented_keys(text: str, top_level_only: bool = False) -> list[str]:
    """Keys with neither a `#` comment on their own line nor a comment line directly above.

    Lines inside block scalars (`key: |` / `key: >-`) are skipped; list items that are plain
    strings (commands) are not keys and need no comment.
    """
    missing = []
    lines = text.splitlines()
    block_indent = None
    for i, line in enumerate(lines):
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if block_indent is not None:
            if not stripped or indent > block_indent:
                continue
            block_indent = None
        if not stripped or stripped.startswith("#"):
            continue
        if _BLOCK_SCALAR.search(stripped):
            block_indent = indent
        m = _KEY.match(line)
        if not m:
            continue
        if top_level_only and m.group("indent"):
            continue
        same_line = " #" in line
        above = lines[i - 1].strip().startswith("#") if i > 0 else False
        if not (same_line or above):
            missing.append(f"line {i + 1}: {m.group('key')}")
    return missing


def test_comment_checker_catches_a_bare_key():
    bad = "# a comment\ncluster_name: x\nmax_workers: 2\nprovider:\n    # fine\n    type: aws\n    region: us-west-2\n"
    assert uncommented_keys(bad) == ["line 3: max_workers", "line 4: provider", "line 7: region"]
    assert uncommented_keys(bad, top_level_only=True) == ["line 3: max_workers", "line 4: provider"]
    good = "x: 1  # why\n# why\ny:\n  - a plain command: not a key because of the space\n  - |\n    z: 3\n"
    assert uncommented_keys(good) == []


@pytest.mark.parametrize("name", NAMES)
def test_every_top_level_key_is_commented(name):
    assert uncommented_keys(_path(name).read_text(), top_level_only=True) == []


@pytest.mark.parametrize("name", NAMES)
def test_every_nested_key_is_commented_too(name):
    assert uncommented_keys(_path(name).read_text()) == []


# ---------------------------------------------------------------- structure the launcher needs


@pytest.mark.parametrize("name", NAMES)
def test_parses_and_has_launcher_keys(name):
    cfg = _load(name)
    assert isinstance(cfg, dict)
    assert isinstance(cfg.get("cluster_name"), str) and cfg["cluster_name"]
    assert cfg["provider"]["type"] == PROVIDER_OF[name]
    assert isinstance(cfg["auth"]["ssh_user"], str) and cfg["auth"]["ssh_user"]
    assert isinstance(cfg["max_workers"], int) and cfg["max_workers"] >= 1
    assert cfg["upscaling_speed"] > 0 and cfg["idle_timeout_minutes"] > 0
    for key in ("setup_commands", "head_start_ray_commands", "worker_start_ray_commands"):
        cmds = cfg[key]
        assert isinstance(cmds, list) and cmds and all(isinstance(c, str) for c in cmds), key


@pytest.mark.parametrize("name", ["aws", "gcp"])
def test_cloud_node_types(name):
    cfg = _load(name)
    types = _node_types(cfg)
    assert cfg["head_node_type"] in types
    for tname, t in types.items():
        assert isinstance(t["resources"], dict), tname
        assert isinstance(t["node_config"], dict) and t["node_config"], tname
    head = types[cfg["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0, "the head is CPU-only; GPU trials go to workers"
    gpus = _gpu_types(cfg)
    assert gpus, "needs a GPU worker type advertising resources GPU >= 1"
    for t in gpus.values():
        assert t.get("min_workers", 0) == 0 and t.get("max_workers", 0) >= 1
        assert t["max_workers"] <= cfg["max_workers"]


def test_aws_specifics():
    cfg = _load("aws")
    assert cfg["provider"]["region"]
    for tname, t in _node_types(cfg).items():
        assert t["node_config"]["InstanceType"], tname
        assert t["node_config"]["ImageId"].startswith("ami-"), tname
    assert all(t["node_config"]["InstanceType"].startswith(("g", "p")) for t in _gpu_types(cfg).values())


def test_gcp_specifics():
    cfg = _load("gcp")
    prov = cfg["provider"]
    assert prov["region"] and prov["project_id"]
    assert prov["availability_zone"].startswith(prov["region"] + "-")
    for tname, t in _node_types(cfg).items():
        nc = t["node_config"]
        assert nc["machineType"], tname
        assert any(d.get("boot") for d in nc["disks"]), tname
    for tname, t in _gpu_types(cfg).items():
        nc = t["node_config"]
        accels = nc["guestAccelerators"]
        assert sum(a["acceleratorCount"] for a in accels) == t["resources"]["GPU"], tname
        # GPU VMs cannot live-migrate; GCE refuses them without TERMINATE.
        assert nc["scheduling"]["onHostMaintenance"] == "TERMINATE", tname


def test_onprem_specifics():
    cfg = _load("onprem")
    prov = cfg["provider"]
    assert isinstance(prov["head_ip"], str) and prov["head_ip"]
    assert isinstance(prov["worker_ips"], list) and prov["worker_ips"]
    assert cfg["max_workers"] == len(prov["worker_ips"])
    # Ray 2.60's local provider aborts on these and builds its own single node type.
    assert "available_node_types" not in cfg and "head_node_type" not in cfg


# ---------------------------------------------------------------- Ray's own schema and preparation


def _ray_schema_path() -> Path | None:
    spec = importlib.util.find_spec("ray")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "autoscaler" / "ray-schema.json"
    return path if path.exists() else None


@pytest.mark.parametrize("name", NAMES)
def test_matches_rays_json_schema(name):
    path = _ray_schema_path()
    if path is None:
        pytest.skip("Ray (with ray/autoscaler/ray-schema.json) is not installed; schema check skipped")
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is not installed; schema check skipped")
    jsonschema.validate(_load(name), json.loads(path.read_text()))


@pytest.mark.parametrize("name", NAMES)
def test_passes_rays_config_preparation(name):
    """The offline part of `ray up`: merge with the provider defaults, then validate.

    Uses Ray's private helpers (the same calls `ray up` makes before touching a cloud API).
    """
    try:
        from ray.autoscaler._private.util import prepare_config, validate_config
    except ImportError as e:  # not installed, or the private module moved in a newer Ray
        pytest.skip(f"Ray's config helpers are not importable ({e}); preparation check skipped")
    prepared = prepare_config(copy.deepcopy(_load(name)))
    validate_config(prepared)
    assert prepared["head_node_type"] in prepared["available_node_types"]


@pytest.mark.parametrize("name", NAMES)
def test_ray_pin_matches_installed_ray(name):
    pins = set(re.findall(r"ray\[[^\]]*\]==([\w.]+)", " ".join(_load(name)["setup_commands"])))
    assert len(pins) == 1, f"expected exactly one pinned ray version in setup_commands, got {pins}"
    try:
        installed = importlib.metadata.version("ray")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("Ray is not installed here; cannot compare the cluster's Ray pin")
    assert pins == {installed}, "the cluster must run the Ray version the launcher runs; update the pin"


# ---------------------------------------------------------------- our rules


@pytest.mark.parametrize("name", NAMES)
def test_dashboard_bound_to_localhost(name):
    cfg = _load(name)
    head = " && ".join(cfg["head_start_ray_commands"])
    assert cfg["head_start_ray_commands"][0].strip() == "ray stop"
    starts = [c for c in cfg["head_start_ray_commands"] if "ray start" in c]
    assert len(starts) == 1 and "--head" in starts[0]
    assert re.search(r"--dashboard-host[= ]127\.0\.0\.1(\s|$)", starts[0]), starts[0]
    assert "--port=6379" in head and "--autoscaling-config=~/ray_bootstrap_config.yaml" in head
    worker = " && ".join(cfg["worker_start_ray_commands"])
    assert cfg["worker_start_ray_commands"][0].strip() == "ray stop"
    assert "ray start --address=$RAY_HEAD_IP:6379" in worker
    assert "--dashboard-host" not in worker


@pytest.mark.parametrize("name", NAMES)
def test_nothing_opened_to_the_world(name):
    cfg = _load(name)
    for s in _strings(cfg):
        assert "0.0.0.0" not in s and "::/0" not in s, f"world-open address in active config: {s!r}"
    sg = cfg["provider"].get("security_group") or {}
    for rule in sg.get("IpPermissions", []):
        # Ray's group already allows 22 + intra-cluster; an extra rule may only be SSH from a narrower CIDR.
        assert rule.get("FromPort") == 22 and rule.get("ToPort") == 22, rule


_SECRET_PATTERNS = [
    r"aws_secret_access_key",
    r"aws_access_key_id",
    r"aws_session_token",
    r"\bAKIA[0-9A-Z]{16}\b",  # an AWS access key id
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
    r"private_key_id",
    r"\"type\"\s*:\s*\"service_account\"",
    r"gcp_credentials",
    r"client_secret",
    r"(password|passwd|api[_-]?key|auth_token)\s*[:=]\s*\S",
    r"ghp_[A-Za-z0-9]{20,}",
    r"hf_[A-Za-z0-9]{30,}",
]


@pytest.mark.parametrize("name", NAMES)
def test_no_secrets(name):
    text = _path(name).read_text()
    for pat in _SECRET_PATTERNS:
        assert not re.search(pat, text, flags=re.IGNORECASE), f"secret-looking text matches {pat!r}"
    auth = _load(name)["auth"]
    # A key path is allowed only as a commented placeholder; let Ray generate keys on the clouds.
    assert set(auth) == {"ssh_user"}, auth


def test_secret_scan_can_fail():
    leaked = "auth:\n  ssh_user: ubuntu\n# -----BEGIN OPENSSH PRIVATE KEY-----\naws_secret_access_key: abc\n"
    hits = [p for p in _SECRET_PATTERNS if re.search(p, leaked, flags=re.IGNORECASE)]
    assert len(hits) == 2


@pytest.mark.parametrize("name", NAMES)
def test_repo_synced_and_installed(name):
    cfg = _load(name)
    assert cfg["file_mounts"] == {"~/flops_fit": "."}
    assert ".gitignore" in cfg.get("rsync_filter", []), "keep .venv and runs/ out of the sync"
    setup = cfg["setup_commands"]
    assert any(re.search(r"pip install .*-e ~/flops_fit(\s|$)", c) for c in setup)
    # ray start runs in whatever environment ~/.bashrc activates.
    assert any("source ~/flops_fit_env/bin/activate" in c and "~/.bashrc" in c for c in setup)


@pytest.mark.parametrize("name", NAMES)
def test_shared_results_storage(name):
    setup = " ; ".join(_load(name)["setup_commands"])
    assert re.search(r"mount -t nfs4? .* /mnt/shared\)", setup), "mount shared storage at /mnt/shared"
    assert "mountpoint -q /mnt/shared ||" in setup, "mounting must be idempotent (ray up re-runs setup)"
    assert f"export FLOPS_FIT_STORAGE={SHARED}" in setup


def test_efs_in_the_clusters_region():
    cfg = _load("aws")
    hosts = re.findall(r"fs-[\w]+\.efs\.([a-z0-9-]+)\.amazonaws\.com", " ".join(cfg["setup_commands"]))
    assert hosts == [cfg["provider"]["region"]]


# ---------------------------------------------------------------- README


def _placeholders(text: str) -> set[str]:
    return set(re.findall(r"(?:\b[a-z]+-)?REPLACE_ME\w*", text))


@pytest.mark.parametrize("name", NAMES)
def test_every_placeholder_is_documented(name):
    found = _placeholders(_path(name).read_text())
    assert found, "placeholders are spelled REPLACE_ME..., so users can grep for them"
    readme = README.read_text()
    assert not [p for p in sorted(found) if p not in readme]


def test_readme_has_the_commands():
    readme = README.read_text()
    for cmd in (
        "ray up cluster/aws.yaml",
        "ray submit cluster/aws.yaml examples/tinystories_sweep.py -- --address auto --preset tinystories-gpu "
        "--storage-path /mnt/shared/flops_fit --name run1",
        "ray dashboard cluster/aws.yaml",
        "ray job submit --address http://127.0.0.1:8265 --working-dir . -- python examples/tinystories_sweep.py",
        "ray attach cluster/aws.yaml",
        "ray down cluster/aws.yaml",
        "flops-fit sweep --preset tinystories-gpu --gpus-per-trial auto",
    ):
        assert cmd in readme, cmd
    for topic in ("127.0.0.1", "s3://", "gs://", "EFS", "Filestore", "NFS", "node-local"):
        assert topic in readme, topic


#: The GPUs the shipped files request: (compute capability, memory GB). sm80+ for bf16 and
#: flash attention (a T4 is sm75).
_GPU_KINDS = {"g5.": ((8, 6), 24), "nvidia-l4": ((8, 9), 24)}


def _requested_gpu(cfg: dict) -> list[str]:
    out = []
    for t in _gpu_types(cfg).values():
        nc = t["node_config"]
        out += [a["acceleratorType"] for a in nc.get("guestAccelerators", [])] or [nc.get("InstanceType", "")]
    return out


@pytest.mark.parametrize("name", ["aws", "gcp"])
def test_cluster_gpus_run_the_gpu_preset_in_bf16_and_fit_its_largest_trial(name):
    from flops_fit.config import preset
    from flops_fit.engine.sweep import default_workload
    from flops_fit.models import gpt_spec as memory
    from flops_fit.models.gpt_spec import gpt_shape
    from flops_fit.trainer.accelerator import compute_dtype

    cfg = preset("tinystories-gpu")
    big = max(default_workload(cfg).plan(cfg.plan), key=lambda s: s.n)
    shape = gpt_shape(big.model)
    for gpu in _requested_gpu(_load(name)):
        kind = next(k for k in _GPU_KINDS if gpu.startswith(k))
        capability, gb = _GPU_KINDS[kind]
        assert str(compute_dtype(capability)) == "torch.bfloat16", gpu
        micro = memory.micro_batch_for(shape, big.batch_size, big.seq_len, gb * 10**9)
        assert memory.training_bytes(shape, micro, big.seq_len) <= gb * 10**9, gpu


def test_the_multi_gpu_commands_plan_what_the_readme_says():
    """The two `ray submit` lines of "Trials that span GPUs" parse as flops-fit flags and plan
    four-worker trials: every trial `8c/1g x4`, and at 1e19-1e20 on 24 GB GPUs the largest
    model `8c/1g x4 sharded`."""
    import shlex

    from flops_fit.cli import build_parser, config_from_args
    from flops_fit.planning.grid import plan

    text = README.read_text().replace("\\\n", " ")
    lines = [line.split(" -- ", 1)[1] for line in text.splitlines()
             if line.startswith("ray submit cluster/aws.yaml") and ("--name ddp4" in line or "--name big" in line)]
    assert len(lines) == 2, lines
    described = []
    for line in lines:
        argv = shlex.split(line)
        del argv[argv.index("--address"):argv.index("--address") + 2]  # the script's, not a plan flag
        cfg = config_from_args(build_parser().parse_args(["plan", *argv, "--no-adapt"]))
        rule = cfg.resource_rule()
        described.append({rule.describe(s) for s in plan(cfg.plan)})
    assert described[0] == {"8c/1g x4"}
    assert "8c/1g x4 sharded" in described[1] and "8c/1g" in described[1]
