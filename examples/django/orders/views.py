from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404

from orders.models import Order


def cancel(request: HttpRequest, pk: int) -> HttpResponse:
    """Only staff may cancel: anyone else's attempt is recorded as denied by the middleware."""
    order = get_object_or_404(Order, pk=pk)
    if not request.user.is_staff:
        raise PermissionDenied("orders.cancel requires staff")
    order.status = "cancelled"
    order.save()
    return HttpResponse("cancelled")
