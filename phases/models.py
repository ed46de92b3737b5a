"""The validated configuration of one deployment: a phase of the platform in one environment.

Every model is frozen and rejects unknown fields, so a typo in an override fails loudly instead
of being ignored. Every field carries a description: it is the documentation of the knob.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from aipp_contract.messages import TaskType
from phases.eks_facts import (
    CLUSTER_AUTOSCALER_RELEASES,
    DEFAULT_CHARTS,
    GPU_INSTANCES,
    KUBECTL_LAYERS,
    gpu_model,
    kubectl_layer_for,
)
from phases.rds_facts import default_max_connections

RoleArn = Annotated[
    str, StringConstraints(pattern=r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")
]
Cidr = Annotated[str, StringConstraints(pattern=r"^\d{1,3}(\.\d{1,3}){3}/\d{1,2}$")]


class Phase(IntEnum):
    """The three growth phases of the platform (DESIGN.md's phase table)."""

    MVP = 1
    GROWTH = 2
    SCALE = 3


class Env(StrEnum):
    """The deployed environments; `dev` is local and never deployed with CDK."""

    STAGING = "staging"
    PROD = "prod"


class Frozen(BaseModel):
    """Base of every config model: immutable, unknown fields rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class MinMax(Frozen):
    """A bounded count, checked so that min <= desired <= max."""

    min: int = Field(ge=0, description="Lower bound of the count.")
    max: int = Field(ge=0, description="Upper bound of the count.")

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) must not exceed max ({self.max})")
        return self


class NetworkConfig(Frozen):
    cidr: str = Field(
        default="10.40.0.0/16",
        pattern=r"^\d{1,3}(\.\d{1,3}){3}/(1[6-9]|2[0-4])$",
        description="IPv4 CIDR of the VPC, /16 to /24.",
    )
    max_azs: int = Field(
        default=2,
        ge=2,
        le=3,
        description=(
            "Availability zones the VPC uses now. Address space for 3 is always reserved, so "
            "going from 2 to 3 adds subnets and leaves the existing ones in place."
        ),
    )
    availability_zones: tuple[str, ...] = Field(
        default=(),
        max_length=3,
        description=(
            "The environment's AZ names (e.g. `eu-west-1a`...), with `region` set; the first "
            "`max_azs` are used. An environment-agnostic stack knows only 2 AZs and a lookup "
            "would need credentials at synth, so 3 AZs need their names here. Name them at the "
            "first deploy: changing a subnet's AZ replaces the subnet."
        ),
    )
    nat_gateways: int = Field(
        ge=1, le=3, description="NAT gateways: 1 saves cost, one per AZ survives an AZ outage."
    )
    interface_endpoints: tuple[
        Literal["ecr.api", "ecr.dkr", "logs", "sqs", "secretsmanager", "sts", "monitoring"], ...
    ] = Field(
        default=("ecr.api", "ecr.dkr", "logs", "sqs", "secretsmanager"),
        description=(
            "Interface VPC endpoints to create. Each costs about $7.3 per AZ per month and keeps "
            "its traffic (image pulls, logs, queue polling, secrets) off the NAT gateways."
        ),
    )
    flow_log_retention_days: int = Field(
        ge=1, description="Days to keep VPC flow logs in CloudWatch Logs."
    )

    @model_validator(mode="after")
    def _nat_within_azs(self) -> Self:
        if self.nat_gateways > self.max_azs:
            raise ValueError(
                f"nat_gateways ({self.nat_gateways}) must not exceed max_azs ({self.max_azs})"
            )
        return self


class BucketConfig(Frozen):
    raw_upload_expiry_days: int = Field(
        ge=1, description="Days after which raw uploads under `uploads/` are deleted."
    )
    noncurrent_version_expiry_days: int = Field(
        default=7, ge=1, description="Days to keep overwritten or deleted object versions."
    )
    cors_allowed_origins: tuple[str, ...] = Field(
        default=("*",),
        min_length=1,
        description="Origins allowed to PUT to presigned URLs from a browser.",
    )
    max_upload_bytes: int = Field(
        default=500 * 1024 * 1024,
        gt=0,
        description="Largest audio file accepted, in bytes (bound into presigned URLs).",
    )
    max_multipart_bytes: int = Field(
        default=32 * 1024 * 1024,
        gt=0,
        le=100 * 1024 * 1024,
        description=(
            "Largest audio file sent directly as a multipart form to `POST /v1/tasks` (streamed "
            "to S3 through the API); larger files go through the presigned upload."
        ),
    )
    access_log_retention_days: int = Field(ge=1, description="Days to keep S3 and ALB access logs.")


class DbPoolsConfig(Frozen):
    """Largest connection pool of one process of each kind (`AIPP_DB_POOL_MAX` of its container).

    The API and the workers are asyncio programs: a handful of connections serves many requests
    or jobs, which wait for a connection rather than open more. The upload check handles one
    object at a time per Lambda execution environment.
    """

    api: int = Field(default=5, ge=1, le=100, description="Pool of one API task or pod.")
    worker: int = Field(default=3, ge=1, le=100, description="Pool of one worker task or pod.")
    upload_check: int = Field(
        default=1, ge=1, le=10, description="Pool of one upload-check Lambda environment."
    )
    migration: int = Field(default=2, ge=1, le=10, description="Pool of the migration task.")


class DatabaseConfig(Frozen):
    engine: Literal["rds-postgres", "aurora-postgres"] = Field(
        description=(
            "RDS PostgreSQL (every phase). Aurora PostgreSQL only as an explicit choice for a "
            "new environment: switching an existing one replaces the database (see "
            "docs/phase-switch.md for the snapshot-restore migration)."
        )
    )
    postgres_version: Literal["16", "17"] = Field(
        default="16", description="PostgreSQL major version."
    )
    instance_class: str = Field(
        pattern=r"^[a-z][a-z0-9]*\.[a-z0-9]+$",
        description="Instance class without the `db.` prefix, e.g. `t4g.micro`.",
    )
    multi_az: bool = Field(description="Standby in a second AZ (RDS) with automatic failover.")
    read_replicas: int = Field(
        default=0,
        ge=0,
        le=5,
        description=(
            "Read replicas (RDS) or reader instances (Aurora) of the same class; the API's "
            "read-only queries may use them."
        ),
    )
    allocated_storage_gib: int = Field(default=20, ge=20, description="Initial storage (RDS).")
    max_allocated_storage_gib: int = Field(
        default=100, ge=20, description="Storage autoscaling ceiling (RDS)."
    )
    backup_retention_days: int = Field(ge=1, le=35, description="Automated backup retention.")
    deletion_protection: bool = Field(
        description="Deletion protection on, and RETAIN on stack deletion."
    )
    secret_rotation_days: int = Field(
        default=30, ge=1, le=365, description="Rotate the master credentials every N days."
    )
    pools: DbPoolsConfig = Field(
        default_factory=DbPoolsConfig, description="Connection pool size per process kind."
    )
    max_connections: int | None = Field(
        default=None,
        ge=10,
        description=(
            "The server's `max_connections`; None estimates RDS's default for the instance "
            "class (phases/rds_facts.py). Set it when a parameter group changes it."
        ),
    )
    connection_headroom_percent: int = Field(
        default=20,
        ge=0,
        le=90,
        description=(
            "Share of `max_connections` kept free of the platform's pools: operators, "
            "monitoring, rotation, and a deployment's old and new tasks overlapping."
        ),
    )

    def connection_limit(self) -> int | None:
        """Connections the platform's pools may use together, after the headroom."""
        limit = self.max_connections or default_max_connections(self.instance_class)
        return None if limit is None else limit * (100 - self.connection_headroom_percent) // 100

    @model_validator(mode="after")
    def _engine_shape(self) -> Self:
        if self.max_allocated_storage_gib < self.allocated_storage_gib:
            raise ValueError("max_allocated_storage_gib must be >= allocated_storage_gib")
        return self


class CacheConfig(Frozen):
    mode: Literal["single", "replication"] = Field(
        description=(
            "single: one node; replication: a primary and replicas with automatic failover, "
            "behind one primary endpoint. (Cluster mode is not offered: the runtime's Lua "
            "scripts and multi-key operations address one primary.)"
        )
    )
    node_type: str = Field(
        pattern=r"^cache\.[a-z0-9]+\.[a-z0-9]+$", description="ElastiCache node type."
    )
    replicas: int = Field(default=0, ge=0, le=5, description="Replicas of the primary.")
    engine_version: str = Field(default="7.1", description="Redis engine version.")
    snapshot_retention_days: int = Field(default=1, ge=0, le=35, description="Daily snapshots.")

    @model_validator(mode="after")
    def _mode_shape(self) -> Self:
        if self.mode == "single" and self.replicas:
            raise ValueError("mode 'single' takes replicas=0")
        if self.mode == "replication" and self.replicas < 1:
            raise ValueError("mode 'replication' needs replicas >= 1 for failover")
        return self


class QueueConfig(Frozen):
    mode: Literal["single", "per_type"] = Field(
        description=(
            "single: one queue + DLQ, both task types told apart by the `task_type` attribute "
            "and served by one worker program; per_type: one queue + DLQ per task type."
        )
    )
    max_receive_count: int = Field(
        default=3, ge=1, le=1000, description="Receives before a message moves to the DLQ."
    )
    longest_job_seconds: int = Field(
        default=900, ge=1, description="The longest a single job may run (STT of long audio)."
    )
    visibility_timeout_seconds: int = Field(
        default=1080,
        ge=0,
        le=43200,
        description="Visibility timeout; must exceed longest_job_seconds.",
    )
    retention_days: int = Field(default=4, ge=1, le=14, description="Message retention.")
    dlq_retention_days: int = Field(default=14, ge=1, le=14, description="DLQ retention.")

    @model_validator(mode="after")
    def _visibility_covers_job(self) -> Self:
        if self.visibility_timeout_seconds <= self.longest_job_seconds:
            raise ValueError(
                f"visibility_timeout_seconds ({self.visibility_timeout_seconds}) must exceed "
                f"longest_job_seconds ({self.longest_job_seconds})"
            )
        return self


class FargateServiceConfig(Frozen):
    cpu: Literal[256, 512, 1024, 2048, 4096] = Field(description="Task CPU units.")
    memory_mib: int = Field(ge=512, le=30720, description="Task memory in MiB.")
    count: MinMax = Field(description="Autoscaling bounds on the number of tasks.")
    spot: bool = Field(default=False, description="Run on Fargate Spot (workers only).")

    @model_validator(mode="after")
    def _memory_fits_cpu(self) -> Self:
        # Valid Fargate CPU/memory pairs (AWS ECS developer guide, task size table).
        lo, hi = {256: (512, 2048), 512: (1024, 4096), 1024: (2048, 8192)}.get(
            self.cpu, (self.cpu * 2, self.cpu * 8 if self.cpu < 4096 else 30720)
        )
        if not lo <= self.memory_mib <= hi:
            raise ValueError(f"memory_mib {self.memory_mib} is invalid with cpu {self.cpu}")
        return self


class UploadCheckConfig(Frozen):
    """The upload-check Lambda, fed by a queue of the bucket's upload events."""

    max_concurrency: int = Field(
        default=5,
        ge=2,
        le=1000,
        description=(
            "Most concurrent executions the event queue may drive (the event source mapping's "
            "maximum concurrency): bounds its database connections without reserving any of "
            "the account's concurrency."
        ),
    )
    reserved_concurrency: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Reserve this much of the account's Lambda concurrency for the function. Off by "
            "default: a new account may not be allowed to reserve any (docs/operations.md)."
        ),
    )

    @model_validator(mode="after")
    def _reserved_covers_max(self) -> Self:
        if self.reserved_concurrency is not None and (
            self.reserved_concurrency < self.max_concurrency
        ):
            raise ValueError(
                f"reserved_concurrency ({self.reserved_concurrency}) must be at least "
                f"max_concurrency ({self.max_concurrency}), or events are throttled"
            )
        return self


