"""Django project package. Importing it also loads the Celery app, so `@shared_task` binds to it."""

from alphasniper_project.celery import app as celery_app

__all__ = ["celery_app"]
