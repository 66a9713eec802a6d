#!/bin/sh
# Host runner: build what is missing, boot L1 under QEMU/TCG, run scenarios, print a table.
#   lab/run.sh [--vmm PATH] [-s boot-pvh,smp2] [--device edu --vfio 1234:11e8] [--shell] [-q]
# See: python3 lab/lab.py run --help
exec python3 "$(dirname "$0")/lab.py" run "$@"
