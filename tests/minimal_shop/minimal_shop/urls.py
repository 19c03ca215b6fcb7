from django.apps import apps
from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("i18n/", include("django.conf.urls.i18n")),
    path("admin/", admin.site.urls),
    path("fashion-ai/", apps.get_app_config("oscar_fashion_ai").urls),
    path("dashboard/fashion-ai/", apps.get_app_config("fashion_ai_dashboard").urls),
    path("", include(apps.get_app_config("oscar").urls[0])),
]
