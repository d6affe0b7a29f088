"""The process runner: what ./run.sh becomes (PID 1 in a container). It starts gunicorn
and the nginx front side by side, writes nginx's config, watches both halves and drains
them on a stop. A program of its own beside app/http/: it never imports Flask or the
app (__tests__/test_layers.py), so gunicorn's master and the supervisor stay light."""
