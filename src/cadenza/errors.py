"""Errors meant for people: one line that says what is wrong and where."""


class CadenzaError(ValueError):
    """A problem with the user's input or environment; the CLI prints it as one line."""


class ScoreError(CadenzaError):
    """A score file, typed note, chord symbol or instrument name that cannot be used."""


class ModelError(CadenzaError):
    """A model folder that is missing or malformed."""
