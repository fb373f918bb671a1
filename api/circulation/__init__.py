"""Circulation (貸出・返却)."""
