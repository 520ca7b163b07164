from celery import shared_task
from celery.signals import worker_ready

from alphasniper_project.celery import HEARTBEAT_PROCESSES
from infra import (
    heartbeat,
    telegram,  # noqa: F401  (registers the infra.telegram.* tasks in every worker)
)


@shared_task(name="infra.heartbeat", ignore_result=True, soft_time_limit=5, time_limit=10, acks_late=False)
def heartbeat_task(process: str) -> None:
    """Sent by beat to each worker queue; proves the named worker process drains its queue."""
    heartbeat.record(process)


@worker_ready.connect
def _beat_on_ready(sender, **kwargs) -> None:
    """A worker that just started is alive: say so before beat's first heartbeat reaches it."""
    consumer = getattr(sender, "consumer", None) or sender
    queues = {q.name for q in consumer.app.amqp.queues.consume_from.values()} if consumer else set()
    for queue, process in HEARTBEAT_PROCESSES.items():
        if str(queue) in queues:
            heartbeat.record(process)
