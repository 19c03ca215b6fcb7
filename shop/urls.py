from django.apps import apps
from django.conf import settings
from django.conf.urls.static import static
from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("i18n/", include("django.conf.urls.i18n")),
    # The plugin: storefront pages and JSON API under /fashion-ai/, dashboard under /dashboard/fashion-ai/.
    path("fashion-ai/", apps.get_app_config("oscar_fashion_ai").urls),
    path("dashboard/fashion-ai/", apps.get_app_config("fashion_ai_dashboard").urls),
    path("", include(apps.get_app_config("oscar").urls[0])),
]
if settings.SERVE_MEDIA:
    urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)
