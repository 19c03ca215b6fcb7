from django.contrib import messages
from django.shortcuts import redirect
from django.utils.translation import gettext as _
from django.views.generic import TemplateView, View

from .. import conf, publishing
from ..indexing import index
from ..personalisation import cooccurrence


class IndexStatusView(TemplateView):
    template_name = "oscar_fashion_ai/dashboard/index.html"

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        ctx["stats"] = index.index_stats()
        ctx["sketch"] = index.sketch_status()
        ctx["adaptation"] = adaptation_status()
        ctx["cooccurrence"] = cooccurrence.status()
        ctx["similar_expansion"] = int(conf.get("SIMILAR_QUERY_EXPANSION"))
        return ctx


def adaptation_status() -> dict:
    """The latest adaptation run, the models folder's versions, and whether the button can queue one."""
    from .. import adaptation, conf, model_store
    from ..models import AdaptationRun

    latest = AdaptationRun.objects.first()
    return {
        "latest": latest,
        "busy": adaptation.busy_run() is not None,
        "versions": [v for v in model_store.versions() if v["installed"]][:10],
        "explicit_weights": conf.get("EMBEDDER_WEIGHTS"),
        "queue": conf.get("TRAINING_QUEUE"),
        "max_minutes": conf.get("ADAPT_MAX_MINUTES"),
    }


class AdaptView(View):
    """ "Adapt to my catalog": queue ``fashion_adapt`` as a task on FASHION_AI["TRAINING_QUEUE"] (staff only, like
    every page of this dashboard app)."""

    http_method_names = ["post"]

    def post(self, request):
        from .. import adaptation

        try:
            adaptation.queue_run(request.user.get_username())
        except adaptation.AdaptError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, _("Queued the adaptation to your catalog: progress and outcome show below."))
        return redirect("fashion-ai-dashboard:fashion-ai-index")


class ReindexView(View):
    http_method_names = ["post"]

    def post(self, request):
        scope = request.POST.get("scope", "stale")
        if scope not in {"all", "stale", "failed"}:
            messages.error(request, _("Unknown reindex scope %r.") % scope)
            return redirect("fashion-ai-dashboard:fashion-ai-index")
        try:
            count = index.request_reindex(scope=scope, requested_by=request.user.get_username())
        except index.BrokerUnavailable as exc:
            messages.error(request, str(exc))
        else:
            messages.success(
                request, _("Queued %(n)d products for reindexing (%(scope)s).") % {"n": count, "scope": scope}
            )
        return redirect("fashion-ai-dashboard:fashion-ai-index")


class RefreshCooccurrenceView(View):
    """ "Refresh now": queue the co-occurrence refresh that Celery beat runs daily (staff only)."""

    http_method_names = ["post"]

    def post(self, request):
        try:
            publishing.enqueue_cooccurrence_refresh()
        except Exception as exc:  # noqa: BLE001 - any broker failure: say so, nothing is lost
            messages.error(request, _("Could not queue the refresh (is the broker running?): %s") % exc)
        else:
            messages.success(request, _("Queued: the worker relearns which products shoppers engage with together."))
        return redirect("fashion-ai-dashboard:fashion-ai-index")
