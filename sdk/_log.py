"""One logger for the whole SDK; the library configures no handlers."""
import logging

logger = logging.getLogger("edgewise")
