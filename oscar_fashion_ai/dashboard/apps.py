from django.urls import path
from django.utils.translation import gettext_lazy as _
from oscar.core.application import OscarDashboardConfig


class FashionAIDashboardConfig(OscarDashboardConfig):
    """The "Fashion AI" page of Oscar's dashboard (staff only)."""

    name = "oscar_fashion_ai.dashboard"
    label = "fashion_ai_dashboard"
    namespace = "fashion-ai-dashboard"
    verbose_name = _("Fashion AI dashboard")
    default_permissions = ["is_staff"]

    def get_urls(self):
        from . import views

        urls = [
            path("", views.IndexStatusView.as_view(), name="fashion-ai-index"),
            path("reindex/", views.ReindexView.as_view(), name="fashion-ai-reindex"),
            path("adapt/", views.AdaptView.as_view(), name="fashion-ai-adapt"),
        ]
        return self.post_process_urls(urls)
