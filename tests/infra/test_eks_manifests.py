"""Every Kubernetes object the EKS stack applies, validated, and what the workloads must do.

Core kinds are validated with kubernetes-validate, strict, against Kubernetes 1.34's schemas;
KEDA and Argo Rollouts objects against their CRD schemas (tests/infra/crds/), closed wherever
the CRD does not preserve unknown fields. The assertions run over phases 2-3 x staging/prod.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from cdk_constructs.k8s import api as api_k8s
from phases import ConfigError, load_config
from tests.infra.conftest import Assembly

CRDS = Path(__file__).parent / "crds"
CUSTOM = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh_scaledobjects.yaml",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "keda.sh_triggerauthentications.yaml",
    ("argoproj.io/v1alpha1", "Rollout"): "rollout-crd.yaml",
    ("argoproj.io/v1alpha1", "AnalysisTemplate"): "analysis-template-crd.yaml",
}
# The aws-sqs-queue scaler's metadata keys (KEDA 2.20 docs, scalers/aws-sqs.md).
SQS_TRIGGER_KEYS = {
    "queueURL",
    "queueURLFromEnv",
    "queueLength",
    "activationQueueLength",
    "awsRegion",
    "awsEndpoint",
    "scaleOnInFlight",
    "scaleOnDelayed",
}


def render(value: Any) -> str:  # noqa: PLR0911 - one return per intrinsic
    """A CloudFormation value as text, tokens spelled `<ref:X>`, `<out:X>`, `<att:X.Y>`."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(render(p) for p in parts)
    if isinstance(value, dict) and "Ref" in value:
        return f"<ref:{value['Ref']}>"
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return f"<att:{'.'.join(value['Fn::GetAtt'])}>"
    if isinstance(value, dict) and "Fn::GetStackOutput" in value:
        return f"<out:{value['Fn::GetStackOutput']['OutputName']}>"
    if isinstance(value, dict) and "Fn::Sub" in value:
        return str(value["Fn::Sub"])
    if isinstance(value, dict) and "Fn::Select" in value:
        index, source = value["Fn::Select"]
        return f"<select:{index}:{render(source)}>"
    if isinstance(value, dict) and "Fn::Split" in value:
        separator, source = value["Fn::Split"]
        return f"<split:{separator}:{render(source)}>"
    return f"<token:{json.dumps(value, sort_keys=True)}>".replace('"', "'")


def applied(assembly: Assembly) -> list[dict[str, Any]]:
    """Every object of every KubernetesManifest (the add-ons' namespaces and service accounts
    included), tokens rendered as text."""
    objects = []
    for resource in assembly.resources("Custom::AWSCDK-EKS-KubernetesResource").values():
        objects += json.loads(render(resource["Properties"]["Manifest"]))
    return objects


def of_kind(assembly: Assembly, kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in applied(assembly) if o["kind"] == kind}


def _closed(schema: Any) -> Any:
    """The schema with every object that lists properties and does not preserve unknown fields
    closed to others."""
    if isinstance(schema, dict):
        schema = {k: _closed(v) for k, v in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_closed(v) for v in schema]
    return schema