class ApiServiceConfig(FargateServiceConfig):
    target_cpu_percent: int = Field(
        default=60, ge=10, le=90, description="API autoscaling target CPU."
    )


class WorkerServiceConfig(FargateServiceConfig):
    backlog_per_task: int = Field(
        default=10,
        ge=1,
        description="Acceptable messages (visible + in flight) per running worker task.",
    )
    concurrency: int = Field(default=8, ge=1, le=256, description="Jobs in flight per task.")


class EcsComputeConfig(Frozen):
    api: ApiServiceConfig = Field(description="The task API service.")
    worker: WorkerServiceConfig = Field(
        description="The worker service; with queues per_type, one such service per task type."
    )


class NodeGroupConfig(Frozen):
    instance_types: tuple[str, ...] = Field(min_length=1, description="EC2 instance types.")
    size: MinMax = Field(description="Node count bounds.")
    disk_gib: int = Field(default=50, ge=20, description="Encrypted root volume size.")


class GpuPoolConfig(Frozen):
    name: str = Field(pattern=r"^[a-z][a-z0-9-]{1,20}$", description="Pool name, used in labels.")
    purpose: TaskType = Field(description="The workload the pool serves.")
    instance_types: tuple[str, ...] = Field(min_length=1, description="GPU instance types.")
    spot: MinMax = Field(description="Spot node group bounds (min 0 scales from zero).")
    on_demand: MinMax = Field(description="On-Demand node group bounds.")
    disk_gib: int = Field(default=200, ge=50, description="Root volume for images and weights.")

    @model_validator(mode="after")
    def _gpu_instances(self) -> Self:
        unknown = [t for t in self.instance_types if t not in GPU_INSTANCES]
        if unknown:
            raise ValueError(
                f"instance type {unknown[0]} has no GPU or is unknown; GPU pools take one of "
                f"{', '.join(GPU_INSTANCES)}"
            )
        if len({GPU_INSTANCES[t] for t in self.instance_types}) > 1:
            raise ValueError("instance types of one pool must have the same number of GPUs")
        memory = {gpu_model(t)[1] for t in self.instance_types}
        if self.purpose is TaskType.LLM and len(memory) > 1:
            sizes = ", ".join(f"{t} {gpu_model(t)[1]} GiB" for t in self.instance_types)
            raise ValueError(
                f"instance types of an LLM pool must have one GPU memory size ({sizes}): one vLLM "
                "configuration (context length, KV cache) serves the whole pool"
            )
        return self

    @property
    def accelerator(self) -> str:
        """The `k8s.amazonaws.com/accelerator` label: the pool's GPU model(s)."""
        return "_".join(sorted({gpu_model(t)[0] for t in self.instance_types}))

    @property
    def gpus_per_node(self) -> int:
        return GPU_INSTANCES[self.instance_types[0]]


