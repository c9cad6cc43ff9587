from django.urls import include, path

from tests.observability.views import place_order

urlpatterns = [
    path("orders", place_order),
    path("automate/", include("automate.urls")),
]
