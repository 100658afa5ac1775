"""WSGI entry point: `launchq.wsgi:application`."""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "launchq.settings")
application = get_wsgi_application()
