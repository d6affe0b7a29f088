"""Deployment helpers: SageMaker endpoints (sagemaker.py) and Kubernetes manifests (k8s/)."""
