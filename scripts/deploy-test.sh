#!/usr/bin/env bash
# The Debian package, installed and run as docs/DEPLOY.md tells an operator to:
#   build it (scripts/deb.sh), `dpkg -i` it, check every file, the user, the data directory
#   and the enabled unit; install it again over an edited config (kept); `rookery --version` and `rookery check-config` from the installed
#   package; `systemd-analyze verify` on the installed unit; then what `systemctl start`
#   would do — the unit's ExecStart as its User in its WorkingDirectory — with a real client
#   (the demo page in headless Chromium), `promtool check metrics` on /metrics, SIGHUP
#   (ExecReload) and SIGTERM (the graceful stop, within the unit's TimeoutStopSec); finally
#   `dpkg --purge`. Then the container's seccomp helper on a profile shaped like Docker's.
# Needs root (dpkg); installs systemd (for systemd-analyze), adduser, prometheus (for
# promtool), curl and jq with apt when they are missing.
# Left out: what needs a running systemd (systemctl) or a Docker daemon (building and
# running the image); tests in server/tests/packaging.rs check those files instead, and
# server/tests/driver_fallback.rs runs the binary under a seccomp filter like Docker's.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '  -> %s\n' "$*"; }
fail() { echo "deploy test failed: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "needs root (dpkg -i)"
need=()
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v adduser >/dev/null || need+=(adduser)
command -v promtool >/dev/null || need+=(prometheus)
command -v curl >/dev/null || need+=(curl)
command -v jq >/dev/null || need+=(jq)
if [ ${#need[@]} -gt 0 ]; then
  step "apt-get install ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

step "build the package"
deb=$(./scripts/deb.sh | tail -1)
[ -f "$deb" ] || fail "no package at $deb"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)

# What this test creates, it removes (the machine may be someone's).
had_user=$(getent passwd rookery >/dev/null && echo yes || echo no)
had_data=$([ -e /var/lib/rookery ] && echo yes || echo no)
server=""
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null || true
  dpkg --purge rookery >/dev/null 2>&1 || true
  [ "$had_data" = no ] && rm -rf /var/lib/rookery
  if [ "$had_user" = no ] && getent passwd rookery >/dev/null; then
    deluser --system rookery >/dev/null 2>&1 || true
    getent group rookery >/dev/null && delgroup --system rookery >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

step "dpkg -i $(basename "$deb")"
dpkg -i "$deb" >/dev/null

step "files, user, data directory, enabled unit"
unit=/usr/lib/systemd/system/rookery.service
[ -x /usr/bin/rookery ] || fail "/usr/bin/rookery missing"
[ -f "$unit" ] || fail "$unit missing"
for doc in DEPLOY.md CONFIG.md CONSOLE.md README.md grafana-dashboard.json copyright; do
  [ -s "/usr/share/doc/rookery/$doc" ] || fail "/usr/share/doc/rookery/$doc missing"
done
grep -qx /etc/rookery/rookery.toml /var/lib/dpkg/info/rookery.conffiles || fail "config is no conffile"
[ "$(stat -c '%U:%G %a' /etc/rookery/rookery.toml)" = "root:rookery 640" ] \
  || fail "config file mode: $(stat -c '%U:%G %a' /etc/rookery/rookery.toml)"
IFS=: read -r _ _ uid _ _ home shell < <(getent passwd rookery) || fail "no rookery user"
[ "$uid" -lt 1000 ] || fail "rookery is no system user (uid $uid)"
[ "$home" = /var/lib/rookery ] || fail "rookery's home is $home"
case "$shell" in */nologin|*/false) ;; *) fail "rookery can log in ($shell)";; esac
[ "$(stat -c '%U:%G %a' /var/lib/rookery)" = "rookery:rookery 750" ] \
  || fail "data directory: $(stat -c '%U:%G %a' /var/lib/rookery)"
[ -L /etc/systemd/system/multi-user.target.wants/rookery.service ] || fail "the unit is not enabled"

step "rookery --version, rookery check-config (as the rookery user)"
[ "$(/usr/bin/rookery --version)" = "rookery $version" ] || fail "version: $(/usr/bin/rookery --version)"
report=$(runuser -u rookery -- /usr/bin/rookery check-config --config /etc/rookery/rookery.toml) \
  || fail "check-config refused the packaged config"
grep -q '^data_dir = "/var/lib/rookery" *# config file$' <<<"$report" || fail "check-config: $report"
grep -q '^store = "disk"' <<<"$report" || fail "check-config: $report"

step "reinstall (the upgrade path) keeps an edited config"
echo '# edited by the operator' >>/etc/rookery/rookery.toml
dpkg -i "$deb" >/dev/null
grep -qx '# edited by the operator' /etc/rookery/rookery.toml || fail "the edited config was replaced"
[ "$(stat -c '%U:%G %a' /etc/rookery/rookery.toml)" = "root:rookery 640" ] || fail "config mode after upgrade"

