"""The URLconf of the Django apps under test; each test puts the example's patterns here."""

from __future__ import annotations

from django.urls import URLPattern

urlpatterns: list[URLPattern] = []
