"""The command lines (console scripts ``avalanche-ext-*``); each module's ``main(argv)`` returns the
exit code. In a checkout ``train_config.py`` and ``tools/*.py`` call the same functions."""
