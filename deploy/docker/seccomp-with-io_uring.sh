#!/bin/sh
# Writes a seccomp profile for Rookery's container: the given profile (Docker's or
# containerd's default, which refuse io_uring) with io_uring_setup, io_uring_enter and
# io_uring_register allowed, and nothing else changed. See docs/DEPLOY.md#containers.
#
#   deploy/docker/seccomp-with-io_uring.sh default.json > rookery-seccomp.json
#   docker run --security-opt seccomp=rookery-seccomp.json ...
#
# Needs jq.
set -eu
[ $# -eq 1 ] || { echo "usage: $0 DEFAULT-PROFILE.json > PROFILE.json" >&2; exit 2; }
jq '
  ["io_uring_setup", "io_uring_enter", "io_uring_register"] as $uring
  | if (.syscalls | type) != "array" then error("no syscalls list: is this a seccomp profile?") else . end
  | .syscalls |= (map(.names -= $uring) | map(select(.names | length > 0)))
  | .syscalls += [{"names": $uring, "action": "SCMP_ACT_ALLOW", "args": []}]
' "$1"
