"""Email: IMAP IDLE or an SMTP/LMTP listener in, SMTP out."""
