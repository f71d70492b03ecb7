"""emoscale: emotion recognition with large pretrained models on one Accelerate trainer."""

import warnings

__version__ = "0.1.0"

# PEFT 0.21 reads transformers 5's deprecated `is_gradient_checkpointing` whenever it wraps a
# model: a warning on every run that no emoscale user can act on. Only that message is silenced.
warnings.filterwarnings(
    "ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning
)
