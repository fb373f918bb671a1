"""Holds (予約), the hold shelf (確保) and transits for holds (回送)."""
