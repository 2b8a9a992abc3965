"""Orders: a model, a view that saves one and enqueues its processing on commit."""
