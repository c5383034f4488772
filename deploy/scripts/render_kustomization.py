#!/usr/bin/env python3
"""Render a kustomization that uses only `resources` (plain files) and `labels`, without kustomize.

Used by deploy/verify.sh when `kubectl` is not installed (kustomize is not packaged for Debian).
It refuses every other kustomization field, a resource that is a directory or URL, `commonLabels`
and `labels` with `includeSelectors: true`: those change kind-specific fields (selectors, name
prefixes, patches) that a file concatenation cannot reproduce faithfully, so rendering them here
would validate something other than what `kubectl apply -k` applies.

Usage: render_kustomization.py <dir containing kustomization.yaml>   (YAML stream on stdout)
"""

import os
import sys

import yaml

ALLOWED_FIELDS = {"apiVersion", "kind", "resources", "labels"}
ALLOWED_LABEL_FIELDS = {"pairs", "includeSelectors", "includeTemplates"}
POD_TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


class Unsupported(Exception):
    """The kustomization uses something this renderer does not reproduce."""


def load_kustomization(directory):
    for name in ("kustomization.yaml", "kustomization.yml", "Kustomization"):
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as handle:
                return yaml.safe_load(handle) or {}
    raise Unsupported(f"no kustomization.yaml in {directory}")


def label_sets(kustomization):
    sets = []
    for entry in kustomization.get("labels") or []:
        unknown = set(entry) - ALLOWED_LABEL_FIELDS
        if unknown:
            raise Unsupported(f"labels entry uses {sorted(unknown)}")
        if entry.get("includeSelectors"):
            raise Unsupported("labels with includeSelectors: true (selector paths are kind-specific)")
        sets.append((dict(entry.get("pairs") or {}), bool(entry.get("includeTemplates"))))
    return sets


def apply_labels(document, labels, include_templates):
    metadata = document.setdefault("metadata", {})
    metadata.setdefault("labels", {}).update(labels)
    if include_templates and document.get("kind") in POD_TEMPLATE_KINDS:
        template = document.setdefault("spec", {}).setdefault("template", {})
        template.setdefault("metadata", {}).setdefault("labels", {}).update(labels)


def render(directory):
    kustomization = load_kustomization(directory)
    unknown = set(kustomization) - ALLOWED_FIELDS
    if unknown:
        raise Unsupported(f"kustomization field(s) {sorted(unknown)} need real kustomize (kubectl kustomize)")
    labels = label_sets(kustomization)
    documents = []
    for resource in kustomization.get("resources") or []:
        path = os.path.join(directory, resource)
        if "://" in resource or not os.path.isfile(path):
            raise Unsupported(f"resource {resource!r} is not a file in {directory}")
        with open(path, encoding="utf-8") as handle:
            for document in yaml.safe_load_all(handle):
                if document is None:
                    continue
                for pairs, include_templates in labels:
                    apply_labels(document, pairs, include_templates)
                documents.append(document)
    if not documents:
        raise Unsupported(f"{directory} renders no resources")
    return documents


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    try:
        documents = render(argv[1])
    except Unsupported as error:
        print(f"render_kustomization: unsupported: {error}", file=sys.stderr)
        return 1
    yaml.safe_dump_all(documents, sys.stdout, sort_keys=False, explicit_start=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
