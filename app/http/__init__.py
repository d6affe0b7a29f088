"""The HTTP layer: the Flask app, its routes and what guards them (keys, the queue,
the memory budget, errors, logs, metrics, the nginx front). No engine is imported
here: photos go through app.pipeline.

gunicorn serves `app.http.wsgi:application()` (factory.py's create_app); tests build
apps with their own Settings. Importing this package loads nothing (gunicorn's master
imports front.py).
"""
