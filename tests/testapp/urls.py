from django.urls import include, path

urlpatterns = [path("automate/", include("automate.urls"))]
