"""予約本受取ロッカー: pickup lockers for trapped holds, not connected to the system."""
