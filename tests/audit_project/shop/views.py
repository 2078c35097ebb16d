"""Django-shaped views."""

from django.http import HttpResponse
from django.views import View


def invoice(request):  # expect: missing-span
    return HttpResponse("ok")


class StockView(View):
    def get(self, request):  # expect: missing-span
        return HttpResponse("stock")