class AddonChartsConfig(Frozen):
    nvidia_device_plugin: str = Field(
        default=DEFAULT_CHARTS["nvidia_device_plugin"], description="NVIDIA device plugin chart."
    )
    cluster_autoscaler: str | None = Field(
        default=None,
        description=(
            "Cluster Autoscaler chart; None takes the release that matches the cluster's "
            "Kubernetes version (phases/eks_facts.CLUSTER_AUTOSCALER_RELEASES)."
        ),
    )
    cluster_autoscaler_image: str | None = Field(
        default=None,
        pattern=r"^v\d+\.\d+\.\d+$",
        description="Cluster Autoscaler image tag, e.g. `v1.34.2`; None: as for the chart.",
    )
    keda: str = Field(default=DEFAULT_CHARTS["keda"], description="KEDA chart.")
    metrics_server: str = Field(
        default=DEFAULT_CHARTS["metrics_server"], description="metrics-server chart."
    )
    argo_rollouts: str = Field(
        default=DEFAULT_CHARTS["argo_rollouts"], description="Argo Rollouts chart."
    )
    external_dns: str = Field(
        default=DEFAULT_CHARTS["external_dns"],
        description="ExternalDNS chart (deployed only with `edge.domain`).",
    )
    container_insights: str | None = Field(
        default=None,
        description=(
            "amazon-cloudwatch-observability EKS add-on version, e.g. `v4.1.0-eksbuild.1`; "
            "None takes EKS's default version for the cluster's Kubernetes version."
        ),
    )
    aws_load_balancer_controller: str = Field(
        default=DEFAULT_CHARTS["aws_load_balancer_controller"],
        pattern=r"^v\d+\.\d+\.\d+$",
        description="AWS Load Balancer Controller version (the CDK-maintained chart and policy).",
    )


