from django.apps import AppConfig


class TestAppConfig(AppConfig):
    name = "tests.django.app"
    label = "testapp"
