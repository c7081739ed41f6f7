#!/usr/bin/env bash
# Installs what the tests need (PostgreSQL and Chromium from Debian), then runs every test.
set -euo pipefail
cd "$(dirname "$0")"

missing=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
[ -x /usr/bin/chromium ] || missing+=(chromium)
if ((${#missing[@]})); then
  echo "test.sh: installing ${missing[*]} with apt-get" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
dotnet build Domicile.slnx -c Release -warnaserror -nologo -v quiet
log=$(mktemp)
set +e
dotnet test Domicile.slnx -c Release --no-build --logger "console;verbosity=normal" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# Failures again, just above the summary, so a reader of the last lines sees which test and why.
awk '/^  Failed / { show = 1; print; next }
     show && /^  (Passed|Failed|Skipped) |^\[xUnit|^Test Run|^Total tests/ { show = 0 }
     show { print }' "$log" | head -n 60 || true
# One plain closing line for any reader: "N passed, N failed, N skipped".
awk '
  /^(Passed|Failed)!/ { for (i = 1; i <= NF; i++) { v = $(i+1); gsub(",", "", v)
      if ($i == "Failed:") f += v; if ($i == "Passed:") p += v; if ($i == "Skipped:") s += v }; seen = 1; next }
  !seen && /^ +Passed: [0-9]+$/ { p2 += $2 } !seen && /^ +Failed: [0-9]+$/ { f2 += $2 } !seen && /^ +Skipped: [0-9]+$/ { s2 += $2 }
  END { if (!seen) { p = p2; f = f2; s = s2 }; printf "%d passed, %d failed, %d skipped\n", p, f, s }' "$log"
rm -f "$log"
exit "$status"