class PodResources(Frozen):
    """Requests of one container; the memory request is also its limit (no overcommit)."""

    cpu_millicores: int = Field(ge=50, le=64000, description="CPU request in millicores.")
    memory_mib: int = Field(ge=64, le=524288, description="Memory request and limit in MiB.")


class ModelServerConfig(Frozen):
    """One vLLM server: the model it serves, from the models bucket, on one GPU."""

    model: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$",
        description=(
            "The served model name (what the worker asks for) and the key prefix of its weights "
            "in the models bucket: `s3://<models bucket>/<model>/`."
        ),
    )
    max_model_len: int | None = Field(
        default=None, ge=256, description="vLLM `--max-model-len`; None: the model's own."
    )
    gpu_memory_utilization: float = Field(
        default=0.9, ge=0.5, le=0.98, description="vLLM `--gpu-memory-utilization`."
    )
    startup_minutes: int = Field(
        default=20,
        ge=2,
        le=60,
        description="How long the server may take to sync and load its weights before it is "
        "restarted (the startupProbe's budget).",
    )
    resources: PodResources = Field(
        default=PodResources(cpu_millicores=2500, memory_mib=10240),
        description="CPU and memory of the server container (it also gets one GPU).",
    )
    extra_args: tuple[str, ...] = Field(default=(), description="More `vllm serve` flags.")


class ModelServersConfig(Frozen):
    stt: ModelServerConfig = Field(
        default=ModelServerConfig(
            model="openai/whisper-large-v3-turbo",
            resources=PodResources(cpu_millicores=2500, memory_mib=8192),
        ),
        description="Whisper on `/v1/audio/transcriptions`.",
    )
    llm: ModelServerConfig = Field(
        default=ModelServerConfig(model="meta-llama/Llama-3.1-8B-Instruct", max_model_len=8192),
        description="The summarization LLM on `/v1/chat/completions`.",
    )

    def for_type(self, task_type: TaskType) -> ModelServerConfig:
        return self.stt if task_type is TaskType.STT else self.llm


