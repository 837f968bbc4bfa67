"""Sentry for inngest-mw: ``Inngest(middleware=[SentryMiddleware])`` after ``sentry_sdk.init``.

Errors are reported once per run (on the final attempt by default), with app/function/run/event/step
tags, from an isolation scope per request; tracing adds a transaction per request, a span per step.
"""

from inngest_mw_sentry.middleware import SentryMiddleware

__all__ = ["SentryMiddleware"]
