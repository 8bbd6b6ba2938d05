from django.apps import AppConfig


class MonitorConfig(AppConfig):
    name = "monitor"
    verbose_name = "Koala Monitor"

    def ready(self):
        # register the Celery tasks in every process (web, worker, commands): modules below the
        # tasks (labels.schedule_recompute) find them by name, without importing them
        from . import tasks  # noqa: F401
