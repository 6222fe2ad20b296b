"""Reference applications built on the public Edgewise SDK API."""
