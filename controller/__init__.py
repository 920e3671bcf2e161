"""ACD controller: contact-center routing for Asterisk over ARI."""

__version__ = "0.1.0"
