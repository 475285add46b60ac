#!/usr/bin/env bash
#
# scripts/lib/validate-deploy.sh — offline checks of the deployment files in deploy/.
#
#   - every manifest in deploy/k8s/ (top level; optional/ needs CRDs) against the bundled
#     Kubernetes $K8S_VERSION schemas with `kubernetes-validate --strict` (unknown fields,
#     unknown kinds or API versions are errors);
#   - deploy/k8s/kustomization.yaml lists exactly those manifests;
#   - deploy/compose.yaml against the Compose specification
#     (`check-jsonschema --builtin-schema vendor.compose-spec`).
#
# The two tools come from PyPI, pinned below, in a private venv under
# ${XDG_CACHE_HOME:-~/.cache}/tms/deploy-venv (created on first use; python3 and python3-venv
# are installed with apt-get when missing and running as root). After that, nothing is
# downloaded: the schemas ship inside the packages.
#
# Usage: scripts/lib/validate-deploy.sh        (called by scripts/test)

set -euo pipefail
shopt -s inherit_errexit

repo_root=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=scripts/lib/services.sh
source "$repo_root/scripts/lib/services.sh"

readonly K8S_VERSION=1.30.0
readonly REQUIREMENTS="kubernetes-validate==1.37.0 check-jsonschema==0.39.0"
venv=${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/tms/deploy-venv

# _deploy_apt_install PACKAGE...: install Debian packages as root, like tms_ensure_packages.
_deploy_apt_install() {
    local log=${TMS_SETUP_LOG:-${TMPDIR:-/tmp}/tms-setup.log}
    if [[ $EUID -ne 0 ]]; then
        tms_die "missing system packages: $*. Install them as root, e.g.: sudo apt-get update && sudo apt-get install -y --no-install-recommends $*"
    fi
    command -v apt-get >/dev/null 2>&1 ||
        tms_die "missing system packages: $*, and apt-get is not available"
    mkdir -p -- "$(dirname -- "$log")"
    local -a apt=(apt-get -q -y -o DPkg::Lock::Timeout=300)
    tms_say "apt-get update && apt-get install $* (log: $log)"
    if ! DEBIAN_FRONTEND=noninteractive "${apt[@]}" update >>"$log" 2>&1 ||
        ! DEBIAN_FRONTEND=noninteractive "${apt[@]}" install --no-install-recommends "$@" >>"$log" 2>&1; then
        _tms_tail_log "$log"
        tms_die "apt-get install $* failed (full log: $log)"
    fi
}

# ensure_venv: the venv with $REQUIREMENTS, (re)built when missing or pinned differently.
ensure_venv() {
    local stamp=$venv/.tms-requirements
    if [[ -x $venv/bin/kubernetes-validate && -x $venv/bin/check-jsonschema &&
        -f $stamp && "$(<"$stamp")" == "$REQUIREMENTS" ]]; then
        return 0
    fi
    command -v python3 >/dev/null 2>&1 || _deploy_apt_install python3 python3-venv
    # Debian splits venv/ensurepip into python3-venv.
    python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || _deploy_apt_install python3-venv
    local log=${TMS_SETUP_LOG:-${TMPDIR:-/tmp}/tms-setup.log}
    mkdir -p -- "$(dirname -- "$log")"
    tms_say "creating $venv with $REQUIREMENTS (log: $log)"
    rm -rf -- "$venv"
    mkdir -p -- "$(dirname -- "$venv")"
    local -a reqs
    read -r -a reqs <<<"$REQUIREMENTS"
    if ! { python3 -m venv "$venv" &&
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${reqs[@]}"; } >>"$log" 2>&1; then
        _tms_tail_log "$log"
        rm -rf -- "$venv"
        tms_die "could not install $REQUIREMENTS into $venv (full log: $log)"
    fi
    printf '%s\n' "$REQUIREMENTS" >"$stamp"
}

ensure_venv

cd "$repo_root/deploy"

manifests=()
for f in k8s/*.yaml; do
    [[ $f == k8s/kustomization.yaml ]] || manifests+=("$f")
done
((${#manifests[@]} > 0)) || tms_die "no manifests in deploy/k8s"

# kubernetes-validate only warns (exit 0) about a kind or apiVersion it has no schema for:
# any WARN or ERROR line fails here.
status=0
out=$("$venv/bin/kubernetes-validate" --strict -k "$K8S_VERSION" "${manifests[@]}" 2>&1) || status=$?
printf '%s\n' "$out"
if ((status != 0)) || grep -qE '^(WARN|ERROR)' <<<"$out"; then
    tms_die "deploy/k8s: kubernetes-validate --strict (Kubernetes $K8S_VERSION) failed"
fi

# Every top-level manifest is in kustomization.yaml's resources, and nothing else is.
"$venv/bin/python" - k8s/kustomization.yaml "${manifests[@]}" <<'PY'
import os, sys, yaml
kfile, files = sys.argv[1], sys.argv[2:]
listed = yaml.safe_load(open(kfile)).get("resources") or []
want = sorted(os.path.basename(f) for f in files)
missing = sorted(set(want) - set(listed))
extra = sorted(set(listed) - set(want))
if missing or extra:
    sys.exit(f"{kfile}: not listed: {missing}; listed but not a manifest here: {extra}")
print(f"OK {kfile} lists all {len(want)} manifests")
PY

"$venv/bin/check-jsonschema" --builtin-schema vendor.compose-spec compose.yaml
