#!/usr/bin/env python3
"""podman-variant.py — turn rendered Kubernetes manifests into what `podman kube play` (4.3)
can run on one machine, changing as little as possible, and say what it changed.

usage: kubectl kustomize DIR | podman-variant.py --out DIR --publish SERVICE=PORT [--nginx-image IMG]

podman 4.3's `kube play` runs Pods, Deployments (every replica, as pods <name>-pod-<i>),
PersistentVolumeClaims (named volumes), ConfigMaps and Secrets; it skips the other kinds
without a word. On a podman network a pod is reachable by its own name, not by a Service's.
So, for each kind in the input:

  Deployment, ConfigMap, PVC   played as they are (the PVCs from volumes.yaml), but for
                               `ports`: podman 4.3 publishes every containerPort on the host
                               (0.0.0.0, hostPort defaulting to containerPort), so three
                               replicas would collide on one host port and the database would
                               be open to the network. The variant drops
                               `ports` (pods reach each other over the podman network anyway)
                               and writes named probe ports as numbers.
  Secret                       a podman secret, created by the caller from secrets/<name>.json:
                               `kube play` of a Secret stores the values still base64-encoded
                               and mounts them so (podman 4.3 bug), so the file holds them
                               decoded, in the form the secret volume code reads back
  StatefulSet (1 replica)      a Pod named after the headless Service that governs it (the
                               name clients use), its volumeClaimTemplates as PVCs named as
                               Kubernetes names them (<template>-<statefulset>-0)
  emptyDir volumes             named <pod>-<volume>: podman 4.3 makes each a named volume called
                               just <volume> ("tmp", "run"), shared by every pod that has one of
                               that name and left behind by `kube down`
  Service, headless            nothing more: the pod above answers to its name
  Service selecting a          an nginx pod named after the Service that spreads requests over
    Deployment                 the Deployment's pods (kube-proxy's part), published on
                               127.0.0.1:PORT when --publish names the Service
  CronJob                      jobs/<name>.yaml: the job template's pod (with the ConfigMaps it
                               needs), to run once as `kubectl create job --from=cronjob/<name>`
  PodDisruptionBudget, ...     not playable: listed in report.txt (schema-validated only)

Writes DIR/volumes.yaml (the PVCs: play it once; a second `kube play` of a PVC whose volume
exists fails, and a pod's claim of a missing one creates it), DIR/stack.yaml (the rest),
DIR/secrets/*.json, DIR/jobs/*.yaml and DIR/report.txt.
"""

import argparse
import base64
import copy
import json
import os
import sys

