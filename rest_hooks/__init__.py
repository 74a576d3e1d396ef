"""REST hooks for Django: signed, reliable, observable webhooks delivered by Dramatiq workers."""

__version__ = "2.0.0.dev0"
