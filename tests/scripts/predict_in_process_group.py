"""`accelerate launch` this instead of `-m emoscale.cli` to run `emoscale predict` with the ranks in
a process group, as on several GPUs (accelerate's multi-GPU state, nccl); on CPU that needs
`PartialState(cpu=True)` (gloo), since without a GPU accelerate gives each process a state of its
own. Any barrier the streamed path waits at then really waits for the other rank."""

import sys

from accelerate import PartialState

from emoscale import cli

PartialState(cpu=True)
sys.exit(cli.main(sys.argv[1:]))
