"""The plugin's views are loaded the Oscar way (oscar_fashion_ai.loading), so a fork of the app can override one."""

from django.apps import apps

from oscar_fashion_ai import views
from oscar_fashion_ai.dashboard import views as dashboard_views
from oscar_fashion_ai.loading import get_class
from oscar_fashion_ai.personalisation import views as personalisation_views


def test_the_app_configs_hold_the_views_they_route_to():
    shop = apps.get_app_config("oscar_fashion_ai")
    assert shop.home_view is personalisation_views.home and shop.sketch_api_view is views.api_sketch
    assert apps.get_app_config("fashion_ai_dashboard").index_view is dashboard_views.IndexStatusView


def test_an_installed_app_without_the_view_falls_back_to_the_plugins():
    # the dashboard app's package has no api_sketch: as a fork that does not override it
    assert get_class("views", "api_sketch", app_label="fashion_ai_dashboard") is views.api_sketch