class EksConfig(Frozen):
    kubernetes_version: str = Field(
        pattern=r"^1\.\d{2}$", description="Kubernetes minor version, e.g. `1.34`."
    )
    endpoint_public: bool = Field(
        default=False, description="Expose the API server endpoint publicly."
    )
    public_access_cidrs: tuple[Cidr, ...] = Field(
        default=(), description="CIDRs allowed to the public endpoint."
    )
    admin_role_arns: tuple[RoleArn, ...] = Field(
        default=(), description="IAM roles given cluster-admin access entries."
    )
    system_nodes: NodeGroupConfig = Field(description="On-demand group for API and controllers.")
    gpu_pools: tuple[GpuPoolConfig, ...] = Field(
        min_length=1, description="GPU pools; each becomes a Spot and an On-Demand group."
    )
    api_replicas: MinMax = Field(description="API pod bounds (HPA on CPU).")
    worker_max_replicas: dict[TaskType, int] = Field(
        description="KEDA maxReplicaCount per task type."
    )
    worker_min_replicas: dict[TaskType, int] = Field(
        default_factory=dict,
        description=(
            "KEDA minReplicaCount per task type; a type not listed keeps as many pods as its "
            "pool keeps GPUs warm (Spot + On-Demand minimum), 0 when it scales from zero."
        ),
    )
    queue_length_per_replica: int = Field(
        default=5, ge=1, description="KEDA aws-sqs-queue `queueLength` target."
    )
    worker_concurrency: int = Field(
        default=8,
        ge=1,
        le=64,
        description="Jobs in flight per worker pod (its model server batches them).",
    )
    worker_resources: PodResources = Field(
        default=PodResources(cpu_millicores=500, memory_mib=1024),
        description="The worker container of each GPU pod (beside its model server).",
    )
    api_resources: PodResources = Field(
        default=PodResources(cpu_millicores=500, memory_mib=1024), description="One API pod."
    )
    api_target_cpu_percent: int = Field(
        default=60, ge=10, le=90, description="The API's HorizontalPodAutoscaler CPU target."
    )
    canary_steps: tuple[int, ...] = Field(
        default=(10, 30, 100),
        min_length=1,
        description="Canary traffic weights in percent, increasing, ending at 100.",
    )
    canary_pause_minutes: int = Field(
        default=5, ge=1, le=120, description="Pause after each canary weight below 100."
    )
    canary_max_5xx_percent: float = Field(
        default=1.0,
        gt=0,
        le=100,
        description="The canary analysis fails (abort, roll back) above this 5xx share of ALB "
        "requests in a minute.",
    )
    model_servers: ModelServersConfig = Field(
        default_factory=ModelServersConfig, description="vLLM servers of the GPU pools."
    )
    charts: AddonChartsConfig = Field(
        default_factory=AddonChartsConfig, description="Pinned add-on chart versions."
    )

    @model_validator(mode="after")
    def _kubectl_layer(self) -> Self:
        if kubectl_layer_for(self.kubernetes_version) is None:
            supported = sorted({v for vs in KUBECTL_LAYERS.values() for v in vs})
            raise ValueError(
                f"kubernetes_version {self.kubernetes_version} has no matching kubectl layer "
                f"installed; supported: {', '.join(supported)}"
            )
        return self

    @model_validator(mode="after")
    def _canary_steps(self) -> Self:
        steps = self.canary_steps
        if any(not 0 < w <= 100 for w in steps) or list(steps) != sorted(set(steps)):
            raise ValueError(f"canary_steps {list(steps)} must be increasing weights in 1..100")
        if steps[-1] != 100:
            raise ValueError(f"canary_steps {list(steps)} must end at 100")
        return self

    @model_validator(mode="after")
    def _autoscaler_release(self) -> Self:
        known = CLUSTER_AUTOSCALER_RELEASES.get(self.kubernetes_version)
        charts = self.charts
        if known is None and (
            charts.cluster_autoscaler is None or charts.cluster_autoscaler_image is None
        ):
            raise ValueError(
                f"no Cluster Autoscaler release is pinned for Kubernetes {self.kubernetes_version} "
                f"(known: {', '.join(CLUSTER_AUTOSCALER_RELEASES)}); set "
                "charts.cluster_autoscaler and charts.cluster_autoscaler_image"
            )
        return self

    @model_validator(mode="after")
    def _worker_replicas(self) -> Self:
        for task_type in TaskType:
            if not any(p.purpose is task_type for p in self.gpu_pools):
                raise ValueError(f"gpu_pools: no pool serves {task_type.value}")
            if task_type not in self.worker_max_replicas:
                raise ValueError(f"worker_max_replicas: no maximum for {task_type.value}")
        for task_type, low in self.worker_min_replicas.items():
            high = self.worker_max_replicas.get(task_type, 0)
            if low > high:
                raise ValueError(
                    f"worker_min_replicas[{task_type.value}] ({low}) exceeds "
                    f"worker_max_replicas[{task_type.value}] ({high})"
                )
        return self

    def cluster_autoscaler_release(self) -> tuple[str, str]:
        """(chart version, image tag) of Cluster Autoscaler for this cluster."""
        chart, image = CLUSTER_AUTOSCALER_RELEASES.get(self.kubernetes_version, ("", ""))
        return (
            self.charts.cluster_autoscaler or chart,
            self.charts.cluster_autoscaler_image or image,
        )

    def pool_for(self, task_type: TaskType) -> GpuPoolConfig:
        """The GPU pool that serves a task type (the first with that purpose)."""
        for pool in self.gpu_pools:
            if pool.purpose is task_type:
                return pool
        raise ValueError(f"no GPU pool serves {task_type.value}")

    def min_replicas(self, task_type: TaskType) -> int:
        """KEDA minReplicaCount: configured, else the pool's warm GPUs (capped by the max)."""
        if task_type in self.worker_min_replicas:
            return self.worker_min_replicas[task_type]
        pool = self.pool_for(task_type)
        warm = (pool.spot.min + pool.on_demand.min) * pool.gpus_per_node
        return min(warm, self.worker_max_replicas.get(task_type, 0))

    @model_validator(mode="after")
    def _public_needs_cidrs(self) -> Self:
        if self.public_access_cidrs and not self.endpoint_public:
            raise ValueError("public_access_cidrs is set but endpoint_public is false")
        if self.endpoint_public and not self.public_access_cidrs:
            raise ValueError("endpoint_public needs public_access_cidrs (no 0.0.0.0/0 default)")
        return self


class AiConfig(Frozen):
    stt_provider: Literal["transcribe", "openai"] = Field(
        description="transcribe: AWS Transcribe batch jobs; openai: self-hosted Whisper server."
    )
    llm_provider: Literal["bedrock", "openai"] = Field(
        description="bedrock: Bedrock Converse; openai: self-hosted vLLM server."
    )
    bedrock_model_ids: tuple[str, ...] = Field(
        default=("amazon.nova-lite-v1:0",),
        min_length=1,
        description="Bedrock model ids the workers may invoke (the first is used).",
    )
    managed_fallback: bool = Field(
        default=False, description="Allow Transcribe/Bedrock as overflow when self-hosting."
    )
    transcribe_language: str = Field(
        default="en-US", description="Default language code for Transcribe jobs."
    )


