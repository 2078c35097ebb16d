from django.urls import path

from shop import views

urlpatterns = [
    path("invoice/", views.invoice),
    path("metrics", views.metrics),
]
