#!/bin/sh
# Boot-to-init benchmark in one L1 boot; vmms side by side, runs interleaved. Table in lab/out/<run>/bench.txt.
# A vmm given --vmm-args "--device path=..." (edu) must DMA through it in every run (to_dma, k_dma).
#   lab/bench.sh [--vmm PATH]... [--runs 5] [--kernel pvh|bzimage|both] [--memory 256M] [--cpus 1]
#                [--vmm-args "..."] [--device edu --vfio 1234:11e8] [-q]
# See: python3 lab/lab.py bench --help
LAB_INVOKED_AS="$0" exec python3 "$(dirname "$0")/lab.py" bench "$@"
