"""Old import path of the scenarios (a source checkout only): ``scenarios.clear`` is
:mod:`avalanche_ext.scenarios.clear`."""

from avalanche_ext._aliases import alias_package

alias_package(__name__, ("avalanche_ext.scenarios",))
