"""Django Tasks example (Django >= 6): ``django.tasks`` tasks run by kit workers."""
