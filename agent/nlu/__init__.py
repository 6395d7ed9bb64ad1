"""Understanding requests: normalise -> guard -> templates (hassil) -> fuzzy names -> result.

Each layer is a module of its own; ``pipeline.Understander`` runs them in order. What no
template matches is handed back as ``NoMatch`` for the model, and ``check.check_answer`` is
what the model's answer must pass.
"""
