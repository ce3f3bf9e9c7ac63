"""Shipped scenario files (YAML), installed as package data."""
