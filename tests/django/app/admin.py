from django.contrib import admin

from tests.django.app.models import Article, Customer, Tag

admin.site.register(Article)
admin.site.register(Tag)
admin.site.register(Customer)