class DomainConfig(Frozen):
    name: str = Field(
        pattern=r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$",
        description="The API's address, e.g. `api.example.com`: the same in every phase.",
    )
    hosted_zone_id: str = Field(
        pattern=r"^Z[A-Z0-9]{1,31}$", description="Route 53 hosted zone that holds `name`."
    )
    hosted_zone_name: str = Field(
        pattern=r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$",
        description="That zone's domain, e.g. `example.com`.",
    )

    @model_validator(mode="after")
    def _name_in_zone(self) -> Self:
        if self.name != self.hosted_zone_name and not self.name.endswith(
            "." + self.hosted_zone_name
        ):
            raise ValueError(f"name {self.name} is not in zone {self.hosted_zone_name}")
        return self


class WafConfig(Frozen):
    """The AWS WAF web ACL in front of every public load balancer of the API."""

    managed_rule_groups: tuple[str, ...] = Field(
        default=(
            "AWSManagedRulesCommonRuleSet",
            "AWSManagedRulesKnownBadInputsRuleSet",
            "AWSManagedRulesAmazonIpReputationList",
        ),
        min_length=1,
        description="AWS managed rule groups, in priority order.",
    )
    count_only_rules: tuple[str, ...] = Field(
        default=("SizeRestrictions_BODY",),
        description=(
            "Rules of those groups that only count: `SizeRestrictions_BODY` blocks any body "
            "over 8 KB, which would refuse every multipart audio upload."
        ),
    )
    rate_limit_per_ip: int = Field(
        default=3000,
        ge=10,
        le=2_000_000_000,
        description=(
            "Requests one client IP may send in 5 minutes before WAF blocks it (the API's own "
            "per-key token bucket works behind this)."
        ),
    )
    log_retention_days: int = Field(default=90, ge=1, description="Days to keep WAF logs.")


class EdgeConfig(Frozen):
    """What clients reach, the same whatever the phase (the Edge stack and the load balancers)."""

    domain: DomainConfig | None = Field(
        default=None,
        description=(
            "A stable address for the API: weighted records in the zone point at the compute "
            "serving it, so clients keep it across phases. Without it the address is the load "
            "balancer's own DNS name, which changes when the compute changes."
        ),
    )
    certificate_arn: str | None = Field(
        default=None,
        pattern=r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[0-9a-f-]+$",
        description=(
            "ACM certificate for HTTPS. With `domain` and no certificate, the Edge stack "
            "requests one for the domain, validated through the hosted zone."
        ),
    )
    waf: WafConfig = Field(default_factory=WafConfig, description="The web ACL.")
    plain_http: bool = Field(
        default=False,
        description=(
            "Serve the API over plain HTTP (API keys in clear text): an explicit opt-out for a "
            "staging environment without a certificate; a certificate or domain wins over it. "
            "Prod cannot opt out."
        ),
    )

    @property
    def https(self) -> bool:
        return self.certificate_arn is not None or self.domain is not None


TRANSITION_STEPS = ("expand", "cutover", "retire")


class TransitionConfig(Frozen):
    """Where an environment is in a switch between computes (docs/phase-switch.md)."""

    from_phase: Phase = Field(description="The phase the environment is leaving.")
    step: Literal["expand", "cutover", "retire"] = Field(
        description=(
            "expand: the new compute and its queues run beside the old, which serves all work; "
            "cutover: new work and `traffic_percent` of the API traffic go to the new compute, "
            "the old drains its queues; retire: the old compute is gone (its stack deleted "
            "first), its drained queues stay unread until the next deploy removes them."
        )
    )
    traffic_percent: int = Field(
        default=100,
        ge=0,
        le=100,
        description="At cutover: the share of API traffic the new compute gets (weighted DNS).",
    )
    from_queue_mode: Literal["single", "per_type"] = Field(
        default="single",
        description="The queue layout of the phase being left (set by the loader from it).",
    )
    from_ai: AiConfig | None = Field(
        default=None,
        description="The AI providers of the phase being left (set by the loader from it).",
    )


class QuotaConfig(Frozen):
    """Per-tenant limits on task creation (429 with Retry-After beyond them); `python -m
    aipp.admin set-quota` overrides them for one tenant."""

    tasks_in_flight: int = Field(
        default=100, ge=1, description="Tasks of one tenant not yet completed or failed."
    )
    tasks_per_day: int = Field(
        default=10_000, ge=1, description="Tasks one tenant may create per UTC day."
    )


class WebhookConfig(Frozen):
    url: str = Field(
        pattern=r"^https://[^\s/$.?#].[^\s]*$",
        description="HTTPS endpoint the workers POST to when a task completes or fails.",
    )


