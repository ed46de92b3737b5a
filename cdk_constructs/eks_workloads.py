"""The platform's workloads on the EKS cluster: the migration Job, the API Rollout behind its
Ingress's ALB, and per task type a worker Rollout with its model server on the GPU pool,
scaled by KEDA on the type's own queue.

Manifests come from `cdk_constructs.k8s` (one module per workload); this construct makes the
images, one IRSA service account per workload (granted with `cdk_constructs.grants`), applies
the manifests in order after the add-ons they need (KEDA objects after KEDA, Rollouts after
Argo Rollouts, the Ingress after the load balancer controller) and finds the Ingress's load
balancer for the alarms and the canary analysis.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aws_cdk import Aws, Duration, Fn, Stack
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_eks_v2 as eks
from aws_cdk import aws_iam as iam
from aws_cdk import aws_secretsmanager as sm
from aws_cdk import aws_sqs as sqs
from aws_cdk import custom_resources as cr
from constructs import Construct

from aipp_contract.keys import model_prefix
from aipp_contract.messages import Kind
from cdk_constructs.audio_bucket import AudioBucket, ModelsBucket, grant_objects
from cdk_constructs.database import Database
from cdk_constructs.eks_cluster import PlatformCluster, as_icluster
from cdk_constructs.grants import grant_api, grant_worker
from cdk_constructs.images import PLATFORM, image_asset
from cdk_constructs.k8s import MODEL_SERVER_PORT, NAMESPACE, Manifest, namespace
from cdk_constructs.k8s import api as api_k8s
from cdk_constructs.k8s import migration as migration_k8s
from cdk_constructs.k8s import workers as workers_k8s
from cdk_constructs.nag import acknowledge, acknowledge_sdk_call_function
from cdk_constructs.paths import REPO_ROOT
from cdk_constructs.redis_cache import RedisCache
from cdk_constructs.runtime_env import (
    RELEASE,
    ModelServer,
    platform_endpoints,
    runtime_environment,
)
from cdk_constructs.task_queues import QueuePair, TaskQueues
from phases import PhaseConfig, TaskType

MODEL_SERVER_DIR = REPO_ROOT / "model_server"
SYSTEM_POOL = "system"
ALB_LOG_PREFIX = "alb-eks"  # the ECS ALB logs under "alb"


@dataclass(frozen=True)
class Images:
    api: ecr_assets.DockerImageAsset
    worker: ecr_assets.DockerImageAsset
    model_server: ecr_assets.DockerImageAsset


def load_balancer_name(config: PhaseConfig) -> str:
    """The Ingress ALB's fixed name (at most 32 characters), which alarms and analysis find."""
    return f"{config.name_prefix}-api"


