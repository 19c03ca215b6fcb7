from django.urls import path
from django.utils.translation import gettext_lazy as _
from oscar.core.application import OscarConfig


class FashionAIConfig(OscarConfig):
    """Storefront pages, JSON API, signal receivers and tasks of oscar-fashion-ai."""

    name = "oscar_fashion_ai"
    label = "oscar_fashion_ai"
    namespace = "fashion-ai"
    verbose_name = _("Fashion AI")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # registers the settings checks, connects the signal receivers, registers the Celery tasks (which
        # ``publishing`` looks up by name)
        from . import checks, tasks  # noqa: F401
        from .indexing import receivers as indexing_receivers  # noqa: F401
        from .loading import get_class
        from .personalisation import receivers as personalisation_receivers  # noqa: F401

        # Views are loaded the Oscar way (a fork of this app may override any of them), as Oscar's apps do.
        self.home_view = get_class("personalisation.views", "home")
        self.forget_profile_view = get_class("personalisation.views", "forget_profile")
        self.recommendations_api_view = get_class("personalisation.views", "api_recommendations")
        self.events_api_view = get_class("personalisation.views", "api_record_event")
        self.photo_search_view = get_class("views", "photo_search")
        self.sketch_search_view = get_class("views", "sketch_search")
        self.sketch_api_view = get_class("views", "api_sketch")
        self.photo_api_view = get_class("views", "api_photo")
        self.health_view = get_class("views", "health")
        self.similar_api_view = get_class("views", "api_similar")
        self.more_like_this_view = get_class("views", "more_like_this")

    def get_urls(self):
        urls = [
            path("", self.home_view, name="home"),
            path("search/photo/", self.photo_search_view, name="photo-search"),
            path("search/sketch/", self.sketch_search_view, name="sketch-search"),
            path("api/search/sketch/", self.sketch_api_view, name="api-sketch"),
            path("profile/forget/", self.forget_profile_view, name="forget-profile"),
            path("api/recommendations/", self.recommendations_api_view, name="api-recommendations"),
            path("api/events/", self.events_api_view, name="api-events"),
            path("api/health/", self.health_view, name="api-health"),
            path("api/products/<int:pk>/similar/", self.similar_api_view, name="api-similar"),
            path("api/search/photo/", self.photo_api_view, name="api-photo"),
            path("search/similar/<int:pk>/", self.more_like_this_view, name="more-like-this"),
        ]
        return self.post_process_urls(urls)
