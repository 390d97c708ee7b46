#!/usr/bin/env bash
# Static checks: staticcheck and govulncheck. govulncheck uses the offline vulnerability database in
# ../shared/vulndb when it exists (the project's CI machines), otherwise the public one.
set -euo pipefail
cd "$(dirname "$0")/.."
go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
db=()
if [ -d ../shared/vulndb ]; then
  db=(-db "file://$(cd ../shared/vulndb && pwd)")
fi
go run golang.org/x/vuln/cmd/govulncheck@v1.9.0 "${db[@]}" ./...
