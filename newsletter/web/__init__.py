"""The small web app: subscribe with double opt-in, one-click unsubscribe, the public archive and
feed, and the operator's preview (loopback or token only). ``create_app(config, store)`` builds it;
``newsletter serve`` runs it under uvicorn behind the operator's https reverse proxy."""
