"""The transformer and its folder format. Knows nothing of tokenizers."""

from cadenza.model.folder import load_model_folder, quantize_model_folder, read_config, save_model_folder
from cadenza.model.transformer import ModelConfig, Transformer

__all__ = ["ModelConfig", "Transformer", "load_model_folder", "quantize_model_folder", "read_config", "save_model_folder"]
