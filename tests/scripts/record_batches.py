"""`accelerate launch` this instead of emoscale/train.py to also record which training examples
each rank trained on (written to $RECORD_DIR/rank-<N>.json). It wraps our own loss, nothing else."""

import json
import os
import sys
from pathlib import Path

from emoscale import train
from emoscale.models.prompt_lm import PromptLMFamily

seen: list[int] = []
original_loss = PromptLMFamily.loss


def recording_loss(self, model, batch, terms=None):
    seen.extend(batch["example_index"].tolist())
    return original_loss(self, model, batch, terms)


PromptLMFamily.loss = recording_loss
code = train.main(sys.argv[1:])
Path(os.environ["RECORD_DIR"], f"rank-{os.environ.get('RANK', '0')}.json").write_text(
    json.dumps(seen)
)
sys.exit(code)