class PlatformWorkloads(Construct):
    """Exposes `images`, `service_accounts` (by workload), `manifests` (by name),
    `load_balancer_full_name` (the ALB's CloudWatch `LoadBalancer` dimension),
    `load_balancer_dns_name` (the address the Ingress got) and
    `grace_seconds` (the workers' termination grace period)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: PhaseConfig,
        platform: PlatformCluster,
        addons: Mapping[str, Construct],
        web_acl_arn: str,
        certificate_arn: str | None,
        audio: AudioBucket,
        models: ModelsBucket,
        database: Database,
        cache: RedisCache,
        queues: TaskQueues,
        webhook_key: sm.ISecret | None,
    ) -> None:
        super().__init__(scope, construct_id)
        if config.eks is None:  # pragma: no cover - ComputeEksStack checks first
            raise ValueError("PlatformWorkloads needs the `eks` config section")
        self.config = config
        self.cluster = platform.cluster
        self.addons = addons
        self.region = config.region or Stack.of(self).region
        self.images = self._images(platform.node_role)
        send_to = {t: queues.for_type(t, config.serving_queue_mode).queue for t in TaskType}
        self.endpoints = platform_endpoints(
            region=self.region,
            bucket=audio.bucket_name,
            queues=queues,
            serving=config.serving_queue_mode,
            database=database,
            cache=cache,
            webhook_secret_arn=webhook_key.secret_arn if webhook_key is not None else None,
        )
        self.ai = config.ai_for("eks")
        self.manifests: dict[str, eks.KubernetesManifest] = {}
        self.namespace = self._apply("Namespace", namespace())
        self.service_accounts: dict[str, eks.ServiceAccount] = {}
        self.migrated = self._migration(database)
        self.canary = api_k8s.Canary(
            steps=config.eks.canary_steps,
            pause_minutes=config.eks.canary_pause_minutes,
            max_5xx_ratio=config.eks.canary_max_5xx_percent / 100,
        )
        self._api(
            self._api_service_account(audio, database, cache, send_to),
            audio=audio,
            web_acl_arn=web_acl_arn,
            certificate_arn=certificate_arn,
        )
        self._workers(
            audio=audio,
            models=models,
            database=database,
            cache=cache,
            queues=queues,
            send_to=list(dict.fromkeys(send_to.values())),
            webhook_key=webhook_key,
        )

    def _images(self, node_role: iam.IRole) -> Images:
        """The API, worker and model-server images, pulled by the nodes' role."""
        images = Images(
            api=self._image("ApiImage", target="api"),
            worker=self._image("WorkerImage", target="worker"),
            model_server=ecr_assets.DockerImageAsset(
                self, "ModelServerImage", directory=str(MODEL_SERVER_DIR), platform=PLATFORM
            ),
        )
        for image in (images.api, images.worker, images.model_server):
            image.repository.grant_pull(node_role)
        acknowledge(
            node_role,
            "AwsSolutions-IAM5[Resource::*]",
            "ecr:GetAuthorizationToken has no resource-level permissions; the pulls themselves "
            "are granted on the image asset repository only.",
        )
        return images

    def _service_account(self, construct_id: str, name: str) -> eks.ServiceAccount:
        """One IRSA service account per workload, in the workloads' namespace."""
        sa = self.cluster.add_service_account(construct_id, name=name, namespace=NAMESPACE)
        sa.node.add_dependency(self.namespace)
        self.service_accounts[name] = sa
        return sa

    def _migration(self, database: Database) -> eks.KubernetesObjectValue:
        config = self.config
        migration_sa = self._service_account("MigrationSa", migration_k8s.SERVICE_ACCOUNT)
        database.master_secret.grant_read(migration_sa.role)
        database.secret.grant_read(migration_sa.role)
        job_name = migration_k8s.job_name(self.images.api.asset_hash)
        migration = self._apply(
            "Migration",
            migration_k8s.migration_job(
                image=self.images.api.image_uri,
                image_hash=self.images.api.asset_hash,
                env={
                    **runtime_environment(
                        config,
                        self.endpoints,
                        kind=Kind.MIGRATION,
                        ai=self.ai,
                        master_secret_arn=database.master_secret.secret_arn,
                    ),
                    RELEASE: self.images.api.asset_hash,
                },
                system_pool=SYSTEM_POOL,
            ),
        )
        migration.node.add_dependency(migration_sa)
        # CloudFormation waits here until the Job has succeeded (or fails the deploy after the
        # timeout, leaving the running API on its old image).
        migrated = eks.KubernetesObjectValue(
            self,
            "MigrationSucceeded",
            cluster=as_icluster(self.cluster),
            object_type="job",
            object_name=job_name,
            object_namespace=NAMESPACE,
            json_path=".status.succeeded",
            timeout=Duration.minutes(15),
        )
        migrated.node.add_dependency(migration)
        return migrated

    def _api_service_account(
        self,
        audio: AudioBucket,
        database: Database,
        cache: RedisCache,
        send_to: Mapping[TaskType, sqs.IQueue],
    ) -> eks.ServiceAccount:
        """The API's IRSA service account with its grants (`grants.grant_api`)."""
        api_sa = self._service_account("ApiSa", api_k8s.SERVICE_ACCOUNT)
        database.secret.grant_read(api_sa.role)
        cache.auth_secret.grant_read(api_sa.role)
        grant_api(api_sa.role, bucket=audio.bucket_name, send_to=send_to)
        return api_sa

    def _api(
        self,
        service_account: eks.ServiceAccount,
        *,
        audio: AudioBucket,
        web_acl_arn: str,
        certificate_arn: str | None,
    ) -> None:
        """The API's Services and Ingress, then its canary Rollout, analysis, HPA and PDB."""
        config = self.config
        eks_config = config.eks
        assert eks_config is not None
        network = self._api_network(audio, web_acl_arn, certificate_arn)
        self.load_balancer_full_name = self._find_load_balancer(config, network)
        api = self._apply(
            "Api",
            api_k8s.analysis_template(self.canary.max_5xx_ratio),
            api_k8s.rollout(
                image=self.images.api.image_uri,
                env={
                    **runtime_environment(config, self.endpoints, kind=Kind.API, ai=self.ai),
                    RELEASE: self.images.api.asset_hash,
                },
                canary=self.canary,
                load_balancer_dimension=self.load_balancer_full_name,
                migration_job=migration_k8s.job_name(self.images.api.asset_hash),
                cpu_millicores=eks_config.api_resources.cpu_millicores,
                memory_mib=eks_config.api_resources.memory_mib,
                system_pool=SYSTEM_POOL,
            ),
            api_k8s.autoscaler(
                min_replicas=eks_config.api_replicas.min,
                max_replicas=eks_config.api_replicas.max,
                target_cpu_percent=eks_config.api_target_cpu_percent,
            ),
            api_k8s.disruption_budget(),
        )
        for needed in (
            self.addons["argo-rollouts"],
            self.addons["metrics-server"],
            service_account,
            network,
            self.migrated,
        ):
            api.node.add_dependency(needed)

    def _api_network(
        self, audio: AudioBucket, web_acl_arn: str, certificate_arn: str | None
    ) -> Construct:
        """The API's Services and its Ingress (the ALB, behind the web ACL, logging to the
        access-log bucket when config sets `region`)."""
        config = self.config
        domain = config.edge.domain
        log_bucket = audio.allow_load_balancer_logs(ALB_LOG_PREFIX)
        network = self._apply(
            "ApiNetwork",
            *api_k8s.services(),
            api_k8s.ingress(
                api_k8s.IngressSettings(
                    load_balancer_name=load_balancer_name(config),
                    web_acl_arn=web_acl_arn,
                    certificate_arn=certificate_arn,
                    tags={
                        "project": config.project,
                        "env": config.env.value,
                        "phase": str(int(config.phase)),
                    },
                    # its own prefix: during a switch both computes' ALBs log side by side
                    access_logs=(log_bucket, ALB_LOG_PREFIX) if log_bucket else None,
                    hostname=domain.name if domain is not None else None,
                    dns_weight=config.traffic_percent("eks"),
                )
            ),
        )
        network.node.add_dependency(self.addons["aws-load-balancer-controller"])
        if "external-dns" in self.addons:
            network.node.add_dependency(self.addons["external-dns"])
        return network

    def _workers(
        self,
        *,
        audio: AudioBucket,
        models: ModelsBucket,
        database: Database,
        cache: RedisCache,
        queues: TaskQueues,
        send_to: Sequence[sqs.IQueue],
        webhook_key: sm.ISecret | None,
    ) -> None:
        """Per task type: a service account with the worker's grants, its Rollout with the model
        server beside it, and (after KEDA) its ScaledObject on the type's queue."""
        config = self.config
        eks_config = config.eks
        assert eks_config is not None
        self.grace_seconds = workers_k8s.termination_grace_seconds(
            config.queues.longest_job_seconds, config.queues.visibility_timeout_seconds
        )
        scaling: list[Manifest] = [workers_k8s.trigger_authentication()]
        worker_rollouts = []
        for pair in queues.layout(config.queue_mode_of("eks")):
            (task_type,) = pair.task_types  # per_type: checked by PhaseConfig
            model = eks_config.model_servers.for_type(task_type).model
            sa = self._service_account(
                f"Worker{task_type.value.capitalize()}Sa", workers_k8s.name(task_type.value)
            )
            database.secret.grant_read(sa.role)
            cache.auth_secret.grant_read(sa.role)
            if webhook_key is not None:
                webhook_key.grant_read(sa.role)
            grant_worker(
                sa.role, ai=self.ai, bucket=audio.bucket_name, consumes=pair, send_to=send_to
            )
            grant_model(sa.role, bucket=models.bucket_name, model=model)
            rollout = self._worker(pair, task_type, models_bucket=models.bucket_name)
            for needed in (
                self.addons["argo-rollouts"],
                self.addons["nvidia-device-plugin"],
                sa,
                self.migrated,
            ):
                rollout.node.add_dependency(needed)
            worker_rollouts.append(rollout)
            scaling.append(
                workers_k8s.scaled_object(
                    task_type=task_type.value,
                    queue_url=pair.queue.queue_url,
                    region=self.region,
                    queue_length=eks_config.queue_length_per_replica,
                    min_replicas=eks_config.min_replicas(task_type),
                    max_replicas=eks_config.worker_max_replicas[task_type],
                )
            )
        keda = self._apply("WorkerScaling", *scaling)
        for needed in (self.addons["keda"], *worker_rollouts):
            keda.node.add_dependency(needed)

    def _worker(
        self, pair: QueuePair, task_type: TaskType, *, models_bucket: str
    ) -> eks.KubernetesManifest:
        """One task type's worker Rollout on its GPU pool, its model server as a sidecar."""
        config = self.config
        eks_config = config.eks
        assert eks_config is not None
        server_config = eks_config.model_servers.for_type(task_type)
        pool = eks_config.pool_for(task_type)
        return self._apply(
            f"Worker{task_type.value.capitalize()}",
            workers_k8s.rollout(
                task_type=task_type.value,
                image=self.images.worker.image_uri,
                env={
                    **runtime_environment(
                        config,
                        self.endpoints,
                        kind=Kind.WORKER,
                        ai=self.ai,
                        worker=pair,
                        concurrency=eks_config.worker_concurrency,
                        model_servers={
                            task_type: ModelServer(
                                url=f"http://127.0.0.1:{MODEL_SERVER_PORT}",
                                model=server_config.model,
                            )
                        },
                        shutdown_grace_seconds=config.queues.longest_job_seconds,
                    ),
                    RELEASE: self.images.worker.asset_hash,
                },
                server=workers_k8s.ModelServerSpec(
                    image=self.images.model_server.image_uri,
                    model=server_config.model,
                    models_bucket=models_bucket,
                    args=workers_k8s.model_server_args(
                        server_config.model,
                        gpu_memory_utilization=server_config.gpu_memory_utilization,
                        max_model_len=server_config.max_model_len,
                        extra=server_config.extra_args,
                    ),
                    cpu_millicores=server_config.resources.cpu_millicores,
                    memory_mib=server_config.resources.memory_mib,
                    startup_minutes=server_config.startup_minutes,
                    region=self.region,
                ),
                placement=workers_k8s.GpuPlacement(
                    pool=pool.name, models_disk_gib=pool.disk_gib // 2
                ),
                canary=self.canary,
                grace_seconds=self.grace_seconds,
                cpu_millicores=eks_config.worker_resources.cpu_millicores,
                memory_mib=eks_config.worker_resources.memory_mib,
            ),
        )

    def _image(self, construct_id: str, *, target: str) -> ecr_assets.DockerImageAsset:
        """The ECS images' Dockerfile and target, as an image asset (synth needs no Docker)."""
        return image_asset(self, construct_id, target=target)

    def _apply(self, name: str, *manifests: Manifest) -> eks.KubernetesManifest:
        applied = self.cluster.add_manifest(f"K8s{name}", *manifests)
        self.manifests[name] = applied
        return applied

    def _find_load_balancer(self, config: PhaseConfig, ingress: Construct) -> str:
        """`app/<name>/<id>`: wait until the controller has given the Ingress an address, then
        look its load balancer up by the fixed name."""
        address = eks.KubernetesObjectValue(
            self,
            "IngressAddress",
            cluster=as_icluster(self.cluster),
            object_type="ingress",
            object_name=api_k8s.INGRESS,
            object_namespace=NAMESPACE,
            json_path=".status.loadBalancer.ingress[0].hostname",
            timeout=Duration.minutes(10),
        )
        address.node.add_dependency(ingress)
        self.load_balancer_dns_name = address.value
        name = load_balancer_name(config)
        lookup = cr.AwsCustomResource(
            self,
            "LoadBalancerLookup",
            on_update=cr.AwsSdkCall(
                service="ElasticLoadBalancingV2",
                action="describeLoadBalancers",
                parameters={"Names": [name]},
                # A new address (a replaced load balancer) looks it up again.
                physical_resource_id=cr.PhysicalResourceId.of(address.value),
                output_paths=["LoadBalancers.0.LoadBalancerArn"],
            ),
            policy=cr.AwsCustomResourcePolicy.from_statements(
                [
                    iam.PolicyStatement(
                        actions=["elasticloadbalancing:DescribeLoadBalancers"], resources=["*"]
                    )
                ]
            ),
            install_latest_aws_sdk=False,
        )
        acknowledge(
            lookup,
            "AwsSolutions-IAM5[Resource::*]",
            "elasticloadbalancing:DescribeLoadBalancers has no resource-level permissions; the "
            "lookup only reads the Ingress load balancer's ARN by its fixed name.",
        )
        acknowledge_sdk_call_function(self)
        arn = lookup.get_response_field("LoadBalancers.0.LoadBalancerArn")
        return Fn.select(1, Fn.split(":loadbalancer/", arn))


def grant_model(role: iam.IRole, *, bucket: str, model: str) -> None:
    """Read one model's weights: its key prefix of the models bucket, and listing it."""
    prefix = model_prefix(model)
    grant_objects(role, bucket=bucket, actions=["s3:GetObject"], prefixes=[prefix])
    role.add_to_principal_policy(
        iam.PolicyStatement(
            actions=["s3:ListBucket"],
            resources=[f"arn:{Aws.PARTITION}:s3:::{bucket}"],
            conditions={"StringLike": {"s3:prefix": [f"{prefix}*"]}},
        )
    )