step "systemd-analyze verify, systemd-analyze security"
verify=$(systemd-analyze verify "$unit" 2>&1) || fail "systemd-analyze verify: $verify"
if grep -q rookery <<<"$verify"; then fail "systemd-analyze verify warns: $verify"; fi
exposure=$(systemd-analyze security --offline=true "$unit" 2>&1 | sed -n 's/.*Overall exposure level for rookery.service: \([0-9.]*\).*/\1/p')
[ -n "$exposure" ] || fail "systemd-analyze security gave no exposure level"
awk -v e="$exposure" 'BEGIN { exit !(e <= 2.0) }' || fail "the unit's exposure is $exposure (over 2.0)"

# What `systemctl start rookery` runs: ExecStart, as User, in WorkingDirectory. The address
# comes from ROOKERY_LISTEN (a variable beats the file) so that a free port is used.
exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
user=$(sed -n 's/^User=//p' "$unit")
workdir=$(sed -n 's/^WorkingDirectory=//p' "$unit")
stop_timeout=$(sed -n 's/^TimeoutStopSec=//p' "$unit")
step "start: $exec_start (as $user in $workdir)"
out=$(mktemp); err=$(mktemp)
# shellcheck disable=SC2086 # ExecStart is split into words, as systemd does.
# setpriv execs (no process in between), so signals reach the server itself.
(cd "$workdir" && exec setpriv --reuid "$user" --regid "$user" --init-groups -- \
  env ROOKERY_LISTEN=127.0.0.1:0 $exec_start) >"$out" 2>"$err" &
server=$!
for _ in $(seq 300); do grep -q listening "$out" && break; kill -0 $server 2>/dev/null || break; sleep 0.1; done
addr=$(sed -n 's/^rookery listening on \([^ ]*\).*/\1/p' "$out")
[ -n "$addr" ] || fail "the installed server did not start: $(cat "$err")"
[ "$(curl -s "http://$addr/readyz")" = '{"status":"ready"}' ] || fail "readyz"

step "the demo page against the installed server"
ROOKERY_URL="ws://$addr" ./scripts/demo-test.sh
[ "$(curl -s -o /dev/null -w '%{http_code} %{content_type}' "http://$addr/demo/assets/sdk/rookery_client_bg.wasm")" = "200 application/wasm" ] \
  || fail "the installed binary does not serve its demo"

step "promtool check metrics"
curl -s "http://$addr/metrics" >"$out.metrics"
promtool check metrics <"$out.metrics" || fail "promtool check metrics"
grep -q '^rookery_connections_total [1-9]' "$out.metrics" || fail "no connection was counted"

step "reload (SIGHUP, the unit's ExecReload) keeps it serving"
kill -HUP $server
for _ in $(seq 300); do grep -q 'reload done' "$err" && break; sleep 0.1; done
grep -q 'reload done' "$err" || fail "no reload: $(cat "$err")"
[ "$(curl -s "http://$addr/healthz")" = '{"status":"ok"}' ] || fail "not serving after reload"

step "stop (SIGTERM, the unit's KillSignal) exits 0 within TimeoutStopSec=$stop_timeout"
kill -TERM $server
status=0
for _ in $(seq $((stop_timeout * 10))); do kill -0 $server 2>/dev/null || break; sleep 0.1; done
kill -0 $server 2>/dev/null && fail "still running ${stop_timeout}s after SIGTERM"
wait $server || status=$?
server=""
[ $status = 0 ] || fail "exit status $status: $(cat "$err")"
[ -n "$(ls -A /var/lib/rookery)" ] || fail "nothing stored in /var/lib/rookery"
grep -q '"rookery::access"\|rookery::access' "$err" || fail "no access log"

step "dpkg --purge"
dpkg --purge rookery >/dev/null
[ ! -e /usr/bin/rookery ] && [ ! -e /etc/rookery/rookery.toml ] && [ ! -e "$unit" ] \
  || fail "files left after purge"
[ ! -e /etc/systemd/system/multi-user.target.wants/rookery.service ] || fail "unit still enabled"
step "seccomp-with-io_uring.sh allows io_uring and keeps the rest"
cat >"$out.profile" <<'JSON'
{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
 "syscalls": [{"names": ["accept4", "io_uring_setup", "read"], "action": "SCMP_ACT_ALLOW"},
              {"names": ["io_uring_enter"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}
JSON
deploy/docker/seccomp-with-io_uring.sh "$out.profile" >"$out.profile2"
jq -e '
  (.defaultAction == "SCMP_ACT_ERRNO")
  and ([.syscalls[] | select(.action == "SCMP_ACT_ALLOW") | .names[]] | sort
       == ["accept4", "io_uring_enter", "io_uring_register", "io_uring_setup", "read"])
  and ([.syscalls[] | select(.action != "SCMP_ACT_ALLOW")] | length == 0)
' "$out.profile2" >/dev/null || fail "seccomp profile: $(cat "$out.profile2")"
echo "deploy test: ok"
