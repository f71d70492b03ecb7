"""emoscale: emotion recognition with large pretrained models on one Accelerate trainer."""

__version__ = "0.1.0"
