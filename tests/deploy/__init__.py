"""Deployment tests: Helm chart, Kustomize, Dockerfile, Prefect deployments, checkov
(marker ``deploy``)."""
