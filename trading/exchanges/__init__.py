"""The one door to the venues: only this package imports ccxt.

``get_gateway()`` returns this process's gateway for the venue named by EXCHANGE.
"""


def get_gateway():
    from trading.exchanges.factory import get_gateway as _get_gateway

    return _get_gateway()
