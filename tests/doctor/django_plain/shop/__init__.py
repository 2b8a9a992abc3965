"""A Django app whose tasks module the doctor must import."""
