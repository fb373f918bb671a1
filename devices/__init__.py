"""Counter hardware: ESC/POS receipt printers, passbook printers, barcode scanners, stocktaking terminals.

Filled by the circulation issue; each device kind is a small interface with its implementations.
"""
