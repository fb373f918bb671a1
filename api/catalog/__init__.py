"""The catalogue: 書誌 (bibliographic records) and 所蔵 (items)."""
