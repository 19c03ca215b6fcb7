from django.contrib import messages
from django.shortcuts import redirect
from django.utils.translation import gettext as _
from django.views.generic import TemplateView, View

from .. import index


class IndexStatusView(TemplateView):
    template_name = "oscar_fashion_ai/dashboard/index.html"

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        ctx["stats"] = index.index_stats()
        ctx["sketch"] = index.sketch_status()
        return ctx


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
            messages.success(request, _("Queued %(n)d products for reindexing (%(scope)s).") % {"n": count, "scope": scope})
        return redirect("fashion-ai-dashboard:fashion-ai-index")
