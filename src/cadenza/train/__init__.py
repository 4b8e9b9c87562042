"""Corpora -> token shards -> training loop -> model folder."""

from cadenza.train.loop import TrainConfig, train

__all__ = ["TrainConfig", "train"]
