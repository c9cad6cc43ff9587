from django.db import models


class Customer(models.Model):
    name = models.CharField(max_length=100)


class Order(models.Model):
    customer = models.ForeignKey(Customer, null=True, blank=True, on_delete=models.SET_NULL)
    total = models.DecimalField(max_digits=10, decimal_places=2)
    status = models.CharField(max_length=20, default="new")
    api_token = models.CharField(max_length=100, blank=True, default="")
    note = models.TextField(blank=True, default="")
    placed_at = models.DateTimeField(null=True, blank=True)
