"""The browser app (``python app.py``): Train, Runs, Infer and Compare tabs over the public API.

``server`` holds the WSGI application and its command line, ``jobs`` the training child processes,
``runs`` what a page shows of run folders, ``forms`` the Train tab's knobs.
"""
