"""Errors meant for people: one line that says what is wrong and where."""

_CONTROL = {c: f"\\x{c:02x}" for c in range(32)} | {ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): " ", 127: "\\x7f"}


def shown(text, limit: int = 60, quote: str = "'") -> str:
    """The user's ``text`` as an error message quotes it: in quotes, control characters escaped (a newline
    in it must not split the message) and cut at ``limit`` characters."""
    s = str(text).translate(_CONTROL)
    return f"{quote}{s}{quote}" if len(s) <= limit else f"{quote}{s[:limit - 3]}...{quote}"


class CadenzaError(ValueError):
    """A problem with the user's input or environment; the CLI prints it as one line. Whatever text the
    message quotes, it stays one line: control characters in it are escaped."""

    def __str__(self) -> str:
        return super().__str__().strip().translate(_CONTROL)


class ScoreError(CadenzaError):
    """A score file, typed note, chord symbol or instrument name that cannot be used."""


class ModelError(CadenzaError):
    """A model folder that is missing or malformed."""
