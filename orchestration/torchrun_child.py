"""Each torchrun worker of ``--num-procs N`` runs this module: ``cli.main`` under
``orchestration.launch.child_main``'s rank-0-only output rules (the commands' gates live in the
importable ``orchestration.launch``, which the commands import; it does not import the CLI)."""
import sys

from orchestration import cli
from orchestration.launch import child_main

if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:], cli.main))
