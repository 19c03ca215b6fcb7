"""The dashboard's "Adapt to my catalog" task: one run at a time, queued, its progress and outcome on its row."""

from __future__ import annotations

import logging

from django.utils import timezone

from .. import conf, publishing
from .catalog import AdaptError, Options, Reporter
from .photo import run

logger = logging.getLogger(__name__)


#: Options of the dashboard's task beyond the defaults (a shop's own code, or tests, may set thresholds here).
TASK_OPTIONS: dict = {}
STALE_AFTER_S = 15 * 60  # a running row without progress for this long belongs to a worker that died


def busy_run():
    """The adaptation queued or running now (None when there is none, or when its worker stopped reporting)."""
    from ..models import AdaptationRun

    row = AdaptationRun.objects.filter(state__in=[AdaptationRun.State.QUEUED, AdaptationRun.State.RUNNING]).first()
    if row is None:
        return None
    if (timezone.now() - row.date_updated).total_seconds() > STALE_AFTER_S and row.state == AdaptationRun.State.RUNNING:
        return None
    return row


def run_queued(run_id: int, max_attempts: int = 3) -> dict:
    """The task's body: run the adaptation recorded in ``AdaptationRun`` ``run_id``, storing progress and outcome."""
    from ..models import AdaptationRun

    row = AdaptationRun.objects.filter(pk=run_id).first()
    if row is None or row.done:
        return {"skipped": True}
    if row.state == AdaptationRun.State.RUNNING and (timezone.now() - row.date_updated).total_seconds() < STALE_AFTER_S:
        return {"skipped": True, "reason": "already running"}  # a redelivered message while the first still runs
    attempts = row.attempts + 1
    if attempts > max_attempts:
        AdaptationRun.objects.filter(pk=run_id).update(
            state=AdaptationRun.State.FAILED,
            date_finished=timezone.now(),
            message=f"Stopped after {max_attempts} attempts (the worker died each time; see its log).",
        )
        return {"failed": True}
    AdaptationRun.objects.filter(pk=run_id).update(
        state=AdaptationRun.State.RUNNING,
        attempts=attempts,
        date_started=row.date_started or timezone.now(),
        stage="Starting",
    )
    row.refresh_from_db()
    lines = []
    reporter = Reporter(row, write=lines.append)
    try:
        result = run(
            Options(
                **{
                    **TASK_OPTIONS,
                    "resume": attempts > 1,
                    "progress": False,
                    "command": "dashboard: Adapt to my catalog",
                }
            ),
            reporter,
            row,
        )
    except AdaptError as exc:
        AdaptationRun.objects.filter(pk=run_id).update(
            state=AdaptationRun.State.FAILED, message=str(exc), date_finished=timezone.now(), stage="", progress=1.0
        )
        return {"failed": True, "error": str(exc)}
    except Exception as exc:  # kombu's connection errors
        logger.exception("Fashion AI: adaptation %s crashed", run_id)
        AdaptationRun.objects.filter(pk=run_id).update(
            state=AdaptationRun.State.FAILED,
            date_finished=timezone.now(),
            message=f"Crashed: {type(exc).__name__}: {exc}. The model in use is unchanged.",
            stage="",
            progress=1.0,
        )
        raise
    AdaptationRun.objects.filter(pk=run_id).update(
        state=AdaptationRun.State.INSTALLED if result.get("installed") else AdaptationRun.State.KEPT,
        message="\n".join(lines),
        result=result,
        installed_version=result.get("version", ""),
        date_finished=timezone.now(),
        stage="Done",
        progress=1.0,
    )
    return {"installed": bool(result.get("installed")), "version": result.get("version")}


def queue_run(requested_by: str):
    """Record and queue an adaptation (the dashboard button). Raises AdaptError when one is already under way or the
    broker refuses the task (then nothing stays queued)."""
    from ..models import AdaptationRun

    busy = busy_run()
    if busy is not None:
        raise AdaptError(
            f"An adaptation is already {busy.get_state_display().lower()} (requested by "
            f"{busy.requested_by or 'someone'} at {busy.date_created:%Y-%m-%d %H:%M})."
        )
    if conf.get("EMBEDDER_WEIGHTS"):
        raise AdaptError(
            "FASHION_AI['EMBEDDER_WEIGHTS'] is set, so an adapted model would not be used: set it to None "
            "to use the models folder."
        )
    row = AdaptationRun.objects.create(requested_by=requested_by[:150])
    try:
        result = publishing.task(publishing.ADAPT_CATALOG).apply_async(
            args=[row.pk], queue=conf.get("TRAINING_QUEUE"), retry=True, retry_policy=publishing.PUBLISH_RETRY
        )
    except Exception as exc:
        row.delete()
        raise AdaptError(
            f"The task broker is unreachable ({exc}); nothing was queued. Start Redis and a worker, or "
            "run `python manage.py fashion_adapt`."
        ) from exc
    AdaptationRun.objects.filter(pk=row.pk).update(task_id=result.id or "")
    return row
