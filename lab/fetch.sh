#!/bin/sh
# Install missing host packages, download/extract the Debian kernel + busybox, build L2 payloads.
exec python3 "$(dirname "$0")/lab.py" fetch "$@"
