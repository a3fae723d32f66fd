"""Settings > Test: does the configured ClinKD server answer, and which model would it serve?

Runs on a worker thread (a server that does not answer must not freeze the dialog) with short
timeouts, and turns every outcome into one sentence: "OK: serves <model>" or why not. The
dialog can cancel a check: the socket is shut down, so closing it never leaves a thread waiting.
"""

from __future__ import annotations

import threading

CONNECT_TIMEOUT_S = 5.0  # a test button should answer quickly; an answer takes its own time later
READ_TIMEOUT_S = 10.0


def check_server(url: str, model: str, cancel: threading.Event | None = None) -> str:
    """ "OK: serves <model>" when ``url`` lists ``model`` (or, with no model named, exactly one).

    Raises ServerError with the sentence to show otherwise (bad URL, refused, unknown model).
    The server client is imported here, on the worker thread: it brings torch with it (through
    the generation module), and the window must open without torch."""
    from engine.clinkd.server import ServerError, ServerSettings, served_models

    try:
        settings = ServerSettings(url, model or None, connect_timeout_s=CONNECT_TIMEOUT_S, timeout_s=READ_TIMEOUT_S)
    except ValueError as err:
        raise ServerError(f"The server URL cannot be used: {err}.") from None
    served = served_models(settings, cancel)
    listed = ", ".join(served) or "none"
    if model:
        if model not in served:
            raise ServerError(f"The server at {url} does not serve model {model!r}; it serves: {listed}.")
        return f"OK: serves {model}"
    if len(served) != 1:
        raise ServerError(
            f"The server at {url} serves {len(served)} models ({listed}); enter one as the served model name."
        )
    return f"OK: serves {served[0]}"
