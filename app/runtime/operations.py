"""Production plumbing, installed by create_app: request ids, health checks, metrics, rate limits, outage pages.

docs/operations.md describes what each part does and how to configure it.
"""
from __future__ import annotations

from app.runtime.health import health
from app.runtime.observability import install_metrics
from app.runtime.outage import install_outage_pages
from app.runtime.ratelimit import install_rate_limits
from app.runtime.requestid import install_request_ids


def install_operations(app, appbuilder) -> None:
    engine = app.extensions["sqlalchemy"].engine
    install_request_ids(app)
    app.register_blueprint(health)
    install_metrics(app, engine)
    install_rate_limits(app, appbuilder)
    install_outage_pages(app, engine)
