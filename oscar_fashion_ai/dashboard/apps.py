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

    def ready(self):
        from ..loading import get_class

        # Loaded the Oscar way: a fork of this dashboard app may override any of them.
        self.index_view = get_class("views", "IndexStatusView", "fashion_ai_dashboard", "oscar_fashion_ai.dashboard")
        self.reindex_view = get_class("views", "ReindexView", "fashion_ai_dashboard", "oscar_fashion_ai.dashboard")
        self.adapt_view = get_class("views", "AdaptView", "fashion_ai_dashboard", "oscar_fashion_ai.dashboard")
        self.cooccurrence_view = get_class(
            "views", "RefreshCooccurrenceView", "fashion_ai_dashboard", "oscar_fashion_ai.dashboard"
        )

    def get_urls(self):
        urls = [
            path("", self.index_view.as_view(), name="fashion-ai-index"),
            path("reindex/", self.reindex_view.as_view(), name="fashion-ai-reindex"),
            path("adapt/", self.adapt_view.as_view(), name="fashion-ai-adapt"),
            path("cooccurrence/", self.cooccurrence_view.as_view(), name="fashion-ai-cooccurrence"),
        ]
        return self.post_process_urls(urls)
