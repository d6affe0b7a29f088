"""Scale-out on engines users already run: the SageMaker deploy script against moto's
SageMaker and Application Auto Scaling, and the Kubernetes manifests against the API
schemas."""

from pathlib import Path

import boto3
import kubernetes_validate
import pytest
import yaml
from botocore.awsrequest import AWSResponse
from moto import mock_aws
from support import ROOT

from app.settings import Settings
from deploy.sagemaker import EndpointSpec, deploy

K8S = ROOT / "deploy" / "k8s"


@pytest.fixture
def aws(monkeypatch):
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield boto3.client("sagemaker"), boto3.client("application-autoscaling")


SPEC = EndpointSpec(
    name="rotifer-counter",
    image_uri="123456789012.dkr.ecr.eu-west-1.amazonaws.com/darknet-service:1",
    model_s3_uri="s3://lab-models/rotifers/",
    role_arn="arn:aws:iam::123456789012:role/SageMakerRole",
    instance_type="ml.g4dn.xlarge",
    min_instances=1,
    max_instances=4,
    invocations_per_instance=150,
)


def test_deploy_creates_model_config_endpoint_and_autoscaling(aws):
    sagemaker, autoscaling = aws
    assert deploy(SPEC, sagemaker, autoscaling) == "created"
    endpoint = sagemaker.describe_endpoint(EndpointName="rotifer-counter")
    config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    (variant,) = config["ProductionVariants"]
    assert (variant["VariantName"], variant["InstanceType"], variant["InitialInstanceCount"]) == (
        "AllTraffic",
        "ml.g4dn.xlarge",
        1,
    )
    model = sagemaker.describe_model(ModelName=variant["ModelName"])
    assert model["PrimaryContainer"]["Image"] == SPEC.image_uri
    assert model["PrimaryContainer"]["Environment"] == {"MODEL_S3_URI": "s3://lab-models/rotifers/"}
    assert model["ExecutionRoleArn"] == SPEC.role_arn

    (target,) = autoscaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    assert target["ResourceId"] == "endpoint/rotifer-counter/variant/AllTraffic"
    assert (target["MinCapacity"], target["MaxCapacity"]) == (1, 4)
    (policy,) = autoscaling.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]
    tracking = policy["TargetTrackingScalingPolicyConfiguration"]
    assert policy["PolicyType"] == "TargetTrackingScaling" and tracking["TargetValue"] == 150
    assert tracking["PredefinedMetricSpecification"]["PredefinedMetricType"] == "SageMakerVariantInvocationsPerInstance"


def test_rerun_is_idempotent_and_a_new_image_rolls_over(aws):
    sagemaker, autoscaling = aws
    calls = []

    def record(params, model, **_):
        calls.append((model.name, dict(params)))

    def answer_update(model, **_):  # moto 5 has no UpdateEndpoint: answer as SageMaker does
        arn = "arn:aws:sagemaker:eu-west-1:123456789012:endpoint/rotifer-counter"
        return AWSResponse("https://sagemaker", 200, {}, None), {"EndpointArn": arn}

    sagemaker.meta.events.register("provide-client-params.sagemaker.*", record)
    sagemaker.meta.events.register("before-call.sagemaker.UpdateEndpoint", answer_update)
    deploy(SPEC, sagemaker, autoscaling)
    first = sagemaker.describe_endpoint(EndpointName="rotifer-counter")["EndpointConfigName"]
    calls.clear()
    assert deploy(SPEC, sagemaker, autoscaling) == "unchanged"
    assert [name for name, _ in calls if not name.startswith("Describe")] == []  # nothing created twice

    newer = EndpointSpec(**{**SPEC.__dict__, "image_uri": SPEC.image_uri.replace(":1", ":2"), "max_instances": 6})
    assert deploy(newer, sagemaker, autoscaling) == "updated"
    changes = [(name, params) for name, params in calls if not name.startswith("Describe")]
    assert [name for name, _ in changes] == ["CreateModel", "CreateEndpointConfig", "UpdateEndpoint"]
    config_name = changes[1][1]["EndpointConfigName"]
    assert config_name != first
    assert changes[2][1] == {"EndpointName": "rotifer-counter", "EndpointConfigName": config_name}
    assert changes[0][1]["PrimaryContainer"]["Image"].endswith(":2")
    (target,) = autoscaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    assert target["MaxCapacity"] == 6
    assert len(autoscaling.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]) == 1


@pytest.mark.parametrize("manifest", sorted(K8S.glob("*.yaml")), ids=lambda p: p.name)
def test_kubernetes_manifests_are_valid(manifest: Path):
    for document in yaml.safe_load_all(manifest.read_text()):
        kubernetes_validate.validate(document, "1.30", strict=True)


def test_deployment_fits_the_service():
    deployment = yaml.safe_load((K8S / "deployment.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["readinessProbe"]["httpGet"]["path"] == "/ping"
    assert container["livenessProbe"]["httpGet"]["path"] == "/ping"
    assert container["ports"][0]["containerPort"] == 8080
    assert pod["terminationGracePeriodSeconds"] > Settings.timeout_s  # gunicorn's TIMEOUT default
    assert pod["securityContext"]["runAsNonRoot"] is True
    hpa = yaml.safe_load((K8S / "hpa.yaml").read_text())
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"] >= 1
