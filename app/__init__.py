"""The portal generator; `create_app` (app/factory.py) builds a portal app from the YAML schemas."""
from app.factory import create_app, register_models_and_tables

__all__ = ["create_app", "register_models_and_tables"]