@cache
def crd_schema(file: str, version: str) -> dict[str, Any]:
    crd = yaml.safe_load((CRDS / file).read_text())
    (found,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    schema: dict[str, Any] = _closed(copy.deepcopy(found["schema"]["openAPIV3Schema"]))
    # metadata is Kubernetes' ObjectMeta, validated by the API server, not by the CRD.
    schema["properties"]["metadata"] = {"type": "object"}
    return schema


def validate(obj: dict[str, Any], kubernetes_version: str) -> None:
    key = (obj["apiVersion"], obj["kind"])
    if key in CUSTOM:
        jsonschema.validate(obj, crd_schema(CUSTOM[key], obj["apiVersion"].split("/")[1]))
    else:
        kubernetes_validate.validate(obj, f"{kubernetes_version}.0", strict=True)


def test_every_applied_object_is_valid_for_its_schema(eks_phase: Assembly) -> None:
    version = eks_phase.config.eks.kubernetes_version  # type: ignore[union-attr]
    objects = applied(eks_phase)
    kinds = {o["kind"] for o in objects}
    assert {
        "Namespace",
        "ServiceAccount",
        "Job",
        "Service",
        "Ingress",
        "Rollout",
        "AnalysisTemplate",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ScaledObject",
        "TriggerAuthentication",
    } <= kinds
    for obj in objects:
        validate(obj, version)


def test_the_validation_rejects_a_misspelled_field(eks_phase: Assembly) -> None:
    """The checks are live: an unknown field fails, in a core kind and in a custom one."""
    version = eks_phase.config.eks.kubernetes_version  # type: ignore[union-attr]
    job = copy.deepcopy(next(iter(of_kind(eks_phase, "Job").values())))
    job["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(job, version)
    scaled = copy.deepcopy(of_kind(eks_phase, "ScaledObject")["worker-stt"])
    scaled["spec"]["minReplicas"] = 1
    with pytest.raises(jsonschema.ValidationError):
        validate(scaled, version)


def test_workloads_run_in_a_restricted_namespace_with_consistent_labels(
    eks_phase: Assembly,
) -> None:
    namespace = of_kind(eks_phase, "Namespace")["aipp"]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    ours = [o for o in applied(eks_phase) if o["metadata"].get("namespace") == "aipp"]
    assert ours
    for obj in ours:
        if obj["kind"] == "ServiceAccount":
            continue
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/part-of"] == "aipp"
        assert labels["app.kubernetes.io/name"]


def test_api_canary_steps_are_exactly_the_configured_weights(eks_phase: Assembly) -> None:
    eks = eks_phase.config.eks
    assert eks is not None
    canary = of_kind(eks_phase, "Rollout")["api"]["spec"]["strategy"]["canary"]
    pause = {"pause": {"duration": f"{eks.canary_pause_minutes}m"}}
    assert eks.canary_steps == (10, 30, 100)
    assert canary["steps"] == [
        {"setWeight": 10},
        pause,
        {"setWeight": 30},
        pause,
        {"setWeight": 100},
    ]
    assert canary["trafficRouting"] == {"alb": {"ingress": "api", "servicePort": 80}}
    assert canary["analysis"]["templates"] == [{"templateName": "api-5xx"}]
    (arg,) = canary["analysis"]["args"]
    assert arg["name"] == "load-balancer" and "LoadBalancerLookup" in arg["value"]


def test_custom_canary_steps_give_exactly_those_weights() -> None:
    """Any configured list, not only the default: pauses after every weight below 100."""
    canary = api_k8s.Canary(steps=(25, 50, 100), pause_minutes=3, max_5xx_ratio=0.02)
    pause = {"pause": {"duration": "3m"}}
    assert api_k8s.canary_steps(canary) == [
        {"setWeight": 25},
        pause,
        {"setWeight": 50},
        pause,
        {"setWeight": 100},
    ]
    with pytest.raises(ConfigError, match="must end at 100"):
        load_config("2", "staging", {"eks": {"canary_steps": [10, 30]}})
    with pytest.raises(ConfigError, match="increasing"):
        load_config("2", "staging", {"eks": {"canary_steps": [30, 10, 100]}})


def test_analysis_aborts_on_the_load_balancers_5xx_share(eks_phase: Assembly) -> None:
    eks = eks_phase.config.eks
    assert eks is not None
    (metric,) = of_kind(eks_phase, "AnalysisTemplate")["api-5xx"]["spec"]["metrics"]
    assert metric["failureLimit"] == 1
    assert str(eks.canary_max_5xx_percent / 100) in metric["successCondition"]
    queries = {q["id"]: q for q in metric["provider"]["cloudWatch"]["metricDataQueries"]}
    assert queries["ratio"]["returnData"] is True
    names = {q["metricStat"]["metric"]["metricName"] for q in queries.values() if "metricStat" in q}
    assert names == {"HTTPCode_Target_5XX_Count", "HTTPCode_ELB_5XX_Count", "RequestCount"}


def test_api_ingress_is_public_behind_the_web_acl_with_a_fixed_name(eks_phase: Assembly) -> None:
    ingress = of_kind(eks_phase, "Ingress")["api"]
    notes = ingress["metadata"]["annotations"]
    prefix = "alb.ingress.kubernetes.io"
    assert notes[f"{prefix}/scheme"] == "internet-facing"
    assert notes[f"{prefix}/load-balancer-name"] == f"aipp-{eks_phase.config.env.value}-api"
    assert "WebAcl" in notes[f"{prefix}/wafv2-acl-arn"]
    https = eks_phase.config.edge.https
    assert (f"{prefix}/certificate-arn" in notes) is https
    assert json.loads(notes[f"{prefix}/listen-ports"]) == (
        [{"HTTP": 80}, {"HTTPS": 443}] if https else [{"HTTP": 80}]
    )
    paths = ingress["spec"]["rules"][0]["http"]["paths"]
    assert [p["backend"]["service"]["name"] for p in paths] == ["hide-metrics", "api-stable"]


def test_the_ingress_load_balancer_writes_access_logs_the_bucket_accepts(
    eks_phase: Assembly,
) -> None:
    """With a configured region (the prod example); without one, off, as on ECS."""
    notes = of_kind(eks_phase, "Ingress")["api"]["metadata"]["annotations"]
    attributes = dict(
        kv.split("=", 1)
        for kv in notes["alb.ingress.kubernetes.io/load-balancer-attributes"].split(",")
    )
    if not eks_phase.config.region:
        assert "access_logs.s3.enabled" not in attributes
        return
    assert attributes["access_logs.s3.enabled"] == "true"
    assert "AudioAccessLogs" in attributes["access_logs.s3.bucket"]
    prefix = attributes["access_logs.s3.prefix"]
    writes = [
        render(s["Resource"])
        for policy in eks_phase.resources("AWS::S3::BucketPolicy").values()
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
        if s["Effect"] == "Allow" and s.get("Action") == "s3:PutObject"
    ]
    assert any(f"/{prefix}/AWSLogs/" in w and "AudioAccessLogs" in w for w in writes)


def test_with_a_domain_the_ingress_gets_https_and_its_weighted_record(
    assemble: Callable[..., Assembly],
) -> None:
    """Prod's example overrides (config/prod.example.json) set `edge.domain`."""
    assembly = assemble("2", "prod")
    domain = assembly.config.edge.domain
    assert domain is not None
    notes = of_kind(assembly, "Ingress")["api"]["metadata"]["annotations"]
    assert "Certificate" in notes["alb.ingress.kubernetes.io/certificate-arn"]
    assert notes["alb.ingress.kubernetes.io/ssl-redirect"] == "443"
    assert notes["external-dns.alpha.kubernetes.io/hostname"] == domain.name
    assert notes["external-dns.alpha.kubernetes.io/set-identifier"] == "eks"
    assert notes["external-dns.alpha.kubernetes.io/aws-weight"] == "100"
    charts = {
        c["Properties"]["Chart"]: c["Properties"]
        for c in assembly.resources("Custom::AWSCDK-EKS-HelmChart").values()
    }
    values = json.loads(render(charts["external-dns"]["Values"]))
    assert values["policy"] == "upsert-only"
    assert values["txtOwnerId"] == "aipp-prod"
    assert values["extraArgs"] == [f"--zone-id-filter={domain.hosted_zone_id}"]
    dns = [
        s
        for key, p in assembly.resources("AWS::IAM::Policy").items()
        if "ExternalDns" in key
        for s in p["Properties"]["PolicyDocument"]["Statement"]
        if "route53:ChangeResourceRecordSets" in s["Action"]
    ]
    (change,) = dns
    assert render(change["Resource"]).endswith(f":route53:::hostedzone/{domain.hosted_zone_id}")
    staging = assemble("2", "staging")
    assert staging.config.edge.domain is None
    assert "external-dns" not in {
        c["Properties"]["Chart"] for c in staging.resources("Custom::AWSCDK-EKS-HelmChart").values()
    }


def test_the_eks_record_weight_follows_the_switch(assemble: Callable[..., Assembly]) -> None:
    """At expand the old compute keeps all traffic (the phase-switch tests build this step)."""
    expand = assemble("2", "prod", {"transition": {"from_phase": 1, "step": "expand"}})
    notes = of_kind(expand, "Ingress")["api"]["metadata"]["annotations"]
    assert notes["external-dns.alpha.kubernetes.io/aws-weight"] == "0"
    for obj in applied(expand):
        validate(obj, "1.34")


def _pod(rollout: dict[str, Any]) -> dict[str, Any]:
    pod: dict[str, Any] = rollout["spec"]["template"]["spec"]
    return pod


def test_each_scaled_object_scales_its_own_worker_on_its_own_queue(eks_phase: Assembly) -> None:
    eks = eks_phase.config.eks
    assert eks is not None
    scaled = of_kind(eks_phase, "ScaledObject")
    assert set(scaled) == {"worker-stt", "worker-llm"}
    for name, obj in scaled.items():
        task_type = name.removeprefix("worker-")
        spec = obj["spec"]
        assert spec["scaleTargetRef"] == {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Rollout",
            "name": name,
        }
        (trigger,) = spec["triggers"]
        assert trigger["type"] == "aws-sqs-queue"
        assert trigger["authenticationRef"] == {"name": "keda-aws"}
        meta = trigger["metadata"]
        assert set(meta) <= SQS_TRIGGER_KEYS
        assert all(isinstance(v, str) for v in meta.values())
        queue = meta["queueURL"]
        assert f"Queues{task_type.capitalize()}Queue" in queue, "its own queue"
        assert "Dlq" not in queue
        other = "Llm" if task_type == "stt" else "Stt"
        assert f"Queues{other}" not in queue
        assert meta["queueLength"] == str(eks.queue_length_per_replica)
        assert meta["activationQueueLength"] == "0"
        assert meta["awsRegion"]
        tt = next(t for t in eks_phase.config.task_types if t.value == task_type)
        assert spec["maxReplicaCount"] == eks.worker_max_replicas[tt]
        assert spec["minReplicaCount"] == eks.min_replicas(tt)
        worker_env = {
            e["name"]: e["value"]
            for e in _pod(of_kind(eks_phase, "Rollout")[name])["containers"][0]["env"]
        }
        assert worker_env["AIPP_WORKER_QUEUE_URL"] == queue, "the worker consumes what KEDA counts"
    (auth,) = of_kind(eks_phase, "TriggerAuthentication").values()
    assert auth["spec"] == {"podIdentity": {"provider": "aws"}}
    if eks_phase.config.env.value == "staging":
        assert scaled["worker-stt"]["spec"]["minReplicaCount"] == 0, "staging STT scales to zero"


def test_gpu_pods_take_one_gpu_tolerate_the_taint_and_select_their_pool(
    eks_phase: Assembly,
) -> None:
    rollouts = of_kind(eks_phase, "Rollout")
    for task_type in ("stt", "llm"):
        pod = _pod(rollouts[f"worker-{task_type}"])
        containers = pod["initContainers"] + pod["containers"]
        gpus = [
            c["resources"]["limits"].get("nvidia.com/gpu")
            for c in containers
            if "nvidia.com/gpu" in c["resources"].get("limits", {})
        ]
        assert gpus == ["1"], "exactly one GPU, for the model server"
        server = next(c for c in pod["initContainers"] if c["name"] == "model-server")
        assert server["restartPolicy"] == "Always", "a native sidecar"
        assert server["resources"]["requests"]["nvidia.com/gpu"] == "1"
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
            "tolerations"
        ]
        affinity = pod["affinity"]["nodeAffinity"]
        (term,) = affinity["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        assert term["matchExpressions"] == [
            {"key": "aipp.io/pool", "operator": "In", "values": [task_type]}
        ]
        (preferred,) = affinity["preferredDuringSchedulingIgnoredDuringExecution"]
        assert preferred["preference"]["matchExpressions"][0]["values"] == ["spot"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["shm"]["emptyDir"]["medium"] == "Memory"
        startup = server["startupProbe"]
        budget = startup["periodSeconds"] * startup["failureThreshold"]
        eks = eks_phase.config.eks
        assert eks is not None
        assert (
            budget
            >= 60
            * eks.model_servers.for_type(
                next(t for t in eks_phase.config.task_types if t.value == task_type)
            ).startup_minutes
        )


def test_model_weights_come_from_the_models_bucket_not_a_public_hub(eks_phase: Assembly) -> None:
    eks = eks_phase.config.eks
    assert eks is not None
    for task_type in eks_phase.config.task_types:
        pod = _pod(of_kind(eks_phase, "Rollout")[f"worker-{task_type.value}"])
        fetch, server = pod["initContainers"]
        assert fetch["name"] == "fetch-model" and server["name"] == "model-server"
        model = eks.model_servers.for_type(task_type).model
        source, target = fetch["args"]
        assert re.fullmatch(
            rf"s3://aipp-{eks_phase.config.env.value}-models-.+/{re.escape(model)}/", source
        )
        assert server["args"][0] == target == f"/models/{model}"
        env = {e["name"]: e["value"] for e in server["env"]}
        assert env["HF_HUB_OFFLINE"] == "1" and env["TRANSFORMERS_OFFLINE"] == "1"
        worker_env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
        kind = task_type.value.upper()
        assert worker_env[f"AIPP_{kind}_PROVIDER"] == "openai"
        assert worker_env[f"AIPP_OPENAI_{kind}_BASE_URL"] == "http://127.0.0.1:8001"
        assert worker_env[f"AIPP_OPENAI_{kind}_MODEL"] == model


def test_grace_period_covers_the_longest_job_within_the_visibility_timeout(
    eks_phase: Assembly,
) -> None:
    queues = eks_phase.config.queues
    for name in ("worker-stt", "worker-llm"):
        pod = _pod(of_kind(eks_phase, "Rollout")[name])
        grace = pod["terminationGracePeriodSeconds"]
        assert queues.longest_job_seconds < grace <= queues.visibility_timeout_seconds
        env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
        assert int(env["AIPP_WORKER_SHUTDOWN_GRACE_SECONDS"]) == queues.longest_job_seconds
    (chart,) = [
        c["Properties"]
        for c in eks_phase.resources("Custom::AWSCDK-EKS-HelmChart").values()
        if c["Properties"]["Chart"] == "cluster-autoscaler"
    ]
    args = json.loads(render(chart["Values"]))["extraArgs"]
    assert int(args["max-graceful-termination-sec"]) > grace
    assert args["skip-nodes-with-local-storage"] == "false"


def _containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = obj["spec"]
    pod = spec["template"]["spec"] if "template" in spec else spec
    return [*pod.get("initContainers", []), *pod["containers"]]


def test_no_container_runs_as_root_or_can_escalate(eks_phase: Assembly) -> None:
    pods = [o for o in applied(eks_phase) if o["kind"] in ("Rollout", "Job")]
    assert len(pods) == 4
    for obj in pods:
        pod = obj["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        for container in _containers(obj):
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False
            assert security["runAsNonRoot"] is True
            assert security["capabilities"] == {"drop": ["ALL"]}
            assert security["seccompProfile"] == {"type": "RuntimeDefault"}


def test_every_image_and_chart_is_pinned(eks_phase: Assembly) -> None:
    images = {
        c["image"]
        for o in applied(eks_phase)
        if o["kind"] in ("Rollout", "Job")
        for c in _containers(o)
    }
    assert images
    for image in images:
        # CDK image assets: the ECR repository of the bootstrap, tagged with the content hash.
        assert re.fullmatch(r".*container-assets.*:[0-9a-f]{64}", image), image
    for chart in eks_phase.resources("Custom::AWSCDK-EKS-HelmChart").values():
        assert re.fullmatch(r"v?\d+\.\d+\.\d+", chart["Properties"]["Version"])
    values = {
        c["Properties"]["Chart"]: json.loads(render(c["Properties"]["Values"]))
        for c in eks_phase.resources("Custom::AWSCDK-EKS-HelmChart").values()
        if "Values" in c["Properties"]
    }
    assert re.fullmatch(r"v\d+\.\d+\.\d+", values["cluster-autoscaler"]["image"]["tag"])
    dockerfile = (Path(__file__).parents[2] / "model_server" / "Dockerfile").read_text()
    assert re.search(
        r"^ARG VLLM_IMAGE=vllm/vllm-openai:v[\d.]+@sha256:[0-9a-f]{64}$", dockerfile, re.M
    )


def test_api_pods_have_probes_a_budget_and_cpu_autoscaling(eks_phase: Assembly) -> None:
    eks = eks_phase.config.eks
    assert eks is not None
    (api,) = _pod(of_kind(eks_phase, "Rollout")["api"])["containers"]
    assert api["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    hpa = of_kind(eks_phase, "HorizontalPodAutoscaler")["api"]["spec"]
    assert hpa["scaleTargetRef"]["kind"] == "Rollout"
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (eks.api_replicas.min, eks.api_replicas.max)
    assert of_kind(eks_phase, "PodDisruptionBudget")["api"]["spec"]["maxUnavailable"] == 1


def test_the_migration_job_is_named_by_the_image_and_the_api_waits_for_it(
    eks_phase: Assembly,
) -> None:
    (job,) = of_kind(eks_phase, "Job").values()
    assert re.fullmatch(r"migrate-[0-9a-f]{12}", job["metadata"]["name"])
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["python", "-m", "aipp.admin", "migrate"]
    assert job["metadata"]["name"][len("migrate-") :] in container["image"]
    template = eks_phase.templates["ComputeEks"]["Resources"]
    (wait,) = [
        k
        for k, r in template.items()
        if r["Type"] == "Custom::AWSCDK-EKS-KubernetesObjectValue" and "MigrationSucceeded" in k
    ]
    assert template[wait]["Properties"]["ObjectName"] == job["metadata"]["name"]
    api = next(
        k
        for k in template
        if k.startswith("EksClusterK8sApi") or ("K8sApi" in k and "Network" not in k)
    )
    assert wait in json.dumps(template[api].get("DependsOn", [])), "the API rollout waits for it"


def _statements(assembly: Assembly, hint: str) -> list[dict[str, Any]]:
    return [
        s
        for key, policy in assembly.resources("AWS::IAM::Policy").items()
        if hint in key
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def test_each_service_account_reaches_only_its_own_resources(eks_phase: Assembly) -> None:
    for task_type, other in (("Stt", "Llm"), ("Llm", "Stt")):
        text = json.dumps(_statements(eks_phase, f"Worker{task_type}SaRole"))
        assert f"Queues{task_type}Queue" in text and f"Queues{task_type}Dlq" in text
        assert f"Queues{other}Dlq" not in text, "never the other type's DLQ"
        receive = [
            s
            for s in _statements(eks_phase, f"Worker{task_type}SaRole")
            if "sqs:ReceiveMessage" in json.dumps(s["Action"])
        ]
        assert receive and f"Queues{other}" not in json.dumps(receive), (
            "consumes its own queue only"
        )
        eks = eks_phase.config.eks
        assert eks is not None
        own = eks.model_servers.for_type(
            next(t for t in eks_phase.config.task_types if t.value == task_type.lower())
        ).model
        theirs = eks.model_servers.for_type(
            next(t for t in eks_phase.config.task_types if t.value == other.lower())
        ).model
        assert f"/{own}/*" in text and f"/{theirs}/" not in text
        assert "AppSecret" in text and "MasterSecret" not in text
    api = json.dumps(_statements(eks_phase, "ApiSaRole"))
    assert "MasterSecret" not in api and "sqs:ReceiveMessage" not in api
    assert "models" not in api
    migration = json.dumps(_statements(eks_phase, "MigrationSaRole"))
    assert "MasterSecret" in migration and "sqs:" not in migration and "s3:" not in migration


def test_overflow_to_managed_services_only_where_the_phase_allows_it(eks_phase: Assembly) -> None:
    text = json.dumps(_statements(eks_phase, "WorkerSttSaRole"))
    llm = json.dumps(_statements(eks_phase, "WorkerLlmSaRole"))
    fallback = eks_phase.config.ai.managed_fallback
    assert ("transcribe:StartTranscriptionJob" in text) is fallback
    assert ("bedrock:InvokeModel" in llm) is fallback
    assert "bedrock:" not in text and "transcribe:" not in llm


def test_secrets_reach_pods_by_arn_never_as_values(eks_phase: Assembly) -> None:
    for obj in applied(eks_phase):
        if obj["kind"] not in ("Rollout", "Job"):
            continue
        for container in _containers(obj):
            names = {e["name"] for e in container.get("env", [])}
            assert not names & {
                "AIPP_REDIS_AUTH_TOKEN",
                "AIPP_WEBHOOK_SECRET",
                "AIPP_DB_PASSWORD",
                "AIPP_DATABASE_URL",
            }
            assert all("valueFrom" not in e for e in container.get("env", []))
    job_env = {
        e["name"] for e in _containers(next(iter(of_kind(eks_phase, "Job").values())))[0]["env"]
    }
    assert "AIPP_REDIS_AUTH_SECRET_ARN" not in job_env, "the migration cannot read (or need) it"
    api_env = {
        e["name"]: e["value"]
        for e in _pod(of_kind(eks_phase, "Rollout")["api"])["containers"][0]["env"]
    }
    assert "AuthToken" in api_env["AIPP_REDIS_AUTH_SECRET_ARN"]
    assert "AppSecret" in api_env["AIPP_DB_SECRET_ARN"]


def test_the_api_alarms_watch_the_ingress_load_balancer(eks_phase: Assembly) -> None:
    alarms = {
        key.split("/")[1]: a["Properties"]
        for key, a in eks_phase.resources("AWS::CloudWatch::Alarm").items()
        if key.startswith("ComputeEks/")
    }
    names = " ".join(alarms)
    for name in ("Api5xx", "ApiLatencyP99", "WorkerErrors"):
        assert name in names
    api = next(p for k, p in alarms.items() if k.startswith("Api5xx"))
    (dimension,) = api["Dimensions"]
    assert dimension["Name"] == "LoadBalancer"
    assert "LoadBalancerLookup" in render(dimension["Value"])
    groups = [
        g["Properties"]
        for k, g in eks_phase.resources("AWS::Logs::LogGroup").items()
        if k.startswith("ComputeEks/ApplicationLogs")
    ]
    (group,) = groups
    assert (
        group["LogGroupName"]
        == f"/aws/containerinsights/aipp-{eks_phase.config.env.value}/application"
    )
    assert group["RetentionInDays"] == eks_phase.config.observability.log_retention_days
