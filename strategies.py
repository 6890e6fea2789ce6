"""Old import path of the plugins and strategies (a source checkout only): ``strategies.lwf`` is
:mod:`avalanche_ext.plugins.lwf`, ``strategies.bic`` is :mod:`avalanche_ext.strategies.bic`."""

from avalanche_ext._aliases import alias_package

alias_package(__name__, ("avalanche_ext.plugins", "avalanche_ext.strategies"))