import yaml


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--publish", action="append", default=[], help="SERVICE=PORT on 127.0.0.1")
    ap.add_argument("--nginx-image", default="localhost/nginx:offline")
    args = ap.parse_args()
    publish = dict(p.split("=", 1) for p in args.publish)
    published_pods = set(publish)

    docs = [d for d in yaml.safe_load_all(sys.stdin) if d]
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)

    os.makedirs(os.path.join(args.out, "secrets"), exist_ok=True)
    os.makedirs(os.path.join(args.out, "jobs"), exist_ok=True)
    report, stack = [], []
    configmaps = by_kind.get("ConfigMap", [])
    services = by_kind.get("Service", [])

    stack += configmaps
    volumes = list(by_kind.get("PersistentVolumeClaim", []))
    for s in by_kind.get("Secret", []):
        name = s["metadata"]["name"]
        data = {k: base64.b64decode(v).decode() for k, v in (s.get("data") or {}).items()}
        data.update(s.get("stringData") or {})
        body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "data": data}
        with open(os.path.join(args.out, "secrets", name + ".json"), "w") as f:
            json.dump(body, f)
        report.append(f"Secret/{name}: a podman secret with the values decoded (podman 4.3 mounts kube-played ones base64-encoded)")

    for sts in by_kind.get("StatefulSet", []):
        claims, pod = statefulset_as_pod(sts, services, report)
        volumes += claims
        stack.append(pod)

    deployments = by_kind.get("Deployment", [])
    for d in deployments:
        stack.append(d)
        report.append(f"Deployment/{d['metadata']['name']}: as it is ({d['spec'].get('replicas', 1)} pods {d['metadata']['name']}-pod-<i>)")

    for svc in services:
        name = svc["metadata"]["name"]
        if svc["spec"].get("clusterIP") == "None":
            report.append(f"Service/{name} (headless): the pod named {name} answers to that name")
            continue
        target = next((d for d in deployments if selects(svc, d["spec"]["template"])), None)
        if target is None:
            report.append(f"Service/{name}: selects no Deployment here; skipped")
            continue
        stack += service_as_nginx(svc, target, publish.get(name), args.nginx_image, report)

    for cj in by_kind.get("CronJob", []):
        name = cj["metadata"]["name"]
        tmpl = copy.deepcopy(cj["spec"]["jobTemplate"]["spec"]["template"])
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name + "-job", "labels": tmpl.get("metadata", {}).get("labels", {})},
            "spec": tmpl["spec"],
        }
        unpublish(pod)
        private_empty_dirs(pod)
        with open(os.path.join(args.out, "jobs", name + ".yaml"), "w") as f:
            yaml.safe_dump_all(configmaps + [pod], f, sort_keys=False)
        report.append(f"CronJob/{name}: jobs/{name}.yaml, its job's pod, run on demand")

    for kind, items in by_kind.items():
        if kind in ("ConfigMap", "PersistentVolumeClaim", "Secret", "StatefulSet", "Deployment", "Service", "CronJob"):
            continue
        for d in items:
            report.append(f"{kind}/{d['metadata']['name']}: not something podman runs; schema-validated only")

    for d in stack:
        if d["kind"] in ("Pod", "Deployment"):
            private_empty_dirs(d)
        if d["kind"] == "Deployment" or (d["kind"] == "Pod" and d["metadata"]["name"] not in published_pods):
            unpublish(d)
    with open(os.path.join(args.out, "stack.yaml"), "w") as f:
        yaml.safe_dump_all(stack, f, sort_keys=False)
    with open(os.path.join(args.out, "volumes.yaml"), "w") as f:
        yaml.safe_dump_all(volumes, f, sort_keys=False)
    with open(os.path.join(args.out, "report.txt"), "w") as f:
        f.write("\n".join(report) + "\n")


def private_empty_dirs(doc):
    """Gives each disk-backed emptyDir a name of its own pod's (see above)."""
    spec = doc["spec"]["template"]["spec"] if doc["kind"] == "Deployment" else doc["spec"]
    owner = doc["metadata"]["name"]
    renamed = {}
    for v in spec.get("volumes", []):
        if "emptyDir" in v and (v["emptyDir"] or {}).get("medium") != "Memory":
            renamed[v["name"]] = f"{owner}-{v['name']}"
            v["name"] = renamed[v["name"]]
    for c in spec.get("containers", []) + spec.get("initContainers", []):
        for m in c.get("volumeMounts", []):
            m["name"] = renamed.get(m["name"], m["name"])


def unpublish(doc):
    """Drops the containers' `ports` (see above), naming probe ports by number instead."""
    spec = doc["spec"]["template"]["spec"] if doc["kind"] == "Deployment" else doc["spec"]
    for c in spec.get("containers", []):
        named = {p["name"]: p["containerPort"] for p in c.get("ports", []) if "name" in p}
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            for handler in ("httpGet", "tcpSocket"):
                h = (c.get(probe) or {}).get(handler)
                if h and isinstance(h.get("port"), str):
                    h["port"] = named[h["port"]]
        c.pop("ports", None)


