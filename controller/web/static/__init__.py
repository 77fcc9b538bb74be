"""The dashboard's files (package data: HTML, JS, CSS)."""
