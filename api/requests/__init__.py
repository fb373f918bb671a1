"""リクエスト: purchase requests for titles the library lacks."""
