from django.contrib import admin

from orders.models import Customer, Order, Product

admin.site.register([Customer, Order, Product])
