"""The portal generator; `create_app` (app/factory.py) builds a portal app from the YAML schemas.

Importing `app` stays light (no Flask-AppBuilder): `portal check` and `python -m app.check` read the schemas
without building an app, so the factory is imported when an app is made.
"""


def create_app(config=None):
    """Build a portal app (see app.factory.create_app); raises SchemaProblems if the schemas don't check."""
    from app.factory import create_app as build

    return build(config)


__all__ = ["create_app"]
