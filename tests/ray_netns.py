"""Run cgbench builds on a real two-node Ray cluster inside a private network namespace.

Used by ``tests/test_ray_engine.py`` and ``perf/bench_ray_overhead.py``; run it only through
:func:`run_in_netns`, which starts it under ``unshare --net --pid --fork --mount-proc``: the
namespace has nothing but ``lo``, so every Ray process (head node, second worker node, driver)
can only bind and talk to 127.0.0.1, and every process started inside dies with the namespace.

``python tests/ray_netns.py SPEC.json`` (inside the namespace) brings ``lo`` up, starts a head
node and ``nodes - 1`` worker nodes (``num_cpus=1`` each, no dashboard, no usage stats), runs the
scenarios of SPEC and writes their results to ``SPEC["out"]`` (JSON), then stops the cluster.
Scenarios: ``build`` (a build through :class:`RayEngine`), ``kill_worker`` (the same while
SIGKILLing worker processes running chunks, one at a time), ``kill_driver`` (a driver SIGKILLed
mid-build, then a rerun), ``proxies`` (zero-cost proxies on a built store), ``reproduce`` (the
smoke reproduction's training jobs and cells), ``unit_error`` (a unit that raises), ``sockets``
(``ss -ltn`` of the namespace).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PORT = 6379
UNSHARE = ["unshare", "--net", "--pid", "--fork", "--mount-proc"]


def netns_available() -> str | None:
    """None when ``unshare`` can make a private network+pid namespace here, else the reason."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "needs `unshare` (util-linux) and `ip` (iproute2)"
    try:
        proc = subprocess.run(
            [*UNSHARE, "sh", "-c", "ip link set lo up && ip -o addr"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"`unshare --net` failed: {err}"
    if proc.returncode != 0:
        why = proc.stderr.strip()
        return f"`unshare --net --pid` is not permitted here (needs root/CAP_SYS_ADMIN): {why}"
    return None


def run_in_netns(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run the scenarios of ``spec`` on a fresh netns-private Ray cluster; their results."""
    out = Path(spec["out"])
    spec_path = out.with_suffix(".spec.json")
    spec_path.write_text(json.dumps(spec))
    proc = subprocess.run(
        [*UNSHARE, sys.executable, str(Path(__file__).resolve()), str(spec_path)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(spec),
    )
    if proc.returncode != 0 or not out.is_file():
        tail = f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
        raise RuntimeError(f"ray_netns.py failed (rc {proc.returncode}):\n{tail}")
    return json.loads(out.read_text())


def _env(spec: dict[str, Any]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        RAY_USAGE_STATS_ENABLED="0",
        RAY_DISABLE_DOCKER_CPU_WARNING="1",
        SOURCE_DATE_EPOCH=str(spec.get("source_date_epoch", 1_700_000_000)),
        OMP_NUM_THREADS="1",
    )
    env.pop("RAY_ADDRESS", None)
    return env


# ------------------------------------------------------------------ inside the namespace
def _ray(*args: str) -> None:
    ray_cli = str(Path(sys.executable).with_name("ray"))
    subprocess.run([ray_cli, *args], check=True, capture_output=True, text=True, timeout=180)


def _start_cluster(nodes: int, temp_dir: str) -> None:
    common = ["--num-cpus=1", "--node-ip-address=127.0.0.1", "--object-store-memory=100000000"]
    _ray(
        "start", "--head", f"--port={PORT}", "--include-dashboard=false", "--disable-usage-stats",
        f"--temp-dir={temp_dir}", *common,
    )  # fmt: skip
    for _ in range(nodes - 1):
        _ray("start", f"--address=127.0.0.1:{PORT}", *common)


def _build(spec: dict[str, Any], root: str, engine=None) -> dict[str, Any]:
    from cgbench.benchmarks.build import build_family
    from cgbench.benchmarks.engine_ray import RayEngine

    rows: list[int] = []
    started = time.perf_counter()
    with engine or RayEngine(address=f"127.0.0.1:{PORT}") as eng:
        nodes = len([n for n in __import__("ray").nodes() if n["Alive"]])
        sockets: list[str] = []

        def progress(n: int) -> None:
            rows.append(n)
            if len(rows) == 1:  # the driver and the workers of both nodes are up: what listens?
                sockets.extend(_sockets())

        result = build_family(
            "nb201", root=root, mirror=spec["mirror"], offline=True, limit=spec["limit"],
            chunk_size=spec["chunk_size"], engine=eng, on_progress=progress,
        )  # fmt: skip
    return {
        "rows": result.rows,
        "resumed": result.resumed_chunks,
        "progress": rows,
        "seconds": time.perf_counter() - started,
        "nodes": nodes,
        "path": str(result.path),
        "sockets": sockets,
    }


def _chunk_workers() -> list[Any]:
    import psutil

    found = []
    for p in psutil.process_iter(["name", "cmdline"]):
        title = " ".join(p.info["cmdline"] or []) or (p.info["name"] or "")
        if title.startswith("ray::_call"):
            found.append(p)
    return found


def _shards(root: str) -> int:
    return len(list(Path(root, ".builds", "nb201").glob("*.partial/part-*.parquet")))


def _killer(root: str, kills: list[int], stop: threading.Event, after: int, times: int) -> None:
    """SIGKILL a worker process running a chunk once ``after`` (+1 per kill) shards exist."""
    while not stop.is_set() and len(kills) < times:
        if _shards(root) >= after + len(kills):
            for p in _chunk_workers()[:1]:  # one per round, a shard apart
                try:
                    p.send_signal(signal.SIGKILL)
                    kills.append(p.pid)
                except Exception:  # noqa: BLE001 - it may have just finished
                    pass
        time.sleep(0.2)


def _kill_worker(spec: dict[str, Any], root: str) -> dict[str, Any]:
    kills: list[int] = []
    stop = threading.Event()
    watcher = threading.Thread(target=_killer, args=(root, kills, stop, 1, spec.get("kills", 2)), daemon=True)
    watcher.start()
    try:
        out = _build(spec, root)
    finally:
        stop.set()
        watcher.join()
    out["killed"] = kills
    return out


def _kill_driver(spec: dict[str, Any], root: str) -> dict[str, Any]:
    here = str(Path(__file__).parent)
    code = (
        f"import json,sys; sys.path.insert(0, {here!r}); import ray_netns as r; "
        "r._build(json.loads(sys.argv[1]), sys.argv[2])"
    )
    driver = subprocess.Popen([sys.executable, "-c", code, json.dumps(spec), root])
    deadline = time.time() + 600
    while _shards(root) < 2 and driver.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    crashed = driver.poll() is None
    driver.kill()
    driver.wait()
    published_after_crash = Path(root, "nb201").exists()
    time.sleep(2)  # let Ray reap the dead driver's tasks
    shards_after_crash = _shards(root)
    out = _build(spec, root)
    out.update(crashed=crashed, published_after_crash=published_after_crash)
    out["shards_after_crash"] = shards_after_crash
    return out


def _proxies(spec: dict[str, Any], root: str) -> dict[str, Any]:
    """Zero-cost proxies through Ray on a copy (at ``root``) of the store built by the ``build``
    scenario; their values by arch."""
    from cgbench.benchmarks.engine_ray import RayEngine
    from cgbench.benchmarks.store import open_dataset
    from cgbench.zerocost.compute import compute_family

    shutil.copytree(spec["proxy_source"], root, symlinks=True)
    with RayEngine(address=f"127.0.0.1:{PORT}") as eng:
        run = compute_family(
            "nb201", spec["proxies"], root=root, limit=spec["proxy_limit"], chunk_size=4, engine=eng
        )
    columns = [f"zc_cgb_{p}" for p in spec["proxies"].split(",")]
    table = open_dataset("nb201", root).table(["arch_id", *columns])
    return {"computed": run.computed, "values": table.slice(0, spec["proxy_limit"]).to_pydict()}


REPRODUCE_ARGS = dict(tables=["T5"], profile="smoke", source="nb301", targets=["nb201"], predictors=["kgnn"])


def _reproduce(spec: dict[str, Any], out: str) -> dict[str, Any]:
    """``cgbench reproduce`` (smoke profile) with its training jobs and cells as Ray tasks."""
    from cgbench.predictors.reproduce import reproduce

    result = reproduce(
        **REPRODUCE_ARGS, root=spec["reproduce_root"], out=out, plots=False, echo=lambda s: None,
        engine="ray", ray_address=f"127.0.0.1:{PORT}",
    )  # fmt: skip
    return {"rows": result["rows"], "training": result["meta"]["training"]}


def _raise_on_two(i: int) -> int:
    from cgbench.benchmarks.build import BuildError

    if i == 2:
        raise BuildError(f"nb201 arch 'unit-{i}': ValueError: bad cell")
    return i


def _unit_error() -> dict[str, Any]:
    """What a driver sees when a unit raises: the type and message of the unit's own error."""
    from cgbench.benchmarks.engine_ray import RayEngine

    try:
        with RayEngine(address=f"127.0.0.1:{PORT}") as eng:
            list(eng.map_unordered(_raise_on_two, ((i, (i,)) for i in range(4))))
    except Exception as err:  # noqa: BLE001 - reported to the test
        return {"type": f"{type(err).__module__}.{type(err).__name__}", "message": str(err)}
    return {"type": None, "message": ""}


def _sockets() -> list[str]:
    proc = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True)
    return [line.split()[3] for line in proc.stdout.splitlines() if line.strip()]


def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    results: dict[str, Any] = {}
    try:
        t0 = time.perf_counter()
        _start_cluster(spec.get("nodes", 2), temp_dir)
        results["cluster_start_s"] = time.perf_counter() - t0
        for name, root in spec["scenarios"]:
            if name == "build":
                results[name] = _build(spec, root)
                results.setdefault("builds", []).append(results[name])
            elif name == "kill_worker":
                results[name] = _kill_worker(spec, root)
            elif name == "kill_driver":
                results[name] = _kill_driver(spec, root)
            elif name == "proxies":
                results[name] = _proxies(spec, root)
            elif name == "reproduce":
                results[name] = _reproduce(spec, root)
            elif name == "unit_error":
                results[name] = _unit_error()
            elif name == "sockets":
                results[name] = _sockets()
            else:
                raise ValueError(f"unknown scenario {name!r}")
    finally:
        subprocess.run([str(Path(sys.executable).with_name("ray")), "stop", "--force"], capture_output=True)
        shutil.rmtree(temp_dir, ignore_errors=True)
    Path(spec["out"]).write_text(json.dumps(results))


if __name__ == "__main__":
    main(sys.argv[1])