def selects(svc, template):
    sel = svc["spec"].get("selector") or {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    return bool(sel) and all(labels.get(k) == v for k, v in sel.items())


def statefulset_as_pod(sts, services, report):
    name = sts["metadata"]["name"]
    if sts["spec"].get("replicas", 1) != 1:
        sys.exit(f"StatefulSet/{name}: only one replica can be played as a pod")
    tmpl = copy.deepcopy(sts["spec"]["template"])
    governing = next(
        (s["metadata"]["name"] for s in services
         if s["spec"].get("clusterIP") == "None" and selects(s, tmpl)),
        sts["spec"].get("serviceName", name),
    )
    out = []
    volumes = tmpl["spec"].setdefault("volumes", [])
    for vct in sts["spec"].get("volumeClaimTemplates", []):
        claim = f"{vct['metadata']['name']}-{name}-0"
        out.append({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                    "metadata": {"name": claim}, "spec": vct["spec"]})
        volumes.append({"name": vct["metadata"]["name"], "persistentVolumeClaim": {"claimName": claim}})
    out.append({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": governing, "labels": tmpl["metadata"].get("labels", {})},
                "spec": tmpl["spec"]})
    report.append(f"StatefulSet/{name}: Pod/{governing} (the name its Service gives it), volume claims {[v['persistentVolumeClaim']['claimName'] for v in volumes if 'persistentVolumeClaim' in v]}")
    return out[:-1], out[-1]


def service_as_nginx(svc, deployment, port, image, report):
    name = svc["metadata"]["name"]
    dep = deployment["metadata"]["name"]
    containers = deployment["spec"]["template"]["spec"]["containers"]
    sp = svc["spec"]["ports"][0]
    target = sp.get("targetPort", sp["port"])
    if isinstance(target, str):
        target = next(p["containerPort"] for c in containers for p in c.get("ports", []) if p.get("name") == target)
    replicas = deployment["spec"].get("replicas", 1)
    servers = "".join(f"        server {dep}-pod-{i}:{target} max_fails=1 fail_timeout=5s;\n" for i in range(replicas))
    conf = (
        "worker_processes 1;\npid /tmp/nginx.pid;\nerror_log stderr warn;\n"
        "events { worker_connections 256; }\n"
        "http {\n"
        "    client_body_temp_path /tmp/client_body;\n    proxy_temp_path /tmp/proxy;\n"
        "    fastcgi_temp_path /tmp/fastcgi;\n    uwsgi_temp_path /tmp/uwsgi;\n    scgi_temp_path /tmp/scgi;\n"
        "    access_log off;\n"
        "    upstream service {\n" + servers + "        keepalive 8;\n    }\n"
        "    server {\n        listen 8080;\n        location / {\n"
        "            proxy_pass http://service;\n            proxy_http_version 1.1;\n"
        "            proxy_set_header Connection \"\";\n            proxy_set_header Host $host;\n"
        "        }\n    }\n}\n"
    )
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{name}-service-nginx"},
          "data": {"nginx.conf": conf}}
    ports = [{"name": "http", "containerPort": 8080}]
    if port:
        ports[0].update({"hostPort": int(port), "hostIP": "127.0.0.1"})
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/name": name + "-service"}},
        "spec": {
            "securityContext": {"runAsNonRoot": True, "runAsUser": 101, "runAsGroup": 101},
            "containers": [{
                "name": "kube-proxy",
                "image": image,
                "ports": ports,
                "volumeMounts": [{"name": "conf", "mountPath": "/etc/nginx", "readOnly": True},
                                 {"name": "tmp", "mountPath": "/tmp"}],
                "securityContext": {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
                                    "capabilities": {"drop": ["ALL"]}},
            }],
            "volumes": [{"name": "conf", "configMap": {"name": cm["metadata"]["name"]}},
                        {"name": "tmp", "emptyDir": {"medium": "Memory"}}],
        },
    }
    where = f"127.0.0.1:{port}" if port else "not published"
    report.append(f"Service/{name}: Pod/{name}, nginx over {dep}-pod-0..{replicas - 1}:{target} ({where})")
    return [cm, pod]


if __name__ == "__main__":
    main()
