"""ASGI entry point for servers with several worker processes: ``service.asgi:app``."""

from service.app import create_app

app = create_app()
