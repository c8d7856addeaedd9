"""Thin entry point: `python sweep.py --table 4.2 --budget smoke` (= `srprior sweep ...`).

`ray submit deploy/cluster.yaml sweep.py -- --table 4.2 --budget thesis` uploads only this file to the head
node, so it must not import anything from the repository checkout: the package comes from the cluster's
setup_commands (`pip install -e`), and the trainables live in srprior.trainers (importable on every node).
"""

import sys

from srprior.commands.sweep import main

if __name__ == "__main__":
    sys.exit(main())
