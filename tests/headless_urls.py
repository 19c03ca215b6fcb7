"""URLs of a headless shop for the tests: django-oscar-api under /api/, the plugin and the demo store as usual."""

from django.urls import include, path

from shop.urls import urlpatterns as shop_urlpatterns

urlpatterns = [path("api/", include("oscarapi.urls"))] + shop_urlpatterns
