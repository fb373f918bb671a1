"""Patrons (利用者): registration, search, blocks and lending suspensions (貸出停止)."""
