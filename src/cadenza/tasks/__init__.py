"""Tasks: prompts, constraints and outputs on the one engine."""

from cadenza.tasks.compose import CadenzaModel, find_model, list_models, load_model

__all__ = ["CadenzaModel", "find_model", "list_models", "load_model"]
