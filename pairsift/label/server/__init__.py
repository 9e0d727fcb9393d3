"""`pairsift label serve`: a small web app where annotators label a subset's pairs.

Starlette + Jinja2 (autoescaping) + uvicorn, plain HTML with a few lines of inline JavaScript
(keyboard shortcuts), nothing loaded from elsewhere. Modules: :mod:`.config` (defaults),
:mod:`.state` (who gets which pair next, progress), :mod:`.writer` (group commit: a label the
page confirms is in the store), :mod:`.security` (binding, access token, CSRF, headers),
:mod:`.markdown` (the guidelines, rendered safely), :mod:`.app` (routes), :mod:`.run` (bind
and serve).
"""

from .config import ServeConfig

__all__ = ["ServeConfig", "make_app", "serve"]


def __getattr__(name: str):
    # Starlette and uvicorn are the optional `label` extra: import them only when serving.
    if name == "make_app":
        from .app import make_app

        return make_app
    if name == "serve":
        from .run import serve

        return serve
    raise AttributeError(name)
