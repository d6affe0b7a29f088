#!/usr/bin/env python3
"""Create or update a SageMaker real-time endpoint for the service, with autoscaling.

  python -m deploy.sagemaker --name rotifer-counter \\
      --image-uri ACCOUNT.dkr.ecr.REGION.amazonaws.com/darknet-service:1 \\
      --model-s3-uri s3://bucket/models/rotifers/ --role-arn arn:aws:iam::ACCOUNT:role/SageMakerRole \\
      [--instance-type ml.g4dn.xlarge] [--min-instances 1] [--max-instances 4] [--invocations-per-instance 200]

The container fetches the model itself (MODEL_S3_URI). Model and endpoint-config
names carry a hash of what they describe, so a rerun with the same arguments changes
nothing, and a rerun with a new image or model rolls the endpoint over to a new config
(update_endpoint) instead of failing on names that exist.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import asdict, dataclass

import boto3
from botocore.exceptions import ClientError

VARIANT = "AllTraffic"


@dataclass(frozen=True)
class EndpointSpec:
    name: str
    image_uri: str
    model_s3_uri: str
    role_arn: str
    instance_type: str = "ml.g4dn.xlarge"
    min_instances: int = 1
    max_instances: int = 4
    invocations_per_instance: float = 200.0  # per minute, the target the scaling tracks
    environment: tuple[tuple[str, str], ...] = ()

    @property
    def version(self) -> str:
        described = {k: v for k, v in asdict(self).items() if k not in ("min_instances", "max_instances")}
        return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:10]


def deploy(spec: EndpointSpec, sagemaker=None, autoscaling=None) -> str:
    """Returns "created", "updated" or "unchanged"."""
    sagemaker = sagemaker or boto3.client("sagemaker")
    autoscaling = autoscaling or boto3.client("application-autoscaling")
    model_name = f"{spec.name}-{spec.version}"
    config_name = f"{spec.name}-{spec.version}"
    if not _exists(sagemaker.describe_model, ModelName=model_name):
        sagemaker.create_model(
            ModelName=model_name,
            ExecutionRoleArn=spec.role_arn,
            PrimaryContainer={
                "Image": spec.image_uri,
                "Environment": {"MODEL_S3_URI": spec.model_s3_uri, **dict(spec.environment)},
            },
        )
    if not _exists(sagemaker.describe_endpoint_config, EndpointConfigName=config_name):
        sagemaker.create_endpoint_config(
            EndpointConfigName=config_name,
            ProductionVariants=[
                {
                    "VariantName": VARIANT,
                    "ModelName": model_name,
                    "InstanceType": spec.instance_type,
                    "InitialInstanceCount": spec.min_instances,
                }
            ],
        )
    endpoint = _exists(sagemaker.describe_endpoint, EndpointName=spec.name)
    if endpoint is None:
        sagemaker.create_endpoint(EndpointName=spec.name, EndpointConfigName=config_name)
        outcome = "created"
    elif endpoint["EndpointConfigName"] != config_name:
        sagemaker.update_endpoint(EndpointName=spec.name, EndpointConfigName=config_name)
        outcome = "updated"
    else:
        outcome = "unchanged"
    register_autoscaling(spec, autoscaling)
    return outcome


def register_autoscaling(spec: EndpointSpec, autoscaling) -> None:
    """Target tracking on invocations per instance: register and put are idempotent."""
    resource_id = f"endpoint/{spec.name}/variant/{VARIANT}"
    autoscaling.register_scalable_target(
        ServiceNamespace="sagemaker",
        ResourceId=resource_id,
        ScalableDimension="sagemaker:variant:DesiredInstanceCount",
        MinCapacity=spec.min_instances,
        MaxCapacity=spec.max_instances,
    )
    autoscaling.put_scaling_policy(
        PolicyName=f"{spec.name}-invocations-per-instance",
        ServiceNamespace="sagemaker",
        ResourceId=resource_id,
        ScalableDimension="sagemaker:variant:DesiredInstanceCount",
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": spec.invocations_per_instance,
            "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
            "ScaleInCooldown": 300,  # scale in slowly: a new instance takes minutes to serve
            "ScaleOutCooldown": 60,
        },
    )


def _exists(describe, **name):
    try:
        return describe(**name)
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("ValidationException", "ResourceNotFound"):
            return None
        raise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--image-uri", required=True)
    parser.add_argument("--model-s3-uri", required=True)
    parser.add_argument("--role-arn", required=True)
    parser.add_argument("--instance-type", default=EndpointSpec.instance_type)
    parser.add_argument("--min-instances", type=int, default=EndpointSpec.min_instances)
    parser.add_argument("--max-instances", type=int, default=EndpointSpec.max_instances)
    parser.add_argument("--invocations-per-instance", type=float, default=EndpointSpec.invocations_per_instance)
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="container variable")
    args = parser.parse_args()
    if args.min_instances < 1 or args.max_instances < args.min_instances:
        parser.error("need 1 <= --min-instances <= --max-instances")
    if any("=" not in item for item in args.env):
        parser.error("--env takes KEY=VALUE")
    spec = EndpointSpec(
        name=args.name,
        image_uri=args.image_uri,
        model_s3_uri=args.model_s3_uri,
        role_arn=args.role_arn,
        instance_type=args.instance_type,
        min_instances=args.min_instances,
        max_instances=args.max_instances,
        invocations_per_instance=args.invocations_per_instance,
        environment=tuple(tuple(item.split("=", 1)) for item in args.env),
    )
    print(f"endpoint {spec.name}: {deploy(spec)}")


if __name__ == "__main__":
    main()
