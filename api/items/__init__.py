"""所蔵 (items): the physical copies: receive (受入), edit, transfer, withdraw (除籍)."""
