#!/usr/bin/env python3
"""Cross-checks the Kubernetes manifests, which schema validation cannot:
selectors match the pod labels, named ports exist, the HPA scales the
Deployment, the ServiceMonitor finds the metrics Service and yields the job
label the alert rules expect, referenced ConfigMaps and claims exist.

usage: k8s_consistency.py RENDERED.yaml [POLICY_OUT]
Writes the ConfigMap's policy.yaml to POLICY_OUT (for `bccguard check`).
"""
import sys

import yaml

JOB = "bccguard"  # deploy/prometheus/alerts.yml: up{job="bccguard"}

problems = []


def check(ok, message):
    if not ok:
        problems.append(message)


def subset(small, big):
    return all(big.get(k) == v for k, v in (small or {}).items())


docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
by_kind = {}
for d in docs:
    by_kind.setdefault(d["kind"], []).append(d)

(deploy,) = by_kind["Deployment"]
pod = deploy["spec"]["template"]
labels = pod["metadata"]["labels"]
check(subset(deploy["spec"]["selector"]["matchLabels"], labels),
      "Deployment selector does not match its pod labels")
check(deploy["spec"]["replicas"] >= 2, "fewer than 2 replicas")
(container,) = pod["spec"]["containers"]
ports = {p["name"] for p in container["ports"]}

for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
    probe = container.get(kind)
    check(probe is not None, f"container has no {kind}")
    if probe:
        handler = probe.get("httpGet") or probe.get("tcpSocket")
        check(handler["port"] in ports, f"{kind} uses unknown port {handler['port']}")
check(container["readinessProbe"]["httpGet"]["path"] == "/readyz", "readiness is not /readyz")
check(container["livenessProbe"]["httpGet"]["path"] == "/healthz", "liveness is not /healthz")
check("preStop" in container.get("lifecycle", {}), "no preStop drain delay")

services = by_kind.get("Service", [])
for s in services:
    name = s["metadata"]["name"]
    check(subset(s["spec"]["selector"], labels), f"Service {name} selects no pod")
    for p in s["spec"]["ports"]:
        check(p["targetPort"] in ports, f"Service {name} targets unknown port {p['targetPort']}")
check(any(s["spec"].get("type") == "LoadBalancer" for s in services), "no LoadBalancer Service")

for pdb in by_kind.get("PodDisruptionBudget", []):
    check(subset(pdb["spec"]["selector"]["matchLabels"], labels), "PDB selects no pod")
check("PodDisruptionBudget" in by_kind, "no PodDisruptionBudget")

for hpa in by_kind.get("HorizontalPodAutoscaler", []):
    ref = hpa["spec"]["scaleTargetRef"]
    check(ref["kind"] == "Deployment" and ref["name"] == deploy["metadata"]["name"],
          "HPA does not scale the Deployment")
    check(hpa["spec"]["minReplicas"] >= 2, "HPA may scale below 2")
check("HorizontalPodAutoscaler" in by_kind, "no HorizontalPodAutoscaler")

for sm in by_kind.get("ServiceMonitor", []):
    sel = sm["spec"]["selector"]["matchLabels"]
    hits = [s for s in services if subset(sel, s["metadata"].get("labels", {}))]
    check(len(hits) == 1, f"ServiceMonitor selects {len(hits)} Services, expected 1")
    for s in hits:
        names = {p["name"] for p in s["spec"]["ports"]}
        for ep in sm["spec"]["endpoints"]:
            check(ep["port"] in names, f"ServiceMonitor port {ep['port']} not on {s['metadata']['name']}")
        job = s["metadata"]["labels"].get(sm["spec"].get("jobLabel", ""), s["metadata"]["name"])
        check(job == JOB, f"scrape job would be {job!r}, the alerts expect {JOB!r}")
check("ServiceMonitor" in by_kind, "no ServiceMonitor")

configmaps = {c["metadata"]["name"]: c for c in by_kind.get("ConfigMap", [])}
claims = {c["metadata"]["name"] for c in by_kind.get("PersistentVolumeClaim", [])}
policy = None
for v in pod["spec"].get("volumes", []):
    if "configMap" in v:
        cm = configmaps.get(v["configMap"]["name"])
        check(cm is not None, f"volume {v['name']}: no ConfigMap {v['configMap']['name']}")
        if cm:
            policy = cm["data"].get("policy.yaml")
            check(policy is not None, "the ConfigMap has no policy.yaml")
    if "persistentVolumeClaim" in v:
        check(v["persistentVolumeClaim"]["claimName"] in claims,
              f"volume {v['name']}: no PersistentVolumeClaim")
mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
check(mounts.get("policy") == "/etc/bccguard", "policy.yaml is not mounted at /etc/bccguard")
check("/etc/bccguard/policy.yaml" in container["args"], "the guard is not started on the mounted policy")

if policy is not None and len(sys.argv) > 2:
    with open(sys.argv[2], "w") as f:
        f.write(policy)

for p in problems:
    print(f"k8s consistency: {p}", file=sys.stderr)
print(f"k8s consistency: {len(docs)} documents, {len(problems)} problem(s)")
sys.exit(1 if problems else 0)