class ObservabilityConfig(Frozen):
    log_retention_days: Literal[1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731] = (
        Field(description="Application log retention (a CloudWatch Logs retention value).")
    )
    alarm_email: str | None = Field(
        default=None,
        pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
        description="Address subscribed to the alarm topic.",
    )
    alarms_notify_nobody: bool = Field(
        default=False,
        description=(
            "Deploy prod with alarms that reach no one (no `alarm_email`); an explicit opt-out "
            "for teams that subscribe to the alarm topic outside this app."
        ),
    )
    queue_age_alarm_seconds: int = Field(
        ge=60, description="Alarm when the oldest queued message is older than this."
    )
    dlq_alarm_messages: int = Field(
        default=1, ge=1, description="Alarm when the DLQ holds at least this many messages."
    )
    api_5xx_alarm_count: int = Field(ge=1, description="Alarm on this many 5xx in 5 minutes.")
    api_p99_latency_alarm_ms: int = Field(ge=50, description="Alarm on API p99 latency.")
    worker_error_alarm_lines: int = Field(
        default=5, ge=1, description="Alarm on this many worker error log lines in 5 minutes."
    )
    rds_cpu_alarm_percent: int = Field(default=80, ge=10, le=100, description="RDS CPU alarm.")


class PhaseConfig(Frozen):
    """Everything one `cdk synth` needs, built once in app.py and passed down."""

    phase: Phase = Field(description="Which phase of the platform this deployment is.")
    env: Env = Field(description="The environment.")
    project: str = Field(
        default="aipp",
        pattern=r"^[a-z][a-z0-9-]{1,15}$",
        description="Prefix of stack names and resource tags.",
    )
    account: str | None = Field(
        default=None,
        pattern=r"^\d{12}$",
        description="Target AWS account; None keeps the stacks environment-agnostic.",
    )
    region: str | None = Field(
        default=None,
        pattern=r"^[a-z]{2}(-gov)?-[a-z]+-\d$",
        description="Target AWS region; None keeps the stacks environment-agnostic.",
    )
    compute: Literal["ecs", "eks"] = Field(description="ECS Fargate (phase 1) or EKS.")
    network: NetworkConfig = Field(description="VPC layout.")
    bucket: BucketConfig = Field(description="The audio bucket.")
    database: DatabaseConfig = Field(description="Task state database.")
    cache: CacheConfig = Field(description="Redis: results, idempotency locks, rate limits.")
    queues: QueueConfig = Field(description="SQS queues and their DLQs.")
    ecs: EcsComputeConfig | None = Field(default=None, description="Fargate services (ecs).")
    eks: EksConfig | None = Field(default=None, description="EKS cluster and pools (eks).")
    ai: AiConfig = Field(description="Speech-to-text and LLM providers.")
    edge: EdgeConfig = Field(
        default_factory=EdgeConfig, description="The API's address and certificate."
    )
    transition: TransitionConfig | None = Field(
        default=None,
        description="Set while the environment moves between ECS and EKS; None otherwise.",
    )
    upload_check: UploadCheckConfig = Field(
        default_factory=UploadCheckConfig, description="The upload-check Lambda."
    )
    quotas: QuotaConfig = Field(
        default_factory=QuotaConfig, description="Per-tenant limits on task creation."
    )
    webhook: WebhookConfig | None = Field(
        default=None,
        description="Optional completion webhook, HMAC-SHA256 signed (key in Secrets Manager).",
    )
    observability: ObservabilityConfig = Field(description="Logs, dashboard and alarms.")

    @model_validator(mode="after")
    def _zones_in_region(self) -> Self:
        zones = self.network.availability_zones
        if not zones:
            return self
        if self.region is None:
            raise ValueError("network.availability_zones needs `region` to be set")
        wrong = [z for z in zones if not z.startswith(self.region)]
        if wrong:
            raise ValueError(f"network.availability_zones: {wrong[0]} is not in {self.region}")
        if len(zones) < self.network.max_azs:
            raise ValueError(
                f"network.availability_zones names {len(zones)} AZs but max_azs is "
                f"{self.network.max_azs}"
            )
        return self

    @model_validator(mode="after")
    def _compute_matches(self) -> Self:
        for compute in self.computes:
            if getattr(self, compute) is None:
                raise ValueError(f"compute '{compute}' needs the `{compute}` section")
        return self

    @model_validator(mode="after")
    def _transition_changes_compute(self) -> Self:
        t = self.transition
        if t is None:
            return self
        if t.from_phase == self.phase:
            raise ValueError(f"transition.from_phase: already phase {int(self.phase)}")
        if self.compute_of(t.from_phase) == self.compute:
            raise ValueError(
                f"transition: phases {int(t.from_phase)} and {int(self.phase)} run on the same "
                f"compute ({self.compute}); deploy phase {int(self.phase)} directly"
            )
        if t.step == "expand" and t.traffic_percent != 100:
            raise ValueError("transition.traffic_percent applies at step 'cutover' only")
        return self

    @model_validator(mode="after")
    def _https_unless_staging_opts_out(self) -> Self:
        edge = self.edge
        if self.is_prod and not edge.https:
            raise ValueError(
                "edge: prod serves the API over HTTPS only; set edge.domain or "
                "edge.certificate_arn (config/prod.example.json shows both)"
            )
        if not edge.https and not edge.plain_http:
            raise ValueError(
                "edge: set edge.domain or edge.certificate_arn for HTTPS, or edge.plain_http=true "
                "to serve plain HTTP (staging only)"
            )
        return self

    @model_validator(mode="after")
    def _eks_workers_have_their_own_queues(self) -> Self:
        if "eks" in self.computes and self.queue_mode_of("eks") != "per_type":
            raise ValueError(
                "queues.mode: EKS workers need one queue per task type (per_type): each type's "
                "pods run on their own GPU pool and scale on their own queue"
            )
        return self

    @model_validator(mode="after")
    def _prod_alarms_reach_someone(self) -> Self:
        obs = self.observability
        if self.is_prod and not obs.alarm_email and not obs.alarms_notify_nobody:
            raise ValueError(
                "observability.alarm_email: prod alarms must reach someone; set an address, or "
                "observability.alarms_notify_nobody=true if you subscribe to the topic elsewhere"
            )
        return self

    @model_validator(mode="after")
    def _connections_fit_database(self) -> Self:
        limit = self.database.connection_limit()
        if limit is None:
            raise ValueError(
                f"database.max_connections: the connection budget cannot be checked for "
                f"instance class {self.database.instance_class}; set database.max_connections"
            )
        users = self.connection_users()
        total = sum(count * pool for _, count, pool in users)
        if total > limit:
            parts = " + ".join(f"{what} {count} x {pool}" for what, count, pool in users)
            raise ValueError(
                f"database connections: {parts} = {total} exceed {limit} "
                f"({100 - self.database.connection_headroom_percent}% of max_connections on "
                f"{self.database.instance_class}); lower the maxima or database.pools, or "
                "choose a larger database.instance_class"
            )
        return self

    def connection_users(self) -> list[tuple[str, int, int]]:
        """(who, most processes, pool per process) for everything that connects to the DB."""
        pools = self.database.pools
        users: list[tuple[str, int, int]] = []
        if self.ecs is not None and "ecs" in self.computes:
            services = 1 if self.queue_mode_of("ecs") == "single" else len(self.task_types)
            users += [
                ("api tasks", self.ecs.api.count.max, pools.api),
                ("worker tasks", services * self.ecs.worker.count.max, pools.worker),
            ]
        if self.eks is not None and "eks" in self.computes:
            users += [
                ("api pods", self.eks.api_replicas.max, pools.api),
                ("worker pods", sum(self.eks.worker_max_replicas.values()), pools.worker),
            ]
        users += [
            ("upload checks", self.upload_check.max_concurrency, pools.upload_check),
            ("migration", 1, pools.migration),
            ("secret rotation", 2, 1),  # master and application secrets
        ]
        return users

    @property
    def stack_prefix(self) -> str:
        """`Aipp-Staging`: stacks are named by project and environment, never by phase, so one
        environment keeps its stacks (and what they hold) as it grows."""
        return f"{self.project.capitalize()}-{self.env.value.capitalize()}"

    @property
    def name_prefix(self) -> str:
        """`aipp-staging`: the start of every physical name the platform chooses."""
        return f"{self.project}-{self.env.value}"

    @staticmethod
    def compute_of(phase: Phase) -> Literal["ecs", "eks"]:
        return "ecs" if phase is Phase.MVP else "eks"

    @property
    def computes(self) -> tuple[Literal["ecs", "eks"], ...]:
        """The computes deployed: both while a transition expands and cuts over."""
        t = self.transition
        if t is not None and t.step in ("expand", "cutover"):
            return (self.compute_of(t.from_phase), self.compute)
        return (self.compute,)

    @property
    def queue_modes(self) -> tuple[Literal["single", "per_type"], ...]:
        """The queue layouts deployed: the old one stays until the step after `retire`."""
        t = self.transition
        if t is None or t.from_queue_mode == self.queues.mode:
            return (self.queues.mode,)
        return (t.from_queue_mode, self.queues.mode)

    @property
    def serving_queue_mode(self) -> Literal["single", "per_type"]:
        """The layout new work is sent to: the old one until cutover."""
        t = self.transition
        return t.from_queue_mode if t is not None and t.step == "expand" else self.queues.mode

    def queue_mode_of(self, compute: str) -> Literal["single", "per_type"]:
        """The layout a compute's workers consume."""
        t = self.transition
        return self.queues.mode if compute == self.compute or t is None else t.from_queue_mode

    def ai_for(self, compute: str) -> AiConfig:
        """The AI providers a compute's workers use: the old compute keeps its phase's."""
        t = self.transition
        if compute == self.compute or t is None or t.from_ai is None:
            return self.ai
        return t.from_ai

    def traffic_percent(self, compute: str) -> int:
        """The share of API traffic a compute's load balancer gets (weighted DNS records)."""
        t = self.transition
        if t is None or t.step == "retire":
            new = 100
        else:
            new = 0 if t.step == "expand" else t.traffic_percent
        return new if compute == self.compute else 100 - new

    @property
    def task_types(self) -> tuple[TaskType, ...]:
        return (TaskType.STT, TaskType.LLM)

    @property
    def is_prod(self) -> bool:
        return self.env is Env.PROD
