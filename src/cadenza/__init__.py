"""cadenza: music with autoregressive transformers.

    >>> import cadenza
    >>> model = cadenza.load_model()          # the bundled default model
    >>> score = model.generate(bars=8, style="folk", seed=1)   # a symusic.Score
    >>> cadenza.write_score(score, "tune.mid")
"""

__version__ = "0.1.0"

from cadenza.errors import CadenzaError, ModelError, ScoreError


def __getattr__(name):
    # torch-free imports stay cheap: the model stack loads only when asked for
    if name in ("load_model", "list_models", "CadenzaModel"):
        from cadenza import tasks

        return getattr(tasks, name)
    if name in ("read_score", "write_score", "parse_notes", "parse_chords"):
        from cadenza import score

        return getattr(score, name)
    raise AttributeError(name)


__all__ = ["CadenzaError", "ModelError", "ScoreError", "load_model", "list_models", "CadenzaModel",
           "read_score", "write_score", "parse_notes", "parse_chords"]
