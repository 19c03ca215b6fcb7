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
        from . import checks, receivers, tasks  # noqa: F401

    def get_urls(self):
        from . import views

        urls = [
            path("", views.home, name="home"),
            path("search/photo/", views.photo_search, name="photo-search"),
            path("search/sketch/", views.sketch_search, name="sketch-search"),
            path("api/search/sketch/", views.api_sketch, name="api-sketch"),
            path("profile/forget/", views.forget_profile, name="forget-profile"),
            path("api/recommendations/", views.api_recommendations, name="api-recommendations"),
            path("api/events/", views.api_record_event, name="api-events"),
            path("api/health/", views.health, name="api-health"),
            path("api/products/<int:pk>/similar/", views.api_similar, name="api-similar"),
            path("api/search/photo/", views.api_photo, name="api-photo"),
            path("search/similar/<int:pk>/", views.more_like_this, name="more-like-this"),
        ]
        return self.post_process_urls(urls)
