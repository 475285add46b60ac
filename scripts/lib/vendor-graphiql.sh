#!/usr/bin/env bash
#
# scripts/lib/vendor-graphiql.sh — fetch the pinned GraphiQL, React and ReactDOM builds that
# tms-api embeds for GraphiQL at GET /graphql (api/ui/vendor/), so that page needs no CDN.
#
# Usage: scripts/lib/vendor-graphiql.sh          re-fetch and rewrite api/ui/vendor/
#        scripts/lib/vendor-graphiql.sh --check  re-fetch into a temporary dir and fail if the
#                                                committed files differ
#
# Each package is fetched with `npm pack` (the npm registry) and its tarball checked against
# the sha512 integrity pinned below before anything is extracted. The script then writes
# api/ui/vendor/SHA256SUMS; the tms-api unit test `vendored_files_match_their_pinned_checksums`
# checks the committed files against it on every `cargo test`, offline.
#
# To upgrade: change a version and its integrity (`npm view <pkg>@<version> dist.integrity`),
# run this script, and commit api/ui/vendor/. GraphiQL 3 is the last major with a UMD build
# (React 18 the last with UMD builds); a later GraphiQL needs a bundler step.

set -euo pipefail

repo_root=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd)
# package version sha512-integrity then "file-in-package=name-in-vendor" pairs
PINS=(
    "react 18.3.1 sha512-wS+hAgJShR0KhEvPJArfuPVN1+Hz1t0Y6n5jLrGQbkb4urgPE/0Rve+1kMB1v/oWgHgm4WIcV+i7F2pTVj+2iQ== umd/react.production.min.js=react.production.min.js LICENSE=LICENSE.react"
    "react-dom 18.3.1 sha512-5m4nQKp+rZRb09LNH59GM4BxTh9251/ylbKIbpe7TpGxfJ+9kv6BLkLBXIjjspbgbnIBNqlI23tRnTWT0snUIw== umd/react-dom.production.min.js=react-dom.production.min.js LICENSE=LICENSE.react-dom"
    "graphiql 3.8.3 sha512-cuPDYtXVKV86Pu5PHBX642Odi/uVEE2y1Jxq5rGO/Qy1G2lRp7ZZ7a/T30RzxhuLSWo9zUbzq0P3U49//H0Ugw== graphiql.min.js=graphiql.min.js graphiql.min.css=graphiql.min.css LICENSE=LICENSE.graphiql"
)

check=0
case ${1:-} in
--check) check=1 ;;
"") ;;
*)
    echo "usage: $0 [--check]" >&2
    exit 2
    ;;
esac

command -v npm >/dev/null || {
    echo "npm is needed (Debian: apt-get install npm)" >&2
    exit 1
}

work=$(mktemp -d)
trap 'rm -rf -- "$work"' EXIT
out=$work/vendor
mkdir -p "$out"

for pin in "${PINS[@]}"; do
    read -r pkg version integrity files <<<"$pin"
    (cd "$work" && npm pack --silent "$pkg@$version" >/dev/null)
    tgz=$work/$pkg-$version.tgz
    got="sha512-$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)"
    if [[ $got != "$integrity" ]]; then
        echo "$pkg@$version: integrity $got, expected $integrity" >&2
        exit 1
    fi
    mkdir -p "$work/x/$pkg"
    tar -xzf "$tgz" -C "$work/x/$pkg"
    for pair in $files; do
        cp -- "$work/x/$pkg/package/${pair%%=*}" "$out/${pair#*=}"
    done
    printf '%s@%s %s\n' "$pkg" "$version" "$integrity" >>"$out/VERSIONS"
done
(cd "$out" && sha256sum -- $(ls | grep -v '^SHA256SUMS$' | sort) >SHA256SUMS)

dest=$repo_root/api/ui/vendor
if ((check)); then
    if diff -r -- "$out" "$dest"; then
        echo "api/ui/vendor matches the pinned packages"
    else
        echo "api/ui/vendor differs from the pinned packages (run $0 to refresh it)" >&2
        exit 1
    fi
else
    rm -rf -- "$dest"
    cp -r -- "$out" "$dest"
    echo "wrote $dest:"
    ls -l -- "$dest"
fi
