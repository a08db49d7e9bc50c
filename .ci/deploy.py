#!/usr/bin/env python3
"""Deployment files: the compose file parses and hangs together, and every
Kubernetes manifest validates against the Kubernetes API schemas.

Run with a Python that has PyYAML and kubernetes-validate (`.ci/run` makes
one under target/). Neither Docker nor a Kubernetes cluster is needed.
"""
import os
import subprocess
import sys

import yaml

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
COMPOSE = os.path.join(ROOT, "deploy", "compose.yaml")
KUBERNETES = os.path.join(ROOT, "deploy", "kubernetes")


def check_compose(problems):
    with open(COMPOSE) as f:
        compose = yaml.safe_load(f)
    services = compose.get("services") or {}
    if not services:
        problems.append("compose.yaml: no services")
    for name, service in services.items():
        for needed in ("build", "command", "volumes"):
            if needed not in service:
                problems.append(f"compose.yaml: service {name} has no {needed}")
        for other in service.get("depends_on") or {}:
            if other not in services:
                problems.append(f"compose.yaml: {name} depends on unknown service {other}")
        for secret in service.get("secrets") or []:
            if secret not in (compose.get("secrets") or {}):
                problems.append(f"compose.yaml: {name} uses undeclared secret {secret}")


def kubernetes_resources(problems):
    """The manifests kustomization.yaml lists; every other YAML file there
    must be listed too, so nothing goes unvalidated or unapplied."""
    with open(os.path.join(KUBERNETES, "kustomization.yaml")) as f:
        kustomization = yaml.safe_load(f)
    listed = kustomization.get("resources") or []
    present = sorted(
        name for name in os.listdir(KUBERNETES)
        if name.endswith((".yaml", ".yml")) and name != "kustomization.yaml"
    )
    for name in listed:
        if name not in present:
            problems.append(f"kustomization.yaml lists {name}, which does not exist")
    for name in present:
        if name not in listed:
            problems.append(f"deploy/kubernetes/{name} is not in kustomization.yaml")
    return [os.path.join(KUBERNETES, name) for name in listed if name in present]


def main():
    problems = []
    check_compose(problems)
    manifests = kubernetes_resources(problems)
    validate = os.path.join(os.path.dirname(sys.executable), "kubernetes-validate")
    result = subprocess.run([validate, "--strict", "--quiet", *manifests])
    if result.returncode != 0:
        problems.append("kubernetes-validate rejected a manifest (above)")
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        sys.exit(1)
    print(f"deploy: compose.yaml and {len(manifests)} Kubernetes manifests are valid")


if __name__ == "__main__":
    main()
