"""``python -m testbed.delayline CONFIG.json``: run one namespace's delay line."""

import sys

from testbed.delayline.line import run_from_config

if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.stderr.write("usage: python -m testbed.delayline CONFIG.json\n")
        sys.exit(2)
    sys.exit(run_from_config(sys.argv[1]))
