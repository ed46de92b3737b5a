"""Synth-time cost of building the API's Kubernetes objects: plain typed inputs (our
`cdk_constructs.k8s` functions) against cdk8s + cdk8s-plus-34 (jsii).

Each variant runs in a fresh interpreter, so its import cost is counted as a `cdk synth` pays
it: once per process. Reported: import time, and time to build and render the same objects
(a Deployment-like workload with probes and security context, two Services, an HPA, a PDB)
`REPEAT` times. Run with `make bench-manifests` (installs cdk8s-plus-34 first).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = 5
REPEAT = 20

TYPED = """
import time
t0 = time.perf_counter()
from cdk_constructs.k8s import api
t1 = time.perf_counter()
for _ in range({repeat}):
    objs = [*api.services(), api.rollout(image="img", env={{"A": "1"}},
        canary=api.Canary(steps=(10, 30, 100), pause_minutes=5, max_5xx_ratio=0.01),
        load_balancer_dimension="app/x/1", migration_job="migrate-x", cpu_millicores=500,
        memory_mib=1024, system_pool="system"),
        api.autoscaler(min_replicas=2, max_replicas=6, target_cpu_percent=60),
        api.disruption_budget()]
    text = json.dumps(objs)
t2 = time.perf_counter()
print(json.dumps({{"import": t1 - t0, "build": (t2 - t1) / {repeat}}}))
"""

CDK8S = """
import time
t0 = time.perf_counter()
import cdk8s
import cdk8s_plus_34 as kplus
t1 = time.perf_counter()
for _ in range({repeat}):
    app = cdk8s.App()
    chart = cdk8s.Chart(app, "api", namespace="aipp")
    deployment = kplus.Deployment(chart, "api",
        security_context=kplus.PodSecurityContextProps(ensure_non_root=True, user=10001))
    container = deployment.add_container(image="img", port_number=8000,
        env_variables={{"A": kplus.EnvValue.from_value("1")}},
        security_context=kplus.ContainerSecurityContextProps(
            ensure_non_root=True, read_only_root_filesystem=True,
            allow_privilege_escalation=False),
        startup=kplus.Probe.from_http_get("/healthz"),
        readiness=kplus.Probe.from_http_get("/readyz"),
        liveness=kplus.Probe.from_http_get("/healthz"))
    for name in ("api-stable", "api-canary"):
        kplus.Service(chart, name, selector=deployment, ports=[kplus.ServicePort(port=80,
            target_port=8000)])
    kplus.HorizontalPodAutoscaler(chart, "hpa", target=deployment, min_replicas=2,
        max_replicas=6, metrics=[kplus.Metric.resource_cpu(
            kplus.MetricTarget.average_utilization(60))])
    text = json.dumps(chart.to_json())
t2 = time.perf_counter()
print(json.dumps({{"import": t1 - t0, "build": (t2 - t1) / {repeat}}}))
"""


def run(code: str) -> dict[str, float]:
    out = subprocess.run(  # noqa: S603 - our own fixed snippets, this interpreter
        [sys.executable, "-c", "import json\n" + code.format(repeat=REPEAT)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def main() -> int:
    cpu = platform.processor() or platform.machine()
    print(f"machine: {cpu}, {os.cpu_count()} cores, python {platform.python_version()}")
    print(f"{RUNS} fresh interpreters per variant, build = mean of {REPEAT} builds per run")
    for name, code in (("typed inputs -> dicts", TYPED), ("cdk8s-plus-34", CDK8S)):
        results = [run(code) for _ in range(RUNS)]
        imp = statistics.median(r["import"] for r in results)
        build = statistics.median(r["build"] for r in results)
        print(f"{name:24} import {imp * 1000:8.1f} ms   build+render {build * 1000:8.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
